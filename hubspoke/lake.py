"""All Delta Lake I/O: the rest of Hubspoke speaks in contracts and Arrow tables, not paths."""

from __future__ import annotations

import fcntl
import json
import time
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from deltalake import (
    CommitProperties,
    DeltaTable,
    Field,
    Transaction,
    WriterProperties,
    write_deltalake,
)
from deltalake.exceptions import CommitFailedError

from lake_schema import Catalog, Contract
from lake_schema.contract import Expiry
from lake_schema.evolution import SchemaChange, compare

_CHANGE_FEED = "delta.enableChangeDataFeed"
_WRITER = WriterProperties(compression="ZSTD")
_CLUSTERED_WRITER = WriterProperties(compression="ZSTD", max_row_group_size=16_384)
"""Z-ordered files in small row groups: each group then spans a narrow key range, and a point
read opens one of them (measured: 1M-row groups 272 ms, 16k-row groups 12 ms per lookup)."""
_COMMIT_RETRIES = 8
_NO_KEYS = pa.array([], pa.string())
_LISTED_DELETES = 10_000
"""Delete keys up to this many go into the merge predicate as a list; more are looked up first
(measured at 5M rows: 1,000 listed keys cost nothing measurable, a lookup 0.1-0.2 s)."""
T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """A writer's position (app id, monotonic number) committed atomically with its data."""

    app_id: str
    position: int

    def commit_properties(self, metadata: Mapping[str, Any] | None = None) -> CommitProperties:
        """Commit properties that record this progress (and metadata) in the same commit."""
        return CommitProperties(
            app_transactions=[Transaction(self.app_id, self.position)],
            custom_metadata=dict(metadata or {}),
        )


class HistoryGone(LookupError):
    """A table's log no longer holds its state at a point in time: its history before was
    forgotten (an erasure) or its log entries expired."""

    def __init__(self, table: str, asked: datetime, oldest: int, oldest_at: datetime) -> None:
        super().__init__(
            f"{table} keeps no state as of {asked.isoformat()}: its history before version"
            f" {oldest} ({oldest_at.isoformat()}) was forgotten"
        )


@dataclass(frozen=True)
class CommitTimes:
    """When each version a table's log holds was committed: versions `oldest` to `latest`."""

    table: str
    oldest: int
    millis: array[int]
    """Epoch milliseconds of each version's commit, in version order (rising, as Delta's own
    time travel takes them to be)."""

    @property
    def latest(self) -> int:
        """The newest version known."""
        return self.oldest + len(self.millis) - 1

    def at(self, version: int) -> datetime:
        """When `version` was committed."""
        return datetime.fromtimestamp(self.millis[version - self.oldest] / 1000, UTC)

    def version_at(self, when: datetime) -> int | None:
        """The newest version committed at or before `when` (an aware datetime); None when the
        table's first version came after it.

        deltalake's own `load_as_version(datetime)` answers version 0 for a time before the
        table, and the oldest version it still holds for a time before a forgotten history:
        a state the table did not have then. Raises HistoryGone for the latter instead.
        """
        newer = bisect_right(self.millis, when.timestamp() * 1000)
        if newer:
            return self.oldest + newer - 1
        if self.oldest == 0:
            return None
        raise HistoryGone(self.table, when, self.oldest, self.at(self.oldest))

    def extended(self, millis: Iterable[int]) -> CommitTimes:
        """These times with those of the versions committed after `latest`, in order."""
        return CommitTimes(self.table, self.oldest, array("q", [*self.millis, *millis]))


@dataclass(frozen=True)
class FileStats:
    """How a table is laid out: the files its current version reads, and what the folder holds."""

    active_files: int
    active_bytes: int
    stored_files: int
    """Data files in the folder, including removed ones vacuum has not deleted yet."""
    stored_bytes: int


@dataclass(frozen=True)
class MaintenanceReport:
    """What one maintenance pass did to one table."""

    table: str
    before: FileStats
    after: FileStats
    files_compacted: int
    files_written: int
    files_vacuumed: int
    z_order: tuple[str, ...]
    version: int


class LakeTable:
    """One Delta table governed by one contract."""

    def __init__(self, contract: Contract, path: Path) -> None:
        self.contract = contract
        self.path = path

    def __repr__(self) -> str:
        return f"LakeTable({self.contract.table_name!r}, {str(self.path)!r})"

    @property
    def name(self) -> str:
        """The table's snake_case name (also its folder)."""
        return self.contract.table_name

    def create_if_missing(self) -> None:
        """Create the empty table with the contract's schema; when it exists, only align its
        change data feed with the contract (a commit only when they differ)."""
        if DeltaTable.is_deltatable(str(self.path)):
            self._align_change_feed()
            return
        self.path.mkdir(parents=True, exist_ok=True)
        DeltaTable.create(
            str(self.path),
            schema=self.contract.arrow_schema(),
            mode="ignore",
            name=self.contract.table_name,
            description=self.contract.description,
            configuration={_CHANGE_FEED: _flag(self.contract.change_feed)},
            commit_properties=CommitProperties(
                custom_metadata={
                    "contract": self.contract.name,
                    "contract_version": self.contract.version,
                }
            ),
        )

    def _align_change_feed(self) -> None:
        wanted = _flag(self.contract.change_feed)

        def align(dt: DeltaTable) -> None:
            # Checked again on every retry: a process starting beside this one may have aligned it.
            if dt.metadata().configuration.get(_CHANGE_FEED, "false") != wanted:
                dt.alter.set_table_properties({_CHANGE_FEED: wanted})

        self._with_retries(align)

    def delta(self, version: int | None = None) -> DeltaTable:
        """The underlying DeltaTable, optionally as of a version (for a point in time, see
        `version_at`)."""
        dt = DeltaTable(str(self.path))
        if version is not None:
            dt.load_as_version(version)
        return dt

    def version(self) -> int:
        """Current Delta version."""
        return self.delta().version()

    def schema_change(self) -> SchemaChange:
        """How the contract differs from the table on disk."""
        return compare(self.contract, self.stored_schema())

    def evolve(self) -> list[str]:
        """Add the contract's new nullable fields in place; refuse a breaking change first.

        Returns the added column names (empty when the table already matches). Raises
        `BreakingChange` before anything is written.
        """
        change = self.schema_change()
        change.refuse_breaking()
        if change.added:
            schema = self.contract.arrow_schema()
            self._with_retries(
                lambda dt: dt.alter.add_columns(
                    [Field.from_arrow(schema.field(name)) for name in change.added],
                    commit_properties=CommitProperties(
                        custom_metadata={
                            "step": "schema evolution",
                            "contract_version": self.contract.version,
                            "added": ",".join(change.added),
                        }
                    ),
                )
            )
        return list(change.added)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold this table's writer lock (other processes on this machine wait for it).

        Two merges that insert the same new key can both commit: delta-rs sees appends as
        non-conflicting, so retrying on CommitFailedError alone could duplicate rows.
        """
        locks = self.path.parent / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        with (locks / f"{self.name}.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def count_fast(self) -> int:
        """Number of rows from the Delta log's file statistics (no data file is read)."""
        actions = pa.table(self.delta().get_add_actions(flatten=True))
        return int(pc.sum(actions["num_records"]).as_py() or 0) if actions.num_rows else 0

    def progress(self, app_id: str) -> int | None:
        """The position `app_id` last committed into this table, if any."""
        return self.delta().transaction_version(app_id)

    def scan(self, version: int | None = None) -> pl.LazyFrame:
        """A lazy polars scan of the table (filters and projections are pushed down)."""
        return pl.scan_delta(str(self.path), version=version)

    def read(
        self,
        columns: list[str] | None = None,
        where: pl.Expr | None = None,
        version: int | None = None,
    ) -> pa.Table:
        """Rows as an Arrow table in the contract's physical types, filtered with pushdown."""
        # Filters go through polars: merges write string_view columns, on which pyarrow's
        # statistics pruning fails ("no kernel matching (string, string_view)").
        frame = self.scan(version)
        if where is not None:
            frame = frame.filter(where)
        if columns is not None:
            frame = frame.select(columns)
        table = frame.collect().to_arrow()
        schema = self.contract.arrow_schema()
        return table.cast(pa.schema([schema.field(c) for c in table.column_names]))

    def holding(self, keys: Sequence[Any] | pa.Array, where: pl.Expr | None = None) -> pa.Array:
        """The values of `keys` (a single-column key) held by the table's rows matching `where`."""
        key = self.contract.key_fields[0]
        key_type = self.contract.arrow_schema().field(key).type
        frame = self.scan() if where is None else self.scan().filter(where)
        # A semi join, not a filter with `is_in`: 60,000 keys against 5M rows, 0.21 s against
        # 0.36 s (polars 2.2).
        wanted = pl.from_arrow(pa.table({key: pa.array(keys, type=key_type)})).lazy()
        held = frame.select(key).join(wanted, on=key, how="semi").collect()
        return held.to_series().to_arrow().cast(key_type)

    def dataset(self, version: int | None = None) -> ds.Dataset:
        """A pyarrow dataset over the table's files, for unfiltered Arrow scans."""
        # An explicit filesystem avoids the abort at interpreter exit of delta-rs#2184.
        fs = pafs.SubTreeFileSystem(str(self.path.resolve()), pafs.LocalFileSystem())
        return self.delta(version).to_pyarrow_dataset(filesystem=fs)

    def count(self) -> int:
        """Number of rows."""
        return self.scan().select(pl.len()).collect().item()

    def append(self, rows: pa.Table, progress: Progress | None = None, **metadata: Any) -> int:
        """Append rows (cast to the contract's schema); returns the new version."""
        rows = self._conform(rows)
        props = _commit_properties(progress, metadata)

        def write(dt: DeltaTable) -> int:
            write_deltalake(
                dt, rows, mode="append", writer_properties=_WRITER, commit_properties=props
            )
            return dt.version()  # the version this commit made, whoever commits next

        return self._with_retries(write)

    def upsert(
        self,
        rows: pa.Table,
        *,
        newer_than: str | None = None,
        delete_keys: Sequence[str] | pa.Array = (),
        progress: Progress | None = None,
        **metadata: Any,
    ) -> dict[str, Any]:
        """Merge rows by primary key and delete `delete_keys`, in one atomic commit.

        Returns delta-rs's merge metrics and the `version` the commit made (None when there was
        nothing to commit).

        Args:
            rows: rows in the contract's shape; an existing row is replaced when
                `newer_than` is None or when the incoming value of that column is greater.
            delete_keys: key values (single-column keys) whose rows are removed; keys the table
                does not hold are ignored. A key in `rows` too is upserted, not deleted.
            progress: writer position recorded in the same commit; a concurrent writer's higher
                position is kept (positions never move back), and it is committed even when the
                merge changes no row.
        """
        rows = self._conform(rows)
        keys = self.contract.key_fields
        if delete_keys and len(keys) != 1:
            raise ValueError(f"{self.name}: delete_keys needs a single-column key, has {keys}")
        deletes = pa.array(delete_keys, pa.string()) if len(delete_keys) else _NO_KEYS
        if rows.num_rows:
            deletes = pc.filter(deletes, pc.invert(pc.is_in(deletes, value_set=rows[keys[0]])))
        listed: pa.Array | None = None
        if len(deletes) > _LISTED_DELETES:
            # Too many to list in the merge predicate (planning costs ~20 us a key): they join as
            # source rows, only those the table holds (with the change data feed on, deltalake
            # 1.6 rejects a source row that matches nothing beside inserts).
            rows = _with_delete_rows(rows, self.holding(deletes).to_pylist(), keys[0])
        elif len(deletes):
            listed = deletes
        if rows.num_rows == 0 and listed is None:
            # Nothing to merge, but the writer's position moves on.
            version = self.append(rows, progress, **metadata) if progress is not None else None
            return {
                "num_target_rows_inserted": 0,
                "num_target_rows_updated": 0,
                "num_target_rows_deleted": 0,
                "version": version,
            }
        flagged = "__delete" in rows.column_names
        live = "s.__delete = false" if flagged else "true"
        update_when = live + (f" AND s.{newer_than} > t.{newer_than}" if newer_than else "")
        cols = {c: f"s.{c}" for c in self.contract.field_names}

        def merge(dt: DeltaTable) -> dict[str, Any]:
            props = _commit_properties(_at_least_committed(dt, progress), metadata)
            before = dt.version()
            builder = dt.merge(
                rows,
                predicate=" AND ".join(f"t.{k} = s.{k}" for k in keys),
                source_alias="s",
                target_alias="t",
                writer_properties=_WRITER,
                commit_properties=props,
            )
            if flagged:
                builder = builder.when_matched_delete(predicate="s.__delete = true")
            builder = builder.when_matched_update(
                updates=cols, predicate=update_when
            ).when_not_matched_insert(updates=cols, predicate=live)
            if listed is not None:
                # Rows absent from the source whose key is listed; unheld keys match nothing.
                builder = builder.when_not_matched_by_source_delete(
                    predicate=sql_in(f"t.{keys[0]}", listed.to_pylist())
                )
            metrics = builder.execute()
            return metrics | {"version": dt.version() if dt.version() != before else None}

        metrics = self._with_retries(merge)
        if metrics["version"] is None and progress is not None:
            metrics["version"] = self.append(rows.slice(0, 0), progress, **metadata)
        return metrics

    def delete_where(self, predicate: str, **metadata: Any) -> int:
        """Delete rows matching a SQL predicate; returns how many went."""
        return self.rewrite_where(predicate, **metadata)["rows"]

    def rewrite_where(
        self, predicate: str, updates: Mapping[str, str] | None = None, **metadata: Any
    ) -> dict[str, int]:
        """Delete the rows matching `predicate`, or set `updates` (column -> SQL) on them.

        Returns rows affected, files rewritten (removed) and the version made (-1 if none).
        """

        def op(dt: DeltaTable) -> dict[str, Any]:
            props = CommitProperties(custom_metadata=metadata)
            before = dt.version()
            if updates is None:
                metrics = dt.delete(predicate, writer_properties=_WRITER, commit_properties=props)
            else:
                metrics = dt.update(
                    updates=dict(updates),
                    predicate=predicate,
                    writer_properties=_WRITER,
                    commit_properties=props,
                )
            return metrics | {"version": dt.version() if dt.version() != before else -1}

        metrics = self._with_retries(op)
        return {
            "rows": int(metrics.get("num_deleted_rows", metrics.get("num_updated_rows", 0))),
            "files_rewritten": int(metrics.get("num_removed_files", 0)),
            "version": metrics["version"],
        }

    def forget_history(self) -> dict[str, int]:
        """Physically remove every earlier state of the table, keeping the current one.

        Vacuums every file the current version no longer reads (retention 0), then writes a
        checkpoint of the current version and deletes the log entries before it: the older
        entries' column statistics (min/max) hold values of the rows they described. Time
        travel before this version ends here; app transactions survive in the checkpoint.
        """
        dt = self.delta()
        removed = dt.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
        # Change-data files of earlier commits hold the rows those commits changed; vacuum
        # only removes what the current log tombstones.
        cdc_files = self._vacuum_change_data(timedelta(0))
        log = self.path / "_delta_log"
        dt.create_checkpoint()
        version = dt.version()
        stale = [p for p in log.iterdir() if p.name[:20].isdigit() and int(p.name[:20]) < version]
        for path in stale:
            path.unlink()
        return {"files_removed": len(removed) + len(cdc_files), "log_entries_removed": len(stale)}

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Commit history, newest first."""
        return self.delta().history(limit)

    def commit_times(self, known: CommitTimes | None = None) -> CommitTimes:
        """When each version the log holds was committed. Given what was `known` of it, only the
        versions committed since are read: a table written in real time has thousands (3,000
        commits: 107 ms for the whole history, 5 ms for the last ten)."""
        dt = self.delta()  # one load for the version and the history read from it
        if known is not None and self._log_holds(known.oldest):
            current = dt.version()
            if current == known.latest:
                return known
            if current > known.latest:  # (lower: the table was made anew; read it all)
                newer = sorted(dt.history(current - known.latest), key=lambda c: c["version"])
                # A commit landing meanwhile shifts the newest entries: then read them all.
                if [c["version"] for c in newer] == list(range(known.latest + 1, current + 1)):
                    return known.extended(c["timestamp"] for c in newer)
        commits = sorted(dt.history(), key=lambda c: c["version"])
        return CommitTimes(
            self.name, commits[0]["version"], array("q", (c["timestamp"] for c in commits))
        )

    def _log_holds(self, version: int) -> bool:
        return (self.path / "_delta_log" / f"{version:020d}.json").exists()

    def stored_schema(self) -> pa.Schema:
        """The schema the Delta log holds (what readers see), which may differ from the contract."""
        return pa.schema(self.delta().schema().to_arrow())

    def file_stats(self) -> FileStats:
        """Files and bytes the current version reads, and what the folder stores."""
        actions = pa.table(self.delta().get_add_actions(flatten=True))
        stored = [
            p.stat().st_size for p in self.path.rglob("*.parquet") if "_delta_log" not in p.parts
        ]
        return FileStats(
            active_files=actions.num_rows,
            active_bytes=sum(actions["size_bytes"].to_pylist()),
            stored_files=len(stored),
            stored_bytes=sum(stored),
        )

    def maintain(self) -> MaintenanceReport:
        """Compact small files (Z-ordered where the contract says), checkpoint, then vacuum.

        Vacuum deletes removed files older than the contract's `retention.history`, so time
        travel and slow readers keep working within that window. Reads see the same rows
        before and after: compaction commits the same data in fewer files.
        """
        before = self.file_stats()
        z_order = self.contract.z_order
        metrics: dict[str, Any] = {"numFilesRemoved": 0, "numFilesAdded": 0}
        # Z-order rewrites every file on each run; a table in one file has nothing to gain.
        if before.active_files > 1:
            props = CommitProperties(custom_metadata={"hubspoke": "maintenance"})
            metrics = self._with_retries(
                lambda dt: (
                    dt.optimize.z_order(
                        z_order, writer_properties=_CLUSTERED_WRITER, commit_properties=props
                    )
                    if z_order
                    else dt.optimize.compact(writer_properties=_WRITER, commit_properties=props)
                )
            )
        dt = self.delta()
        if _last_checkpoint(self.path) != dt.version():
            dt.create_checkpoint()
        dt.cleanup_metadata()  # log files older than the log retention, now covered by checkpoints
        history = self.contract.retention.history
        vacuumed = dt.vacuum(
            retention_hours=int(history / timedelta(hours=1)),
            dry_run=False,
            # The contract decides the window, also when it is shorter than Delta's 7-day default.
            enforce_retention_duration=False,
        )
        vacuumed += self._vacuum_change_data(history)
        return MaintenanceReport(
            table=self.name,
            before=before,
            after=self.file_stats(),
            files_compacted=int(metrics["numFilesRemoved"]),
            files_written=int(metrics["numFilesAdded"]),
            files_vacuumed=len(vacuumed),
            z_order=z_order,
            version=self.version(),
        )

    def _vacuum_change_data(self, history: timedelta) -> list[str]:
        # delta-rs's vacuum skips folders starting with "_", so change-data files (the before
        # images of every merge and update, payloads included) would stay forever. They only
        # serve change-feed reads of their own commit: past the history window, like vacuumed
        # data files, they go.
        cutoff = time.time() - history.total_seconds()
        gone = []
        for path in (self.path / "_change_data").rglob("*.parquet"):
            if path.stat().st_mtime <= cutoff:
                path.unlink()
                gone.append(str(path.relative_to(self.path)))
        return gone

    def expire(self, expiry: Expiry, now: datetime) -> int:
        """Replace the expiring fields of rows older than `expiry.after`; returns how many rows.

        Keys and every other field stay. A table with nothing to expire gets no new version.
        """
        cutoff = now - expiry.after
        pending = pl.lit(False)
        for name, value in expiry.set.items():
            column = pl.col(name)
            pending = pending | (column.is_not_null() if value is None else column != value)
        old = (pl.col(expiry.by) < cutoff) & pending
        count = self.scan().filter(old).select(pl.len()).collect().item()
        if count == 0:
            return 0
        not_expired = " OR ".join(
            f"{name} IS NOT NULL" if value is None else f"{name} <> {_sql_literal(value)}"
            for name, value in expiry.set.items()
        )
        metrics = self._with_retries(
            lambda dt: dt.update(
                updates={
                    name: "NULL" if value is None else _sql_literal(value)
                    for name, value in expiry.set.items()
                },
                predicate=f"{expiry.by} < '{cutoff.isoformat()}' AND ({not_expired})",
                writer_properties=_WRITER,
                commit_properties=CommitProperties(
                    custom_metadata={"hubspoke": "retention", "expired_before": cutoff.isoformat()}
                ),
            )
        )
        return int(metrics.get("num_updated_rows", 0))

    def _conform(self, rows: pa.Table) -> pa.Table:
        schema = self.contract.arrow_schema()
        missing = set(schema.names) - set(rows.column_names)
        if missing:
            raise ValueError(f"{self.name}: rows lack contract fields {sorted(missing)}")
        return rows.select(schema.names).cast(schema)

    def _with_retries(self, op: Callable[[DeltaTable], T]) -> T:
        # A writer that loses a commit race sees CommitFailedError; reload and redo.
        for attempt in range(_COMMIT_RETRIES):
            try:
                return op(self.delta())
            except CommitFailedError:
                if attempt == _COMMIT_RETRIES - 1:
                    raise
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")


def sql_in(column: str, values: Sequence[str]) -> str:
    """A `column IN (...)` Delta predicate (deletes, merge clauses), values quoted as literals."""
    return f"{column} IN ({', '.join(_sql_literal(v) for v in values)})"


def _last_checkpoint(path: Path) -> int | None:
    # Delta's protocol names the newest checkpoint in _delta_log/_last_checkpoint.
    marker = path / "_delta_log" / "_last_checkpoint"
    return json.loads(marker.read_text())["version"] if marker.exists() else None


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _commit_properties(progress: Progress | None, metadata: Mapping[str, Any]) -> CommitProperties:
    if progress is None:
        return CommitProperties(custom_metadata=dict(metadata))
    return progress.commit_properties(metadata)


def _at_least_committed(dt: DeltaTable, progress: Progress | None) -> Progress | None:
    # A concurrent writer (a backfill beside the nightly run) may have committed a later position.
    if progress is None:
        return None
    committed = dt.transaction_version(progress.app_id)
    return Progress(progress.app_id, max(progress.position, committed or progress.position))


def _with_delete_rows(rows: pa.Table, keys: Sequence[Any], key: str) -> pa.Table:
    """`rows` flagged `__delete = false`, then a `__delete = true` row per key in `keys`."""
    schema = _nullable(rows.schema)
    blanks = pa.Table.from_pylist([{key: k} for k in keys], schema=schema)
    flags = pa.array([False] * rows.num_rows + [True] * len(keys))
    return pa.concat_tables([rows.cast(schema), blanks]).append_column("__delete", flags)


def _nullable(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_nullable(True) for f in schema])


class Lake:
    """A folder of Delta tables, one per contract, named after the table in snake_case."""

    def __init__(self, root: Path, catalog: Catalog) -> None:
        self.root = root
        self.catalog = catalog

    def table(self, name: str | Contract) -> LakeTable:
        """The table of a contract (by object, CamelCase name or snake_case table name)."""
        contract = name if isinstance(name, Contract) else self.catalog.get(name)
        return LakeTable(contract, self.root / contract.table_name)

    def create_tables(self) -> None:
        """Create every contract's table that does not exist yet."""
        for contract in self.catalog.tables():
            self.table(contract).create_if_missing()

    def tables(self) -> list[LakeTable]:
        """Every table the contracts define."""
        return [self.table(c) for c in self.catalog.tables()]


def _flag(value: bool) -> str:
    return "true" if value else "false"
