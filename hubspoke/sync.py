"""The nightly delta sync: a spoke's changed domain rows into the lake, atomically with the watermark.

Per domain table: stream the rows changed since the watermark minus an overlap window as Arrow
batches, map them through the spoke's anti-corruption layer and check them against the contract
(vectorised; row by row only for a batch that breaks it, to name the reasons), hold back rows that
break the contract or whose customer the hub does not know, read the spoke's hard deletes from its
tombstones (`hubspoke.deletes`), and merge upserts, deletes and the new watermark in one Delta
commit; the spoke forgets the tombstones read only after that commit.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from hubspoke.deletes import HardDeletes
from hubspoke.lake import Lake, LakeTable, Progress, sql_in
from hubspoke.timestamps import from_micros, to_micros
from lake_schema import Contract
from lake_schema.arrow_checks import breaking_rows
from spokes import Spoke

DELETED = "hubspoke_deleted"
NO_KEY = ""
"""The quarantine key of spoke rows whose own key is null (SQLite admits a null TEXT PRIMARY
KEY): held, retried and listed like the others, in one entry."""


@dataclass
class SyncReport:
    """What one sync of one domain table did."""

    domain: str
    table: str
    extracted: int = 0
    upserted: int = 0
    deleted: int = 0
    hard_deleted: int = 0
    """Keys the spoke hard-deleted found by this sync, the lake's or not (a row inserted and
    deleted between two syncs has a tombstone too)."""
    keys_compared: bool = False
    """Whether the key sets were compared: no tombstones, a marker saying they are incomplete,
    or asked for (`compare_keys`)."""
    quarantined: int = 0
    released: int = 0
    watermark_before: datetime | None = None
    watermark_after: datetime | None = None
    version: int = 0
    committed: bool = False
    added_columns: list[str] = field(default_factory=list)
    quarantine_reasons: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time of each phase: `waiting` for a concurrent sync of the table; `extract` (the
    contract and watermark checked, the changes read, mapped and checked); `checks` (identities,
    tombstones, the quarantine written); `merge` (the data commit); `finish` (tombstones
    forgotten, quarantine released); and `total`."""


class _Laps:
    """Seconds since the previous lap, recorded by name."""

    def __init__(self, into: dict[str, float]) -> None:
        self._into, self._last = into, time.perf_counter()

    def lap(self, name: str) -> None:
        """Record the seconds since the previous lap (or the start) as `name`."""
        now = time.perf_counter()
        self._into[name] = now - self._last
        self._last = now


@dataclass
class _Extract:
    """What the stream of changed rows left after mapping and checking."""

    good: list[pa.Table] = field(default_factory=list)
    bad: list[dict[str, Any]] = field(default_factory=list)
    soft_deleted: list[pa.Array] = field(default_factory=list)
    high: datetime | None = None
    rows: int = 0


def watermark_app(contract: Contract) -> str:
    """The app id under which a domain table records its sync watermark."""
    return f"sync.{contract.table_name}"


def watermark(lake: Lake, contract: Contract) -> datetime | None:
    """The source time up to which the domain table holds every change (None: never synced)."""
    micros = lake.table(contract).progress(watermark_app(contract))
    return None if micros is None else from_micros(micros)


def sync_domain(
    lake: Lake,
    spoke: Spoke,
    contract: Contract,
    *,
    overlap: timedelta = timedelta(minutes=15),
    batch_rows: int = 50_000,
    compare_keys: bool = False,
) -> SyncReport:
    """Extract what changed in `spoke` since the watermark, check it, and merge it into the lake.

    The domain rows, the propagated deletes and the new watermark land in one Delta commit, so a
    sync that dies leaves the old table and the old watermark; the rerun extracts the same rows.
    Changes are re-read from `overlap` before the watermark: a row committed late with an earlier
    timestamp is still found, and merging it again is a no-op (newer `updated_at` wins).
    Rows that break the contract or whose customer has no live identity go to
    `sync_quarantine` first and are retried on every sync until they load. Concurrent syncs of
    one table (a backfill beside the nightly run) take turns, so the outcome is the serial one.
    `compare_keys` also compares the spoke's live keys with the lake's, to propagate deletes the
    spoke's triggers did not see (what the reconciliation check reports as only in the lake).
    """
    started = time.perf_counter()
    with lake.table(contract).exclusive():
        waited = time.perf_counter() - started
        report = _sync(lake, spoke, contract, overlap, batch_rows, compare_keys)
    report.seconds = {"waiting": waited, **report.seconds}
    report.seconds["total"] = time.perf_counter() - started
    return report


def _sync(
    lake: Lake,
    spoke: Spoke,
    contract: Contract,
    overlap: timedelta,
    batch_rows: int,
    compare_keys: bool,
) -> SyncReport:
    table = lake.table(contract)
    quarantine = lake.table("sync_quarantine")
    key = contract.key_fields[0]
    report = SyncReport(domain=contract.owner, table=contract.table_name)
    laps = _Laps(report.seconds)
    report.added_columns = table.evolve()  # refuses a breaking change before anything is written
    report.watermark_before = before = watermark(lake, contract)

    since = before - overlap if before is not None else None
    held = quarantine.read(columns=["customer_id"], where=pl.col("domain") == contract.table_name)[
        "customer_id"
    ]
    with ThreadPoolExecutor(2) as pool:
        hard = HardDeletes(
            spoke, table, pool, lake_rows=table.count_fast(), compare_keys=compare_keys
        )
        ext = _extract(spoke, contract, since, batch_rows)
        report.extracted = ext.rows
        laps.lap("extract")
        soft = pa.concat_arrays([pa.array([], pa.string()), *ext.soft_deleted])
        good = pa.concat_tables(ext.good) if ext.good else contract.to_arrow([])
        # Held rows read again with the changes (the overlap, or changed since) are not retried.
        broken = pa.array([b["customer_id"] for b in ext.bad], pa.string())
        changed = pc.unique(pa.concat_arrays([good[key].combine_chunks(), soft, broken]))
        retry = pc.filter(held, pc.invert(pc.is_in(held, value_set=changed))).to_pylist()
        again = spoke.local_domain_rows([k for k in retry if k != NO_KEY], keyless=NO_KEY in retry)
        retried = _check_rows(spoke, contract, again, ext)
        if retried is not None:
            good = pa.concat_tables([good, retried])

        # The hub's identities are looked up while the spoke's tombstones are read.
        known = pool.submit(_split_known, lake, contract, good)
        found = hard.found(good[key].combine_chunks())
        report.keys_compared = hard.keys_compared
        report.hard_deleted = len(pc.filter(found, pc.invert(pc.is_in(found, value_set=soft))))
        deletes = pc.unique(pa.concat_arrays([found, soft]))
        good, orphans = known.result()

    # Tombstones were read after the changes: a row read live and gone since is deleted.
    good = good.filter(pc.invert(pc.is_in(good[key], value_set=deletes)))
    orphans = orphans.filter(pc.invert(pc.is_in(orphans[key], value_set=deletes)))
    for row in orphans.to_pylist():
        reason = f"no live {contract.entity} identity {row[key]!r} in the hub yet"
        ext.bad.append(_held(contract, row[key], row, reason))
        report.quarantine_reasons["no live identity"] += 1

    report.quarantined = len(ext.bad)
    for row in ext.bad:
        if not row["reason"].startswith("no live"):
            report.quarantine_reasons["breaks the contract"] += 1
    # Quarantine first: if the data commit below never happens, the rerun re-extracts them.
    if ext.bad:
        by_key = {b["customer_id"]: b for b in ext.bad}  # keyless rows share NO_KEY
        quarantine.upsert(
            quarantine.contract.to_arrow(list(by_key.values())),
            step="quarantine",
            domain=contract.table_name,
        )

    new_mark = max(filter(None, [before, ext.high]), default=None)
    moved = new_mark is not None and new_mark != before
    if not moved and good.num_rows:
        good = _not_in_lake_yet(table, good)  # only the overlap was re-read
    laps.lap("checks")
    if good.num_rows or len(deletes) or moved:
        metrics = table.upsert(
            good,
            newer_than="updated_at",
            delete_keys=deletes,
            progress=Progress(watermark_app(contract), to_micros(new_mark)) if moved else None,
            watermark=new_mark.isoformat() if new_mark else "",
            step="nightly sync",
            spoke=spoke.name,
        )
        report.upserted = metrics["num_target_rows_inserted"] + metrics["num_target_rows_updated"]
        report.deleted = metrics["num_target_rows_deleted"]
        report.committed = metrics["version"] is not None
    report.watermark_after = new_mark
    laps.lap("merge")
    hard.forget()  # only now that their deletes are committed

    still_held = {r["customer_id"] for r in ext.bad}
    release = sorted(set(held.to_pylist()) - still_held)
    if release:
        quarantine.delete_where(
            f"{sql_in('domain', [contract.table_name])} AND {sql_in('customer_id', release)}",
            step="release quarantine",
        )
    report.released = len(release)
    report.version = table.version()
    laps.lap("finish")
    return report


def _extract(spoke: Spoke, contract: Contract, since: datetime | None, batch_rows: int) -> _Extract:
    ext = _Extract()
    updated = spoke.schema.domain_updated
    for batch in spoke.changed_batches(since, batch_rows):
        ext.rows += batch.num_rows
        # A stamp the spoke cannot read is null: it moves no watermark; its row is held below.
        stamps = spoke.readable_stamps(batch.column(updated))
        top = pc.max(stamps).as_py()
        if top is not None and (ext.high is None or top > ext.high):
            ext.high = top
        flags = batch.column(DELETED)
        gone = pc.cast(batch.filter(flags).column(spoke.schema.domain_key), pa.string())
        ext.soft_deleted.append(gone)
        live = batch.filter(pc.invert(flags))
        if live.num_rows:
            good = _check_batch(spoke, contract, live, ext)
            if good is not None:
                ext.good.append(good)
    return ext


def _check_batch(
    spoke: Spoke, contract: Contract, batch: pa.RecordBatch, ext: _Extract
) -> pa.Table | None:
    """Contract-shaped good rows of a batch; breaking rows go to `ext.bad` with their reasons."""
    try:
        mapped = spoke.domain_batch_to_contract(batch)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        mapped = None  # some row does not convert: row by row, to say which and why
    if mapped is None:
        return _check_rows(spoke, contract, batch.to_pylist(), ext)
    mapped = mapped.select(contract.field_names).cast(contract.arrow_schema())
    breaking = breaking_rows(contract, mapped)
    if not pc.any(breaking).as_py():
        return mapped
    suspects = batch.filter(breaking).to_pylist()
    rest = _check_rows(spoke, contract, suspects, ext)
    fine = mapped.filter(pc.invert(breaking))
    return fine if rest is None else pa.concat_tables([fine, rest])


def _check_rows(
    spoke: Spoke, contract: Contract, rows: list[dict[str, Any]], ext: _Extract
) -> pa.Table | None:
    good: list[dict[str, Any]] = []
    for raw in rows:
        raw = {k: v for k, v in raw.items() if k != DELETED}
        # The key as the spoke names it: the row may not map into the contract.
        customer = raw[spoke.schema.domain_key]
        if customer is None:
            reason = f"{spoke.schema.domain_key} is null: a row without a key cannot be loaded"
            ext.bad.append(_held(contract, NO_KEY, raw, reason))
            continue
        try:
            row = spoke.domain_to_contract(raw)
            problems = contract.row_problems(row)
        except (ValueError, ArithmeticError, TypeError) as e:
            row, problems = raw, [f"cannot be mapped into {contract.name}: {e}"]
        if problems:
            ext.bad.append(_held(contract, customer, row, "; ".join(problems)))
        else:
            good.append(row)
    return contract.to_arrow(good) if good else None


def _held(contract: Contract, customer: Any, row: dict[str, Any], reason: str) -> dict[str, Any]:
    stamp = row.get("updated_at")
    return {
        "domain": contract.table_name,
        "customer_id": str(customer),
        "reason": reason,
        "row": json.dumps(row, default=str, sort_keys=True),
        "source_updated_at": stamp if isinstance(stamp, datetime) else None,
        "quarantined_at": datetime.now(UTC),
    }


def _split_known(lake: Lake, contract: Contract, rows: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Rows whose customer has a live identity in the hub, and the others."""
    if rows.num_rows == 0:
        return rows, rows
    identity = lake.table(lake.catalog.identity(contract.entity or "customer"))
    key = contract.key_fields[0]
    live = identity.holding(rows[key].combine_chunks(), where=~pl.col("deleted"))
    known = pc.is_in(rows[key], value_set=pc.cast(live, pa.string()))
    return rows.filter(known), rows.filter(pc.invert(known))


def _not_in_lake_yet(table: LakeTable, rows: pa.Table) -> pa.Table:
    """`rows` minus those the lake already holds with the same source `updated_at`."""
    key = table.contract.key_fields[0]
    held = table.read(columns=[key, "updated_at"], where=pl.col(key).is_in(rows[key].to_pylist()))
    same = pl.from_arrow(rows).join(pl.from_arrow(held), on=[key, "updated_at"], how="anti")
    return same.to_arrow().cast(rows.schema)


@dataclass
class Reconciliation:
    """Spoke against lake for one domain table, after a sync."""

    table: str
    spoke_rows: int
    lake_rows: int
    quarantined: int
    missing_in_lake: list[str]
    extra_in_lake: list[str]
    differing: list[str]
    spoke_hash: str
    lake_hash: str

    @property
    def ok(self) -> bool:
        """True when every live spoke row not in quarantine is in the lake, as it is at the spoke."""
        return not (self.missing_in_lake or self.extra_in_lake or self.differing)


def reconcile(lake: Lake, spoke: Spoke, contract: Contract, first: int = 100) -> Reconciliation:
    """Compare counts and an order-independent hash of (key, source updated_at), spoke vs lake.

    Both sides go into DuckDB as Arrow (no Python object per row); the lists of differing keys
    hold at most `first` keys each.
    """
    key = contract.key_fields[0]
    held = lake.table("sync_quarantine").read(
        columns=["customer_id"], where=pl.col("domain") == contract.table_name
    )
    con = duckdb.connect()
    con.register("lake_rows", lake.table(contract).dataset())
    con.register("held", held)
    con.execute("CREATE TABLE s (key VARCHAR, stamp BIGINT)")
    for batch in spoke.version_batches():  # batch by batch: memory stays one batch in Python
        con.register("batch", batch)
        con.execute(
            "INSERT INTO s SELECT key, epoch_us(updated_at) FROM batch"
            " WHERE key NOT IN (SELECT customer_id FROM held)"
        )
        con.unregister("batch")
    # A held key's older row may be in the lake: it waits on the quarantine on both sides.
    con.execute(
        f'CREATE TABLE l AS SELECT "{key}" AS key, epoch_us(updated_at) AS stamp FROM lake_rows'
        f' WHERE "{key}" NOT IN (SELECT customer_id FROM held)'
    )

    def keys(sql: str) -> list[str]:
        return [r[0] for r in con.execute(sql + f" ORDER BY 1 LIMIT {int(first)}").fetchall()]

    def digest(name: str) -> tuple[int, str]:
        # XOR of per-row hashes: independent of row order (an unreadable stamp hashes too).
        n, h = con.execute(
            f"SELECT count(*), coalesce(bit_xor(hash(key || '|' || coalesce(stamp, -1))), 0)"
            f" FROM {name}"
        ).fetchall()[0]
        return int(n), f"{int(h):016x}"

    (spoke_rows, spoke_hash), (lake_rows, lake_hash) = digest("s"), digest("l")
    return Reconciliation(
        table=contract.table_name,
        spoke_rows=spoke_rows,
        lake_rows=lake_rows,
        quarantined=len(held),
        missing_in_lake=keys("SELECT key FROM s ANTI JOIN l USING (key)"),
        extra_in_lake=keys("SELECT key FROM l ANTI JOIN s USING (key)"),
        # A spoke stamp that cannot be read is null: it differs from any stamp the lake holds.
        differing=keys(
            "SELECT s.key FROM s JOIN l USING (key) WHERE s.stamp IS DISTINCT FROM l.stamp"
        ),
        spoke_hash=spoke_hash,
        lake_hash=lake_hash,
    )
