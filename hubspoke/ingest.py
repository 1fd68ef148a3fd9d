"""The hub consumer: bus -> identity_events (the log) -> customer_identity -> broadcast.

Each micro-batch commits in this order, so a crash anywhere is recovered without loss or double
effect:

1. dead letters and newly parked events are appended (a redelivery after a crash here is
   recorded as a duplicate; the parked copy still waits for its create);
2. every valid event is appended to `identity_events` with its disposition, the batch number
   committed in the same Delta commit (app transaction ``hub.ingest``): the commit point;
3. resolved states are merged into the entity's identity table with the batch number
   (``hub.projection``) in the same commit; on start the hub re-projects logged batches the
   identity table has not seen;
4. released parked events are removed, the bus is acknowledged, and resolved states are
   broadcast; the last broadcast batch is checkpointed, and unbroadcast batches are sent again
   on start (spokes apply broadcasts idempotently by version).
"""

from __future__ import annotations

import fcntl
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from hubspoke.bus import BROADCAST_TOPIC, IDENTITY_TOPIC, Delivery, EventBus
from hubspoke.events import IdentityEvent, InvalidEvent, encode_broadcast, parse_event
from hubspoke.identity_copy import IdentityCopy
from hubspoke.lake import Lake, LakeTable, Progress, sql_in
from hubspoke.resolve import APPLIED, DUPLICATE, PARKED, State, fold
from lake_schema import Contract

HUB_SUBSCRIBER = "hub"
INGEST_APP = "hub.ingest"
PROJECTION_APP = "hub.projection"


@dataclass
class BatchReport:
    """What one micro-batch did."""

    batch: int = 0
    received: int = 0
    dispositions: Counter[str] = field(default_factory=Counter)
    dead_lettered: int = 0
    broadcast: int = 0
    max_lag_s: float = 0.0

    def add(self, other: BatchReport) -> None:
        """Accumulate another batch into this report."""
        self.batch = max(self.batch, other.batch)
        self.received += other.received
        self.dispositions.update(other.dispositions)
        self.dead_lettered += other.dead_lettered
        self.broadcast += other.broadcast
        self.max_lag_s = max(self.max_lag_s, other.max_lag_s)


class UnknownDeadLetter(LookupError):
    """The dead letter asked for does not exist."""


class Hub:
    """Ingests identity events for every entity that has an identity contract."""

    def __init__(
        self, lake: Lake, bus: EventBus, state_dir: Path, projection_interval_s: float = 5.0
    ) -> None:
        self.lake = lake
        self.bus = bus
        self.projection_interval_s = projection_interval_s
        # Resolved states logged but not yet merged into their identity table, by entity and key.
        # Merging rewrites every file holding a touched key, so under load it runs every
        # projection_interval_s instead of every batch, on a thread of its own (delta-rs releases
        # the GIL) while batches keep being logged; the log is already durable.
        self._overlay: dict[str, dict[str, State]] = defaultdict(dict)
        self._overlay_batch = 0
        self._projected_at = time.monotonic()
        self._clean = False  # True between batches this process completed
        self._merger = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-merge")
        self._broadcaster = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-broadcast")
        self._broadcasting: Future[None] | None = None
        self._merging: tuple[Future[None], dict[str, dict[str, State]]] | None = None
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.log = lake.table("identity_events")
        self.parked = lake.table("parked_identity_events")
        self.dead_letters = lake.table("dead_letters")
        self._seen: set[str] | None = None
        self._parked_keys: set[tuple[str, str]] = set()
        """(entity, entity id) of every parked event, so a batch reads the parked table only
        when it touches one of them."""
        self._logged_batch = 0
        """The last batch in the log; read from the lake at the start of each turn."""
        self._copies = {
            c.entity: IdentityCopy(lake.table(c)) for c in lake.catalog.identities() if c.entity
        }

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the hub's single-writer lock (CLI consumers and Dagster runs take turns)."""
        with open(self.state_dir / "hub.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def drain(
        self, batch_size: int = 5000, max_batches: int | None = None, settle: bool = True
    ) -> BatchReport:
        """Ingest until the bus has nothing pending for the hub (or `max_batches` ran).

        With `settle` the identity tables hold everything logged when it returns; without it
        they are merged only if projection_interval_s has passed since the last merge.
        """
        total = BatchReport()
        with self.turn():
            done = 0
            while max_batches is None or done < max_batches:
                report = self.step(batch_size)
                if not report.received:
                    break
                total.add(report)
                done += 1
            if settle or self._merge_due():
                self.project()
        return total

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the single-writer lock for a series of `step`s, recovering first.

        Leaving the turn normally waits for the merge and the broadcast in flight, so no writer
        outlives the lock; after a failure they are left to the next turn's recovery.
        """
        with self.exclusive():
            self.recover()
            yield
            self._wait_for_broadcast()
            if self._merging is not None:
                self._finish_merge()

    def step(self, batch_size: int) -> BatchReport:
        """Ingest one micro-batch, if any is waiting, and start a merge when one is due.

        Call within a `turn`. A follower steps again and again: merges then run every
        projection_interval_s on their own thread while batches keep being logged, and what is
        logged but unmerged stays in this process (or is recovered from the log by whichever
        hub writes next).
        """
        deliveries = self.bus.fetch(IDENTITY_TOPIC, HUB_SUBSCRIBER, batch_size)
        report = self._ingest(deliveries) if deliveries else BatchReport()
        if self._merging is not None and self._merging[0].done():
            self._finish_merge()
        if self._merging is None and self._merge_due():
            self._start_merge()
        return report

    @property
    def merging(self) -> bool:
        """A merge into the identity tables is running on its thread."""
        return self._merging is not None

    def _merge_due(self) -> bool:
        return (
            any(self._overlay.values())
            and time.monotonic() - self._projected_at >= self.projection_interval_s
        )

    def project(self) -> None:
        """Merge every resolved state logged so far into the identity tables, and wait for it."""
        if self._merging is not None:
            self._finish_merge()
        self._merge_all(
            {e: dict(states) for e, states in self._overlay.items()}, self._overlay_batch
        )
        self._overlay.clear()
        self._projected_at = time.monotonic()

    def _start_merge(self) -> None:
        handed = {e: dict(states) for e, states in self._overlay.items() if states}
        future = self._merger.submit(self._merge_all, handed, self._overlay_batch)
        self._merging = (future, handed)
        self._projected_at = time.monotonic()

    def _finish_merge(self) -> None:
        assert self._merging is not None
        future, handed = self._merging
        self._merging = None
        future.result()  # a failed merge fails the drain, like a crash; recovery redoes it
        for entity, states in handed.items():
            overlay = self._overlay[entity]
            for key, state in states.items():
                if overlay.get(key) is state:  # not changed again since it was handed over
                    del overlay[key]

    def _merge_all(self, states: dict[str, dict[str, State]], batch: int) -> None:
        for entity, by_key in states.items():
            if by_key:
                self._merge(self.lake.catalog.identity(entity), list(by_key.values()), batch)

    def pending(self) -> int:
        """Identity events published but not yet ingested."""
        return self.bus.pending(IDENTITY_TOPIC, HUB_SUBSCRIBER)

    def dead_letter_list(self) -> list[dict[str, Any]]:
        """Dead letters, oldest first."""
        rows = self.dead_letters.read().to_pylist()
        return sorted(rows, key=lambda r: r["received_at"])

    def replay_dead_letter(self, dead_letter_id: str) -> None:
        """Publish a dead letter again (after its producer or contract was fixed) and remove it.

        The replayed message is validated again like any other; if it still breaks the contract
        it comes back as a new dead letter. A crash between publish and removal replays it
        twice, and the hub records the second copy as a duplicate.
        """
        try:
            uuid.UUID(dead_letter_id)
        except ValueError:
            raise UnknownDeadLetter(
                f"{dead_letter_id!r} is not a dead letter id (a UUID)"
            ) from None
        with self.exclusive():
            rows = self.dead_letters.read(where=pl.col("dead_letter_id") == dead_letter_id)
            if rows.num_rows == 0:
                raise UnknownDeadLetter(
                    f"no dead letter {dead_letter_id!r}; `hubspoke dead-letters list` shows them"
                )
            self.bus.publish(IDENTITY_TOPIC, [rows["body"][0].as_py().encode()])
            self.dead_letters.delete_where(
                sql_in("dead_letter_id", [dead_letter_id]),
                step="replay",
                dead_letter_id=dead_letter_id,
            )

    # --- recovery ----------------------------------------------------------------------------

    def recover(self) -> None:
        """Finish what a crashed batch committed to the log but not yet projected or broadcast."""
        if self._merging is not None:  # a merge left running by a failed drain
            self._merging[0].exception()
            self._merging = None
        if self._broadcasting is not None:  # likewise a broadcast
            self._broadcasting.exception()
            self._broadcasting = None
            self._clean = False
        logged = self._logged_batch = self.log.progress(INGEST_APP) or 0
        for copy in self._copies.values():
            copy.check()
        if self._clean and self._overlay_batch == logged:
            return  # this process logged the last batch, completely: nothing to recover
        # The lake is the truth after a failure or another hub's turn: rebuild from the log.
        self._overlay.clear()
        self._overlay_batch = 0
        self._seen = None
        for contract in self.lake.catalog.identities():
            table = self.lake.table(contract)
            projected = table.progress(PROJECTION_APP) or 0
            if projected < logged:
                rows = self.log.read(
                    where=(pl.col("batch") > projected)
                    & (pl.col("entity") == contract.entity)
                    & (pl.col("disposition") == APPLIED)
                )
                self._project(contract, rows.to_pylist(), logged)
        self.seen()
        parked_ids = self.parked.read(columns=["event_id"])["event_id"].to_pylist()
        done = [i for i in parked_ids if i in self._logged_ids]
        if done:
            self.parked.delete_where(sql_in("event_id", done), step="release parked")
        broadcast = self._checkpoint().get("broadcast_batch", 0)
        if broadcast < logged:
            rows = self.log.read(
                columns=["entity", "entity_id"],
                where=(pl.col("batch") > broadcast) & (pl.col("disposition") == APPLIED),
            )
            by_entity: dict[str, set[str]] = defaultdict(set)
            for r in rows.to_pylist():
                by_entity[r["entity"]].add(r["entity_id"])
            for entity, ids in by_entity.items():
                contract = self.lake.catalog.identity(entity)
                self._broadcast(contract, self._states(contract, ids).values())
            self._save_checkpoint(broadcast_batch=logged)

    def seen(self) -> set[str]:
        """Event ids already logged or parked (loaded once per process, then kept current)."""
        if self._seen is None:
            # Only final dispositions: a duplicate row may stand for a copy whose original still
            # waits in the parked table, and that original must not be dropped as done.
            self._logged_ids = set(
                self.log.read(columns=["event_id"], where=pl.col("disposition") != DUPLICATE)[
                    "event_id"
                ].to_pylist()
            )
            parked = self.parked.read(columns=["event_id", "entity", "entity_id"]).to_pylist()
            self._parked_keys = {(p["entity"], p["entity_id"]) for p in parked}
            self._seen = self._logged_ids | {p["event_id"] for p in parked}
        return self._seen

    # --- one batch ---------------------------------------------------------------------------

    def _ingest(self, deliveries: Sequence[Delivery]) -> BatchReport:
        self._clean = False
        batch = self._logged_batch + 1
        now = datetime.now(UTC)
        report = BatchReport(batch=batch, received=len(deliveries))
        seen = self.seen()
        dead: list[dict[str, Any]] = []
        fresh: list[IdentityEvent] = []
        duplicates: list[IdentityEvent] = []
        bodies: dict[str, bytes] = {}
        for d in deliveries:
            try:
                event = parse_event(d.body, self.lake.catalog)
            except InvalidEvent as exc:
                dead.append(_dead_letter(d, str(exc), now))
                continue
            if event.event_id in seen or event.event_id in bodies:
                duplicates.append(event)
            else:
                fresh.append(event)
                bodies[event.event_id] = d.body

        log_rows = [_log_row(e, DUPLICATE, None, batch, now) for e in duplicates]
        new_parked: list[dict[str, Any]] = []
        released: list[str] = []
        changed: dict[str, list[State]] = defaultdict(list)
        by_entity: dict[str, list[IdentityEvent]] = defaultdict(list)
        for e in fresh:
            by_entity[e.entity].append(e)
        for entity, events in by_entity.items():
            contract = self.lake.catalog.identity(entity)
            ids = {e.entity_id for e in events}
            states = self._states(contract, ids)
            waiting = self._parked_events(entity, ids)
            per_id: dict[str, list[IdentityEvent]] = defaultdict(list)
            for e in [*events, *waiting]:
                per_id[e.entity_id].append(e)
            waiting_ids = {e.event_id for e in waiting}
            for entity_id, evs in per_id.items():
                before = states.get(entity_id)
                after, outcome = fold(before, evs, contract.key_fields[0])
                for e, disposition in outcome:
                    if disposition == PARKED:
                        if e.event_id not in waiting_ids:
                            new_parked.append(
                                {
                                    "event_id": e.event_id,
                                    "entity": e.entity,
                                    "entity_id": e.entity_id,
                                    "parked_at": now,
                                    "body": bodies[e.event_id].decode(),
                                }
                            )
                        continue
                    if e.event_id in waiting_ids:
                        released.append(e.event_id)
                    version = after["version"] if disposition == APPLIED and after else None
                    log_rows.append(_log_row(e, disposition, version, batch, now))
                if after is not None and after != before:
                    changed[entity].append(after)

        if dead:
            self.dead_letters.append(self.dead_letters.contract.to_arrow(dead), step="dead-letter")
        if new_parked:
            self.parked.append(self.parked.contract.to_arrow(new_parked), step="park")
            self._parked_keys |= {(p["entity"], p["entity_id"]) for p in new_parked}
        self.log.append(
            self.log.contract.to_arrow(log_rows),
            progress=Progress(INGEST_APP, batch),
            step="ingest",
            batch=batch,
        )
        self._logged_batch = batch
        # Known from the commit on: a retry of this batch in this process must see them as seen.
        self._logged_ids |= {r["event_id"] for r in log_rows if r["disposition"] != DUPLICATE}
        seen |= {r["event_id"] for r in log_rows} | {p["event_id"] for p in new_parked}
        for entity, states in changed.items():
            key = self.lake.catalog.identity(entity).key_fields[0]
            self._overlay[entity].update({s[key]: s for s in states})
        self._overlay_batch = batch
        if released:
            self.parked.delete_where(sql_in("event_id", released), step="release parked")
        self.bus.ack(IDENTITY_TOPIC, HUB_SUBSCRIBER, deliveries)

        # Broadcasting overlaps the next batch; batches are still broadcast in order, and the
        # checkpoint moves only once a batch's broadcast is confirmed.
        self._wait_for_broadcast()
        self._broadcasting = self._broadcaster.submit(self._broadcast_batch, dict(changed), batch)
        report.broadcast = sum(len(states) for states in changed.values())

        report.dispositions.update(r["disposition"] for r in log_rows)
        report.dispositions[PARKED] += len(new_parked)
        report.dead_lettered = len(dead)
        if fresh:
            report.max_lag_s = max((now - e.occurred_at).total_seconds() for e in fresh)
        self._clean = True
        return report

    # --- helpers -----------------------------------------------------------------------------

    def _states(self, contract: Contract, ids: set[str]) -> dict[str, State]:
        overlay = self._overlay.get(contract.entity or "", {})
        found = {i: overlay[i] for i in ids if i in overlay}
        return found | self._copies[contract.entity or ""].states(
            [i for i in ids if i not in found]
        )

    def _parked_events(self, entity: str, ids: set[str]) -> list[IdentityEvent]:
        if not any((entity, i) in self._parked_keys for i in ids):
            return []
        rows = self.parked.read(
            columns=["body"],
            where=(pl.col("entity") == entity) & pl.col("entity_id").is_in(list(ids)),
        )
        return [parse_event(b.encode(), self.lake.catalog) for b in rows["body"].to_pylist()]

    def _project(self, contract: Contract, log_rows: list[dict[str, Any]], batch: int) -> None:
        """Re-apply logged, applied events onto the identity table (crash recovery)."""
        current = self._states(contract, {r["entity_id"] for r in log_rows})
        resolved = fold_logged_batches(contract, log_rows, current)
        self._merge(contract, list(resolved.values()), batch)

    def _merge(self, contract: Contract, states: list[State], batch: int) -> None:
        table: LakeTable = self.lake.table(contract)
        metrics = table.upsert(
            contract.to_arrow(states),
            newer_than="version",
            progress=Progress(PROJECTION_APP, batch),
            step="project",
            batch=batch,
        )
        self._copies[contract.entity or ""].merged(states, metrics["version"])

    def _broadcast_batch(self, changed: dict[str, list[State]], batch: int) -> None:
        for entity, states in changed.items():
            self._broadcast(self.lake.catalog.identity(entity), states)
        self._save_checkpoint(broadcast_batch=batch)

    def _wait_for_broadcast(self) -> None:
        """Wait for the broadcast in flight; a failure surfaces here, like a crash."""
        if self._broadcasting is not None:
            future, self._broadcasting = self._broadcasting, None
            try:
                future.result()
            except BaseException:
                self._clean = False  # the next drain recovers (re-broadcasts) this batch
                raise

    def _broadcast(self, contract: Contract, states: Any) -> int:
        states = list(states)
        self.bus.publish(BROADCAST_TOPIC, encode_broadcast(contract.entity, states))
        return len(states)

    def _checkpoint(self) -> dict[str, int]:
        path = self.state_dir / "checkpoint.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _save_checkpoint(self, **values: int) -> None:
        path = self.state_dir / "checkpoint.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._checkpoint() | values))
        tmp.replace(path)  # atomic: a crash leaves the old or the new checkpoint


def _log_row(
    e: IdentityEvent, disposition: str, version: int | None, batch: int, now: datetime
) -> dict[str, Any]:
    return {
        "event_id": e.event_id,
        "entity": e.entity,
        "entity_id": e.entity_id,
        "event_type": e.event_type,
        "source": e.source,
        "occurred_at": e.occurred_at,
        "received_at": now,
        "data": json.dumps(e.data, sort_keys=True),
        "disposition": disposition,
        "hub_version": version,
        "batch": batch,
    }


def fold_logged_batches(
    contract: Contract, log_rows: Sequence[dict[str, Any]], current: Mapping[str, State]
) -> dict[str, State]:
    """The states after folding logged, applied events onto `current`, by id.

    Batch by batch, as the hub first applied them: folding a late event into the batch it
    arrived in gives a different version than folding several batches at once, and spokes
    must never see two states with one version.
    """
    per_id: dict[str, dict[int, list[IdentityEvent]]] = defaultdict(lambda: defaultdict(list))
    for row in log_rows:
        per_id[row["entity_id"]][row["batch"]].append(event_from_log(row))
    key = contract.key_fields[0]
    resolved = {}
    for entity_id, batches in per_id.items():
        state = current.get(entity_id)
        for batch in sorted(batches):
            state, _ = fold(state, batches[batch], key)
        if state is not None:
            resolved[entity_id] = state
    return resolved


def event_from_log(row: dict[str, Any]) -> IdentityEvent:
    """The IdentityEvent an `identity_events` row records."""
    return IdentityEvent(
        event_id=row["event_id"],
        event_type=row["event_type"],
        entity=row["entity"],
        entity_id=row["entity_id"],
        source=row["source"],
        occurred_at=row["occurred_at"],
        data=json.loads(row["data"]),
    )


def _dead_letter(d: Delivery, reason: str, now: datetime) -> dict[str, Any]:
    return {
        "dead_letter_id": str(uuid.uuid4()),
        "topic": IDENTITY_TOPIC,
        "received_at": now,
        "reason": reason,
        "body": d.body.decode("utf-8", errors="replace"),
    }
