"""The spoke interface and its implementation on any `Database`: local writes, outbox, broadcasts,
extraction. The SQL here is written once, with `?` placeholders; `spokes.databases` adapts it."""

from __future__ import annotations

import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from random import Random
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from hubspoke.events import IdentityEvent
from spokes.arrow_stream import stream_batches
from spokes.databases import TOMBSTONES, Database, Engine, Row, SqliteDatabase

STAMP = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class OutboxMessage:
    """An identity event written beside the local change, waiting for the relay."""

    seq: int
    body: bytes


@dataclass(frozen=True)
class DomainChanges:
    """What changed in a spoke's domain table since a watermark, already in contract shape."""

    upserts: list[dict[str, Any]]
    deleted_keys: list[str]
    high_watermark: datetime | None


@dataclass(frozen=True)
class Tombstones:
    """What a sync read of a spoke's tombstones."""

    seqs: list[int]
    """Every tombstone read, to forget once the sync has committed."""
    deleted: pa.Array
    """Distinct keys hard-deleted that have no live row now."""
    complete: bool
    """False when a marker says deletes may have gone unrecorded: compare key sets."""


@dataclass(frozen=True)
class LocalSchema:
    """Where a spoke keeps identity and domain data, in its own names."""

    ddl: dict[Engine, str]
    """Engine -> the statements creating the local tables in that engine's types; the spoke runs
    only on the engines listed here."""
    identity_table: str
    identity_key: str
    hub_version: str
    identity_columns: dict[str, str]
    """Contract identity field -> local column, for every field the spoke keeps."""
    domain_table: str
    domain_key: str
    domain_updated: str
    domain_deleted: str
    """SQL condition that is true for a soft-deleted domain row."""


class Spoke(ABC):
    """A domain service that owns its extension data and keeps a copy of every identity.

    The write paths (`create_customer`, `update_customer`, `delete_customer`, `save_domain`) are
    what the spoke's own application calls: each writes the local change and, for identity
    changes, an outbox event in one transaction. Integration goes through `outbox`,
    `mark_published`, `apply_broadcast` and `extract_changes`.

    `db` is the spoke's local `Database` (a SQLite file when the spoke is given a path).
    """

    name: str
    schema: LocalSchema
    entity = "customer"

    def __init__(self, database: Database | Path) -> None:
        self.db = database if isinstance(database, Database) else SqliteDatabase(database)
        ddl = self.schema.ddl.get(self.db.engine)
        if ddl is None:
            raise ValueError(
                f"the {self.name} spoke has no schema for {self.db.engine};"
                f" it runs on {', '.join(self.schema.ddl)}"
            )
        self.db.executescript(ddl + self.db.outbox_ddl)
        self.db.install_tombstones(self.schema.domain_table, self.schema.domain_key)

    def close(self) -> None:
        """Close the local database."""
        self.db.close()

    # --- anti-corruption layer: local encodings <-> contract values -------------------------

    @abstractmethod
    def stamp_to_local(self, value: datetime) -> Any:
        """A UTC timestamp in the spoke's own encoding."""

    @abstractmethod
    def stamp_from_local(self, value: Any) -> datetime:
        """The spoke's own timestamp encoding as an aware UTC datetime."""

    @abstractmethod
    def flag_to_local(self, deleted: bool) -> Any:
        """The spoke's encoding of the identity's deleted flag."""

    @abstractmethod
    def domain_to_contract(self, row: dict[str, Any]) -> dict[str, Any]:
        """A local domain row mapped into the domain contract (may break it: the sync checks)."""

    def domain_batch_to_contract(self, batch: pa.RecordBatch) -> pa.Table | None:
        """A batch of local domain rows mapped into the contract at once, or None when this spoke
        maps row by row. Raises `pa.ArrowInvalid` when some row does not convert: the sync then
        maps that batch row by row to name the culprits."""
        return None

    def stamps_to_arrow(self, values: pa.Array) -> pa.Array:
        """Local timestamps as UTC Arrow timestamps (vectorised where the encoding allows)."""
        return pa.array([self.stamp_from_local(v) for v in values.to_pylist()], STAMP)

    def readable_stamps(self, values: pa.Array) -> pa.Array:
        """`stamps_to_arrow`, with null for a value this encoding cannot read: its row breaks the
        contract (the sync holds it with the reason) instead of failing the whole batch."""
        try:
            return self.stamps_to_arrow(values)
        except (pa.ArrowInvalid, ValueError, TypeError):
            return pa.array([self._readable_stamp(v) for v in values.to_pylist()], STAMP)

    def _readable_stamp(self, value: Any) -> datetime | None:
        try:
            return self.stamp_from_local(value)
        except (ValueError, TypeError, OverflowError):
            return None

    @abstractmethod
    def soft_deleted_domain(self, at: datetime) -> dict[str, Any]:
        """Local column values that mark a domain row soft-deleted at `at`."""

    @abstractmethod
    def fake_domain(self, rng: Random) -> dict[str, Any]:
        """Plausible local domain values, for the traffic simulator."""

    # --- write paths -----------------------------------------------------------------------

    def now(self) -> datetime:
        """The spoke's clock, in UTC."""
        return datetime.now(UTC)

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """One local transaction; outbox rows written inside it commit with the change."""
        with self.db.transaction() as db:
            yield db

    def create_customer(self, name: str, email: str, domain: dict[str, Any] | None = None) -> str:
        """Create a customer locally (and its domain row, when given); returns its new id."""
        customer_id = str(uuid.uuid4())
        at = self.now()
        state = {
            "id": customer_id,
            "name": name,
            "email": email,
            "created_at": at,
            "created_by": self.name,
            "updated_at": at,
            "deleted": False,
        }
        with self.transaction() as db:
            self._insert_identities(db, [self._local_row(state, hub_version=0)])
            if domain is not None:
                self._upsert_domain(db, customer_id, domain, at)
            self._emit(db, "created", customer_id, at, {"name": name, "email": email})
        return customer_id

    def update_customer(
        self, customer_id: str, *, name: str | None = None, email: str | None = None
    ) -> None:
        """Change a customer's name and/or e-mail locally and announce it."""
        s = self.schema
        cols = s.identity_columns
        at = self.now()
        with self.transaction() as db:
            row = self._identity_row(db, customer_id)
            if row is None:
                raise KeyError(f"{self.name}: no customer {customer_id!r}")
            new = {"name": name or row[cols["name"]], "email": email or row[cols["email"]]}
            db.execute(
                f"UPDATE {s.identity_table} SET {cols['name']} = ?, {cols['email']} = ?,"
                f" {cols['updated_at']} = ? WHERE {s.identity_key} = ?",
                (new["name"], new["email"], self.stamp_to_local(at), customer_id),
            )
            self._emit(db, "updated", customer_id, at, new)

    def delete_customer(self, customer_id: str) -> None:
        """Delete a customer locally (soft, with its domain row) and announce it."""
        at = self.now()
        with self.transaction() as db:
            if self._identity_row(db, customer_id) is None:
                raise KeyError(f"{self.name}: no customer {customer_id!r}")
            self._mark_deleted(db, customer_id, at)
            self._emit(db, "deleted", customer_id, at, None)

    def save_domain(self, customer_id: str, values: dict[str, Any]) -> None:
        """Insert or change the spoke's domain row of a customer (local column names)."""
        with self.transaction() as db:
            self._upsert_domain(db, customer_id, values, self.now())

    # --- integration -------------------------------------------------------------------------

    def outbox(self, limit: int = 1000) -> list[OutboxMessage]:
        """Unpublished outbox events, in commit order (on servers: insert order, see
        `spokes.databases` for when that differs)."""
        rows = self.db.fetchall(
            "SELECT seq, body FROM hubspoke_outbox WHERE published_at IS NULL ORDER BY seq LIMIT ?",
            (limit,),
        )
        return [OutboxMessage(seq=r["seq"], body=r["body"].encode()) for r in rows]

    def outbox_backlog(self) -> tuple[int, int | None, int | None]:
        """How many outbox events wait, and the first and last of their sequence numbers."""
        row = self.db.fetchone(
            "SELECT count(*) AS waiting, min(seq) AS first, max(seq) AS last"
            " FROM hubspoke_outbox WHERE published_at IS NULL"
        )
        assert row is not None
        return int(row["waiting"]), row["first"], row["last"]

    def published_events(self) -> list[bytes]:
        """Every outbox event the bus has confirmed, in outbox order (for audits and tests)."""
        rows = self.db.fetchall(
            "SELECT body FROM hubspoke_outbox WHERE published_at IS NOT NULL ORDER BY seq"
        )
        return [r["body"].encode() for r in rows]

    def mark_published(self, messages: Sequence[OutboxMessage]) -> None:
        """Record that the bus confirmed these outbox events."""
        at = self.now().isoformat()
        with self.transaction() as db:  # one commit for the batch, not one per event
            db.executemany(
                "UPDATE hubspoke_outbox SET published_at = ? WHERE seq = ?",
                [(at, m.seq) for m in messages],
            )

    def apply_broadcast(self, states: Sequence[dict[str, Any]]) -> int:
        """Apply resolved identity states from the hub when newer than the local copy.

        Idempotent: a state whose hub version is not greater than the local one is ignored,
        so redelivered or reordered broadcasts cannot roll a customer back. Returns how many
        customers changed.
        """
        s = self.schema
        newest: dict[str, dict[str, Any]] = {}
        for state in states:  # several states of one customer: only the newest matters
            held = newest.get(state["id"])
            if held is None or held["version"] < state["version"]:
                newest[state["id"]] = state
        # Set-wise, one statement per kind of change: broadcasts arrive by the thousand.
        with self.transaction() as db:
            local = self._hub_versions(db, list(newest))
            inserts = [st for key, st in newest.items() if key not in local]
            overwrites = [
                st for key, st in newest.items() if key in local and local[key] < st["version"]
            ]
            if inserts:
                self._insert_identities(db, [self._local_row(st, st["version"]) for st in inserts])
            if overwrites:
                rows = [self._local_row(st, st["version"]) for st in overwrites]
                columns = [c for c in rows[0] if c != s.identity_key]
                db.executemany(
                    f"UPDATE {s.identity_table} SET {', '.join(f'{c} = ?' for c in columns)}"
                    f" WHERE {s.identity_key} = ?",
                    [(*(row[c] for c in columns), row[s.identity_key]) for row in rows],
                )
            gone = [st["id"] for st in [*inserts, *overwrites] if st["deleted"]]
            if gone:
                self._soft_delete_domains(db, gone, self.now())
        return len(inserts) + len(overwrites)

    def _hub_versions(self, db: Database, customer_ids: list[str]) -> dict[str, int]:
        """The hub version of each local identity among `customer_ids`."""
        s = self.schema
        found: dict[str, int] = {}
        for chunk in _chunks(customer_ids, 500):
            rows = db.fetchall(
                f"SELECT {s.identity_key} AS k, {s.hub_version} AS v FROM {s.identity_table}"
                f" WHERE {s.identity_key} IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            found |= {row["k"]: row["v"] for row in rows}
        return found

    def erase(self, customer_ids: Sequence[str]) -> int:
        """Right to erasure: delete every local row about these customers, outbox included.

        Unlike `delete_customer` (a soft delete the spoke announces) this removes the rows and
        then rewrites the tables so their bytes leave the database files; returns rows deleted.
        """
        s = self.schema
        deleted = 0
        tombstones = self.keeps_tombstones()
        with self.transaction() as db:
            for customer_id in customer_ids:
                for table, key in (
                    (s.identity_table, s.identity_key),
                    (s.domain_table, s.domain_key),
                ):
                    deleted += db.rowcount(f"DELETE FROM {table} WHERE {key} = ?", (customer_id,))
                # Outbox bodies are JSON naming the entity id. '!' escapes LIKE's wildcards the
                # same way on SQLite, PostgreSQL and MariaDB (a backslash does not).
                literal = re.sub(r"([!%_])", r"!\1", customer_id)
                deleted += db.rowcount(
                    "DELETE FROM hubspoke_outbox WHERE body LIKE ? ESCAPE '!'", (f"%{literal}%",)
                )
            if tombstones:  # written by the trigger just now: the lake's erasure is done apart
                db.executemany(
                    f"DELETE FROM {TOMBSTONES} WHERE deleted_key = ?", [(c,) for c in customer_ids]
                )
        tables = [s.identity_table, s.domain_table, "hubspoke_outbox"]
        self.db.reclaim([*tables, TOMBSTONES] if tombstones else tables)
        return deleted

    def extract_changes(self, since: datetime | None) -> DomainChanges:
        """Domain rows changed after `since` (all rows when None), mapped into the contract."""
        s = self.schema
        sql = f"SELECT *, ({s.domain_deleted}) AS hubspoke_deleted FROM {s.domain_table}"
        params: tuple[Any, ...] = ()
        if since is not None:
            sql += f" WHERE {s.domain_updated} > ?"
            params = (self.stamp_to_local(since),)
        upserts: list[dict[str, Any]] = []
        deleted: list[str] = []
        high: datetime | None = None
        for row in self.db.fetchall(sql + f" ORDER BY {s.domain_updated}", params):
            stamp = self.stamp_from_local(row[s.domain_updated])
            high = stamp if high is None or stamp > high else high
            if row["hubspoke_deleted"]:
                deleted.append(row[s.domain_key])
            else:
                upserts.append(self.domain_to_contract(row))
        return DomainChanges(upserts, deleted, high)

    def changed_batches(self, since: datetime | None, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Local domain rows changed after `since` (all when None) as Arrow batches, each with a
        boolean `hubspoke_deleted` column (soft-deleted rows included, to propagate them)."""
        s = self.schema
        sql = f"SELECT *, ({s.domain_deleted}) AS hubspoke_deleted FROM {s.domain_table}"
        params: tuple[Any, ...] = ()
        if since is not None:
            sql += f" WHERE {s.domain_updated} > ?"  # served by the index on the change time
            params = (self.stamp_to_local(since),)
        for batch in stream_batches(self.db, sql, params, batch_rows):
            flags = pc.cast(batch.column("hubspoke_deleted"), pa.bool_())
            yield batch.set_column(
                batch.schema.get_field_index("hubspoke_deleted"), "hubspoke_deleted", flags
            )

    def live_keys(self, batch_rows: int = 500_000) -> Iterator[pa.Array]:
        """The keys of every live domain row, as Arrow string arrays (for hard-delete detection)."""
        s = self.schema
        sql = f"SELECT {s.domain_key} AS k FROM {s.domain_table} WHERE NOT ({s.domain_deleted})"
        for batch in stream_batches(self.db, sql, (), batch_rows):
            yield pc.cast(batch.column("k"), pa.string())

    def keeps_tombstones(self) -> bool:
        """Whether the database records the hard deletes of domain rows (its trigger's table)."""
        return self.db.has_table(TOMBSTONES)

    def read_tombstones(self) -> Tombstones:
        """Every tombstone the spoke holds: the hard-deleted keys that have no live row now.

        A key deleted and inserted again is live, so not a delete: the sync takes its new row
        from the changes (or from the next sync, when it was inserted after they were read).
        """
        s = self.schema
        sql = (
            f"SELECT t.seq AS seq, t.deleted_key AS k, CASE WHEN NOT EXISTS (SELECT 1"
            f" FROM {s.domain_table} d WHERE d.{s.domain_key} = t.deleted_key"
            f" AND NOT ({s.domain_deleted})) THEN 1 ELSE 0 END AS gone FROM {TOMBSTONES} t"
        )
        seqs: list[pa.Array] = [pa.array([], pa.int64())]
        keys: list[pa.Array] = [pa.array([], pa.string())]
        gone: list[pa.Array] = [pa.array([], pa.bool_())]
        for batch in stream_batches(self.db, sql):
            seqs.append(pc.cast(batch.column("seq"), pa.int64()))
            keys.append(pc.cast(batch.column("k"), pa.string()))
            gone.append(pc.cast(batch.column("gone"), pa.bool_()))
        key, deleted = pa.concat_arrays(keys), pa.concat_arrays(gone)
        return Tombstones(
            seqs=pa.concat_arrays(seqs).to_pylist(),
            deleted=pc.unique(pc.drop_null(pc.filter(key, deleted))),
            complete=key.null_count == 0,
        )

    def forget_tombstones(self, tombstones: Tombstones) -> None:
        """Delete the tombstones a sync read, once their deletes are in the lake."""
        self.db.forget_tombstones(tombstones.seqs)

    def version_batches(self, batch_rows: int = 100_000) -> Iterator[pa.RecordBatch]:
        """(key, updated_at) of every live domain row, as Arrow batches (for reconciliation)."""
        s = self.schema
        sql = (
            f"SELECT {s.domain_key} AS k, {s.domain_updated} AS u FROM {s.domain_table}"
            f" WHERE NOT ({s.domain_deleted})"
        )
        for batch in stream_batches(self.db, sql, (), batch_rows):
            yield pa.record_batch(
                [pc.cast(batch.column("k"), pa.string()), self.readable_stamps(batch.column("u"))],
                names=["key", "updated_at"],
            )

    def local_domain_rows(self, keys: Sequence[str], keyless: bool = False) -> list[dict[str, Any]]:
        """Current live domain rows for `keys` (and those whose key is null, when `keyless`) as
        the spoke holds them (its own column names and encodings, as `changed_batches` reads
        them): for the sync to map and check one by one."""
        s = self.schema
        out: list[dict[str, Any]] = []
        if keyless:
            out += self.db.fetchall(
                f"SELECT * FROM {s.domain_table} WHERE {s.domain_key} IS NULL"
                f" AND NOT ({s.domain_deleted})"
            )
        for chunk in _chunks(list(keys), 500):
            marks = ",".join("?" * len(chunk))
            out += self.db.fetchall(
                f"SELECT * FROM {s.domain_table} WHERE {s.domain_key} IN ({marks})"
                f" AND NOT ({s.domain_deleted})",
                chunk,
            )
        return out

    def domain_versions(self) -> dict[str, datetime]:
        """Key -> last change time of every live domain row (for reconciliation)."""
        s = self.schema
        return {
            r[s.domain_key]: self.stamp_from_local(r[s.domain_updated])
            for r in self.db.fetchall(
                f"SELECT {s.domain_key}, {s.domain_updated} FROM {s.domain_table}"
                f" WHERE NOT ({s.domain_deleted})"
            )
        }

    def identities(self) -> list[dict[str, Any]]:
        """Every identity the spoke holds, in contract shape (for reconciliation and tests)."""
        return [
            self._identity_from_row(r)
            for r in self.db.fetchall(f"SELECT * FROM {self.schema.identity_table}")
        ]

    def pick_live_customer(self, rng: Random) -> str | None:
        """A randomly chosen customer the spoke holds and that is not deleted, if any."""
        s = self.schema
        # Seek from a random key through the primary-key index: O(log n), unlike OFFSET.
        probe = str(uuid.UUID(int=rng.getrandbits(128)))
        live = f"{s.identity_columns['deleted']} = ?"
        for bound in (f"{s.identity_key} >= ?", f"{s.identity_key} < ?"):
            row = self.db.fetchone(
                f"SELECT {s.identity_key} FROM {s.identity_table} WHERE {bound} AND {live}"
                f" ORDER BY {s.identity_key} LIMIT 1",
                (probe, self.flag_to_local(False)),
            )
            if row is not None:
                return row[s.identity_key]
        return None

    def knows(self, customer_id: str) -> bool:
        """Whether the spoke holds any row about the customer, deleted or not."""
        s = self.schema
        return any(
            self.db.fetchone(f"SELECT 1 FROM {table} WHERE {key} = ?", (customer_id,)) is not None
            for table, key in ((s.identity_table, s.identity_key), (s.domain_table, s.domain_key))
        )

    def has_domain_row(self, customer_id: str) -> bool:
        """Whether the spoke keeps live domain data about the customer."""
        s = self.schema
        return (
            self.db.fetchone(
                f"SELECT 1 FROM {s.domain_table} WHERE {s.domain_key} = ? AND NOT ({s.domain_deleted})",
                (customer_id,),
            )
            is not None
        )

    # --- local SQL -----------------------------------------------------------------------------

    def _identity_row(self, db: Database, customer_id: str) -> Row | None:
        s = self.schema
        return db.fetchone(
            f"SELECT * FROM {s.identity_table} WHERE {s.identity_key} = ?", (customer_id,)
        )

    def _identity_from_row(self, row: Row) -> dict[str, Any]:
        cols = self.schema.identity_columns
        out = {field: row[col] for field, col in cols.items()}
        for field in ("created_at", "updated_at"):
            out[field] = self.stamp_from_local(out[field])
        out["deleted"] = row[cols["deleted"]] == self.flag_to_local(True)
        out["version"] = row[self.schema.hub_version]
        return out

    def _local_identity(self, state: dict[str, Any]) -> dict[str, Any]:
        encode = {
            "created_at": self.stamp_to_local,
            "updated_at": self.stamp_to_local,
            "deleted": self.flag_to_local,
        }
        return {
            col: encode.get(field, lambda v: v)(state[field])
            for field, col in self.schema.identity_columns.items()
        }

    def _insert_identities(self, db: Database, rows: Sequence[dict[str, Any]]) -> None:
        """Insert identity rows already in the spoke's columns (`_local_row`), one statement."""
        columns = list(rows[0])
        db.executemany(
            f"INSERT INTO {self.schema.identity_table} ({', '.join(columns)})"
            f" VALUES ({', '.join('?' * len(columns))})",
            [tuple(row[c] for c in columns) for row in rows],
        )

    def _local_row(self, state: dict[str, Any], hub_version: int) -> dict[str, Any]:
        """An identity state as the spoke stores it, with the hub version it holds."""
        return self._local_identity(state) | {self.schema.hub_version: hub_version}

    def _mark_deleted(self, db: Database, customer_id: str, at: datetime) -> None:
        s = self.schema
        cols = s.identity_columns
        stamp = self.stamp_to_local(at)
        db.execute(
            f"UPDATE {s.identity_table} SET {cols['deleted']} = ?, {cols['updated_at']} = ?"
            f" WHERE {s.identity_key} = ?",
            (self.flag_to_local(True), stamp, customer_id),
        )
        self._soft_delete_domains(db, [customer_id], at)

    def _soft_delete_domains(self, db: Database, customer_ids: Sequence[str], at: datetime) -> None:
        s = self.schema
        values = self.soft_deleted_domain(at) | {s.domain_updated: self.stamp_to_local(at)}
        db.executemany(
            f"UPDATE {s.domain_table} SET {', '.join(f'{c} = ?' for c in values)}"
            f" WHERE {s.domain_key} = ? AND NOT ({s.domain_deleted})",
            [(*values.values(), customer_id) for customer_id in customer_ids],
        )

    def _upsert_domain(
        self, db: Database, customer_id: str, values: dict[str, Any], at: datetime
    ) -> None:
        s = self.schema
        row = {s.domain_key: customer_id, **values, s.domain_updated: self.stamp_to_local(at)}
        db.upsert(s.domain_table, s.domain_key, row)

    def _emit(
        self,
        db: Database,
        event_type: str,
        customer_id: str,
        at: datetime,
        data: dict[str, Any] | None,
    ) -> None:
        event = IdentityEvent(
            event_id=str(uuid.uuid4()),
            event_type=event_type,
            entity=self.entity,
            entity_id=customer_id,
            source=self.name,
            occurred_at=at,
            data=data,
        )
        db.execute(
            "INSERT INTO hubspoke_outbox (event_id, body, created_at) VALUES (?, ?, ?)",
            (event.event_id, event.to_json(), at.isoformat()),
        )


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def iso_stamp(value: datetime) -> str:
    """Fixed-width ISO-8601 UTC text: sorts the same as the instants it encodes."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso_stamp(value: str) -> datetime:
    """Inverse of `iso_stamp`."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


class IsoTextEncodings:
    """Encodings shared by modern spokes: fixed-width ISO-8601 UTC text stamps, 0/1 flags."""

    def stamp_to_local(self, value: datetime) -> str:
        """A UTC timestamp as fixed-width ISO text."""
        return iso_stamp(value)

    def stamp_from_local(self, value: str) -> datetime:
        """Fixed-width ISO text as an aware UTC datetime."""
        return parse_iso_stamp(value)

    def stamps_to_arrow(self, values: pa.Array) -> pa.Array:
        """Fixed-width ISO text as UTC Arrow timestamps, parsed by Arrow."""
        return pc.cast(pc.cast(values, pa.string()), STAMP)

    def flag_to_local(self, deleted: bool) -> int:
        """The deleted flag as 0 or 1."""
        return int(deleted)
