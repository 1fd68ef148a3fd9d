"""An in-memory DuckDB copy of the lake tables the API reads, kept current from the lake.

Identity tables follow the hub's log: each refresh folds the `identity_events` batches logged
since the last one onto the rows they touch, so a change is visible as soon as it is durably
logged, before the hub merges it into the identity table (that merge runs only every few seconds
under load). The identity table is reloaded in full only when it changed in a way the log does
not explain. Extension tables change nightly and are reloaded when their Delta version changes.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import duckdb
import polars as pl
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError
from graphql import GraphQLError

from hubspoke.ingest import INGEST_APP, PROJECTION_APP, fold_logged_batches
from hubspoke.lake import Lake, LakeTable
from hubspoke.resolve import APPLIED, State
from hubspoke_graphql import wide
from hubspoke_graphql.limits import REFRESH_INTERVAL_S
from hubspoke_graphql.wide import quote
from lake_schema import Contract

log = logging.getLogger(__name__)

QueryHook = Callable[[str, Sequence[Any]], None]
"""Called with the SQL text and its parameters before each query runs."""

LOG_TABLE = "identity_events"
INDEX_OVERLAY_MAX = 150_000
"""Changed rows kept beside the indexed full join before the index is rebuilt from scratch."""
PROJECT_STEP = "project"
"""The commit metadata `step` of the hub's merges into an identity table (see hubspoke.ingest)."""


_SERIALS = itertools.count()
_reading = threading.local()
"""The `Interruptible` read the current thread runs, if any."""
T = TypeVar("T")


class QueryStopped(Exception):
    """A read reached a query after its request's time limit had stopped it."""


class ViewGone(GraphQLError):
    """A view can query no more: its last cursor failed after the lake moved on."""

    def __init__(self) -> None:
        super().__init__(
            "this request's view of the lake is gone; ask again", extensions={"code": "UNAVAILABLE"}
        )


class Interruptible:
    """One read of a request on a read thread, whose DuckDB query the request can interrupt.

    A request stopped at its time limit interrupts the query it waits for: the read thread is
    free again within milliseconds instead of running the query to its end.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cursor: duckdb.DuckDBPyConnection | None = None
        self._stopped = False

    def run(self, call: Callable[[], T]) -> T:
        """`call()` on this thread, the view queries it makes interruptible by `interrupt`."""
        _reading.current = self
        try:
            return call()
        finally:
            _reading.current = None

    def interrupt(self) -> bool:
        """Interrupt the query running now and refuse the ones the read would run next; True
        while a query is still on its cursor, to be interrupted again.

        DuckDB clears a connection's interruption when a query starts: one that lands between
        the cursor's registration and the query's start is lost, hence the repeats. For the
        same reason an interruption after the query ended does nothing to the next one.
        """
        with self._lock:
            self._stopped = True
            if self._cursor is not None:
                self._cursor.interrupt()
            return self._cursor is not None

    @contextmanager
    def querying(self, cursor: duckdb.DuckDBPyConnection) -> Iterator[None]:
        """While a query runs on `cursor` (QueryStopped if the read was stopped already)."""
        with self._lock:
            if self._stopped:
                raise QueryStopped
            self._cursor = cursor
        try:
            yield
        finally:
            with self._lock:  # not handed back to the view while `interrupt` may touch it
                self._cursor = None


class View:
    """One consistent state of the loaded tables; later refreshes do not change what it shows."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        versions: Mapping[str, int | None],
        hooks: Sequence[QueryHook],
        pin_table: str,
        indexes: Mapping[str, wide.RowIndex] | None = None,
        key_order: Mapping[str, wide.KeyOrder] | None = None,
        *,
        cursors: int,
        hold_if_newest: Callable[[View], AbstractContextManager[bool]] | None = None,
    ) -> None:
        if cursors < 1:
            raise ValueError(f"a view needs at least one cursor, got {cursors}")
        self.serial = next(_SERIALS)
        """Unique per view in this process: answers cached for a view are keyed by it."""
        self.versions = dict(versions)
        self.indexes = dict(indexes or {})
        """Identity table name -> in-memory index of its joined rows (live views only)."""
        self.key_order = dict(key_order or {})
        """Joined table name -> the rows that lie in key order by rowid, and whether rows
        changed since sit after them."""
        self._hooks = hooks
        self._con, self._pin_table = con, pin_table
        self._hold_if_newest = hold_if_newest
        """Holds off refreshes and says whether the tables still hold this view's state; None
        when they never change (a past state)."""
        # Refreshes change the tables in place; a DuckDB transaction keeps seeing the state it
        # started on (MVCC), so each cursor opens one now and reads it for the view's lifetime.
        # One cursor per read thread lets every thread query the same view at once (duckdb allows
        # one open result per cursor); they close, ending their transactions, with the view.
        self._cursors: queue.Queue[duckdb.DuckDBPyConnection | None] = queue.Queue()
        self._open = cursors
        for _ in range(cursors):
            self._cursors.put(self._pinned())

    def __del__(self) -> None:
        # Ends the pinned transactions as soon as no request uses the view any more, so DuckDB
        # can drop the row versions only this view still saw.
        while not self._cursors.empty():
            cursor = self._cursors.get_nowait()
            if cursor is not None:
                cursor.close()

    def _pinned(self) -> duckdb.DuckDBPyConnection:
        """A cursor in a transaction that sees the tables as they are now."""
        cursor = self._con.cursor()
        cursor.begin()
        # A transaction takes its snapshot on its first table read, not at BEGIN.
        cursor.sql(
            f"SELECT count(*) FROM (SELECT 1 FROM {quote(self._pin_table)} LIMIT 1)"
        ).fetchall()
        return cursor

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a read-only query, as dicts; values are always bound, never formatted in."""
        with self._cursor(sql, params) as cursor:
            return wide.rows_of(cursor.sql(sql, params=list(params)).to_arrow_table())

    def fetch_tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a small read-only query as tuples: without the Arrow round trip `fetch`
        makes, a page's 100 keys come back in a third of the time."""
        with self._cursor(sql, params) as cursor:
            return cursor.execute(sql, list(params)).fetchall()

    @contextmanager
    def _cursor(self, sql: str, params: Sequence[Any]) -> Iterator[duckdb.DuckDBPyConnection]:
        """One of the view's cursors for this query, once the query hooks have seen it."""
        for hook in self._hooks:
            hook(sql, params)
        cursor = self._cursors.get()
        if cursor is None:
            self._cursors.put(None)  # for the next one waiting
            raise ViewGone
        read: Interruptible | None = getattr(_reading, "current", None)
        try:
            with read.querying(cursor) if read is not None else nullcontext():
                yield cursor
        except duckdb.Error:
            # An interruption or an error (a value that does not cast, say) aborts the cursor's
            # transaction: every later query on it would fail.
            failed, cursor = cursor, None
            cursor = self._renewed(failed)
            raise
        finally:
            if cursor is not None:
                self._cursors.put(cursor)
            elif self._open == 0:
                self._cursors.put(None)  # the view can answer nobody: say so, never block

    def _renewed(self, failed: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection | None:
        """A cursor in place of one whose transaction a failed query aborted: pinned anew while
        the tables still hold the view's state, else None (the view has one fewer).

        A refresh under way is waited for (about 20 ms; a full reload takes longer)."""
        failed.close()
        hold = self._hold_if_newest(self) if self._hold_if_newest else nullcontext(True)
        with hold as newest:
            if newest:
                try:
                    return self._pinned()
                except duckdb.Error:
                    log.exception("could not open a cursor in place of a failed one")
            self._open -= 1  # under the snapshot's lock: one failed cursor counted at a time
            return None


class _Watched:
    """One lake table's newest Delta snapshot, kept in memory and brought up to date in place.

    Reopening a table replays its log from the last checkpoint (about 8 ms); catching up an
    open one reads only the commits since (under 1 ms), and a refresh checks five tables.
    """

    def __init__(self, table: LakeTable) -> None:
        self.table = table
        self._dt: DeltaTable | None = None
        self._log_dir: tuple[int, int] | None = None
        self._progress: dict[str, tuple[int, int]] = {}
        """App id -> (Delta version, its transaction version there), as last read."""

    def forget(self) -> None:
        """Reopen the table at the next `latest`."""
        self._dt = None

    def progress(self, app: str) -> int:
        """The transaction version `app` committed up to the snapshot `latest` returned (0 for
        none), read from the log once per Delta version: each read costs ~0.4 ms, and a worker
        checks the lake about 13 times a second."""
        dt = self._dt
        if dt is None:
            return 0
        version = dt.version()
        known = self._progress.get(app)
        if known is None or known[0] != version:
            known = self._progress[app] = (version, dt.transaction_version(app) or 0)
        return known[1]

    def latest(self) -> DeltaTable | None:
        """The table as of its newest commit, or None while it does not exist."""
        log = self.table.path / "_delta_log"
        try:
            found = log.stat()
        except FileNotFoundError:
            self._dt = None
            return None
        # Reopened when the open snapshot cannot catch up: a table deleted and created again
        # starts a new log folder (whose versions may not exceed the old ones), and forgetting
        # history (an erasure) removes every commit before a fresh checkpoint, the open
        # version's own among them.
        log_dir = (found.st_dev, found.st_ino)
        dt = self._dt
        if (
            dt is not None
            and log_dir == self._log_dir
            and (log / f"{dt.version():020d}.json").exists()
        ):
            # Commits are numbered files: without the next one there is nothing to catch up.
            if (log / f"{dt.version() + 1:020d}.json").exists():
                dt.update_incremental()
        else:
            self._dt = _delta(self.table)
            self._log_dir = log_dir
            self._progress.clear()  # a new log may reuse the old one's version numbers
        return self._dt


@dataclass
class _Followed:
    """Where the DuckDB copy of one identity table stands against the lake."""

    table: LakeTable
    watched: _Watched
    loaded: bool = False
    version: int | None = None
    """Delta version of the identity table the copy started from or has explained since."""
    projected: int = 0
    """The table's `hub.projection` progress at `version`: the last log batch merged into it."""
    applied: int = 0
    """The last log batch folded into the copy."""


class Snapshot:
    """Keeps a View of `contracts`' tables that is at most one refresh interval behind the lake."""

    def __init__(
        self,
        lake: Lake,
        contracts: Sequence[Contract],
        refresh_interval: float = REFRESH_INTERVAL_S,
        *,
        query_threads: int,
        read_threads: int,
    ) -> None:
        self.query_hooks: list[QueryHook] = []
        self.full_loads: list[str] = []
        """Table names in the order they were loaded in full (startup included)."""
        identities = {c.table_name for c in lake.catalog.identities()}
        self._followed = [
            _Followed(table, _Watched(table))
            for table in (lake.table(c) for c in contracts if c.table_name in identities)
        ]
        self._extensions = [
            _Watched(lake.table(c)) for c in contracts if c.table_name not in identities
        ]
        self._ext_versions: dict[str, int | None] = {}
        self._entities = {
            f.table.name: [
                c
                for c in contracts
                if c.kind == "extension" and c.entity == f.table.contract.entity
            ]
            for f in self._followed
        }
        self._contracts = {c.table_name: c for c in contracts}
        self._upserted: dict[str, dict[str, State]] = defaultdict(dict)
        """Identity states written by the refresh in progress, by table and key."""
        self._key_order: dict[str, wide.KeyOrder] = {}
        """Joined table name -> its rows in key order since last built (see View)."""
        self._identity_behind: set[str] = set()
        """Identity tables whose DuckDB copy lacks changes their joined table holds."""
        self._joined_before: dict[str, dict[str, wide.Row]] = {}
        """Joined rows the refresh in progress read from the index, by identity table and key."""
        self._indexes: dict[str, wide.RowIndex] = {}
        self._log = _Watched(lake.table(LOG_TABLE))
        self._log_version: int | None = None
        """The log's Delta version at the last refresh: the next one reads the commits after it."""
        self._pin_table = contracts[0].table_name
        self._interval = refresh_interval
        self._lock = threading.Lock()
        self._query_threads = query_threads
        """DuckDB threads of one request's query (see Settings.api_query_threads)."""
        self._read_threads = read_threads
        """Threads querying a view at once: each view opens a cursor for each."""
        self._con = duckdb.connect(":memory:", config={"threads": query_threads})
        self._con.execute("SET TimeZone = 'UTC'")
        self._writer = self._con.cursor()
        self._view: View | None = None
        self._checked_at = 0.0

    def follow(self, stop: threading.Event) -> None:
        """Check the lake before each refresh interval ends until `stop` is set, so that requests
        find a fresh view and never wait for a check themselves."""
        while not stop.wait(self._interval / 4):
            try:
                # Due before the interval ends, so that a view never looks stale to `fresh` and
                # requests never hop to a thread to check the lake themselves.
                self.current(max_age=self._interval * 3 / 4)
            except Exception:  # the lake may be mid-write or briefly unreadable; next round
                log.exception("snapshot refresh failed; serving the previous view")

    def fresh(self) -> View | None:
        """The view when it was checked within the refresh interval or a check is under way (no
        lake access), else None."""
        view = self._view
        if view is not None and (
            time.monotonic() - self._checked_at < self._interval or self._lock.locked()
        ):
            return view  # while a check runs, `current` would answer this view too
        return None

    def current(self, max_age: float | None = None) -> View:
        """The newest view, checked against the lake when its last check is older than `max_age`
        (the refresh interval by default); blocks (in the calling thread) only for the first load
        or a check."""
        max_age = self._interval if max_age is None else max_age
        view = self._view
        if view is not None and time.monotonic() - self._checked_at < max_age:
            return view
        # One thread checks and refreshes; meanwhile the others keep serving the view they have
        # (only the very first load makes everyone wait).
        if not self._lock.acquire(blocking=view is None):
            return view  # type: ignore[return-value]  # non-blocking only when view is set
        try:
            started = time.monotonic()
            if self._view is None or started - self._checked_at >= max_age:
                if self._refresh_reopening() or self._view is None:
                    self._view = View(
                        self._con,
                        self._versions(),
                        self.query_hooks,
                        self._pin_table,
                        self._indexes,
                        self._key_order,
                        cursors=self._read_threads,
                        hold_if_newest=self._hold_if_newest,
                    )
                # The view is as fresh as the lake state read at the start of the check.
                self._checked_at = started
            return self._view
        finally:
            self._lock.release()

    @contextmanager
    def _hold_if_newest(self, view: View) -> Iterator[bool]:
        """Whether `view` is the newest, with refreshes held off meanwhile."""
        with self._lock:
            yield view is self._view

    def _refresh_reopening(self) -> bool:
        """`_refresh`, again from freshly opened tables if an open one went stale."""
        try:
            return self._refresh()
        except DeltaError:
            # An open table reads some of its log lazily: after its history was forgotten (as an
            # erasure does) the files it expects are gone, and only reopening it helps.
            for watched in [self._log, *self._extensions, *(f.watched for f in self._followed)]:
                watched.forget()
            return self._refresh()

    def _versions(self) -> dict[str, int | None]:
        return self._ext_versions | {f.table.name: f.version for f in self._followed}

    def _refresh(self) -> bool:
        """Bring the DuckDB tables up to the lake in one transaction; True when any changed."""
        ext_versions = {w.table.name: _version(w.latest()) for w in self._extensions}
        reload_ext = [
            w.table
            for w in self._extensions
            if w.table.name not in self._ext_versions
            or self._ext_versions[w.table.name] != ext_versions[w.table.name]
        ]
        # The identity tables' state is read before the log's: the log is committed before each
        # merge, so the log read next always holds every batch a merge seen here contains.
        identity_dts = {f.table.name: f.watched.latest() for f in self._followed}
        identity_state = {
            f.table.name: (_version(identity_dts[f.table.name]), f.watched.progress(PROJECTION_APP))
            for f in self._followed
        }
        reload_ids = [
            f
            for f in self._followed
            if not self._explained(f, identity_dts[f.table.name], *identity_state[f.table.name])
        ]
        log_dt = self._log.latest()
        logged = self._log.progress(INGEST_APP)
        log_version = log_dt.version() if log_dt is not None else None
        # A full load holds the batches up to the table's projection progress; the log has the rest.
        starts = {
            f.table.name: identity_state[f.table.name][1] if f in reload_ids else f.applied
            for f in self._followed
        }
        behind = [f for f in self._followed if starts[f.table.name] < logged]
        if not reload_ext and not reload_ids and not behind:
            for f in self._followed:  # only explained merges (or nothing) happened
                f.version, f.projected = identity_state[f.table.name]
            self._log_version = log_version
            return False

        reloaded = {t.name for t in reload_ext} | {f.table.name for f in reload_ids}
        self._writer.begin()
        try:
            with self._every_core(bool(reloaded)):
                for table in reload_ext:
                    self._load(table, ext_versions[table.name])
                for f in reload_ids:
                    self._load(f.table, identity_state[f.table.name][0])
                if behind and log_dt is not None:
                    self._follow_log(behind, starts, log_dt, reloaded)
                indexes, identity_behind, key_order = self._join(reloaded)
            self._writer.commit()
        except BaseException:
            self._writer.rollback()
            raise
        finally:
            self._upserted.clear()
            self._joined_before.clear()
        # Only after the commit: a failed refresh leaves the bookkeeping matching the tables.
        self._indexes |= indexes
        self._identity_behind = identity_behind
        self._key_order |= key_order
        self._ext_versions = ext_versions
        self._log_version = log_version
        for f in self._followed:
            f.version, f.projected = identity_state[f.table.name]
            f.applied = max(starts[f.table.name], logged)
            f.loaded = True
        return True

    @contextmanager
    def _every_core(self, full_load: bool) -> Iterator[None]:
        """DuckDB on every core while a full load and join runs, the requests' threads otherwise."""
        if not full_load:
            yield
            return
        self._con.execute(f"SET threads = {os.cpu_count() or 1}")
        try:
            yield
        finally:
            self._con.execute(f"SET threads = {self._query_threads}")

    def _join(
        self, reloaded: set[str]
    ) -> tuple[dict[str, wide.RowIndex], set[str], dict[str, wide.KeyOrder]]:
        """Bring each entity's joined table and row index up to its identity and extensions.

        Returns the indexes, the identity tables whose DuckDB copy the joined table is now
        ahead of (the log's changes go straight into the joined rows, and the identity copy is
        caught up from them only when a full join needs it), and the key order of each joined
        table built anew or changed.
        """
        indexes, behind, key_order = {}, set(self._identity_behind), {}
        for identity_name, extensions in self._entities.items():
            identity = self._contracts[identity_name]
            key = identity.key_fields[0]
            index = self._indexes.get(identity_name)
            changed = self._upserted.get(identity_name)
            if reloaded & {identity_name, *(e.table_name for e in extensions)}:
                if identity_name in behind and identity_name not in reloaded:
                    self._writer.execute(wide.identity_from_joined_sql(identity))
                if changed:
                    self._write_identity(identity, list(changed.values()))
                for sql in wide.rebuild_sql(identity, extensions):
                    self._writer.execute(sql)
                built = wide.row_count(self._writer, identity)
                key_order[wide.table_name(identity)] = wide.KeyOrder(built, appended=False)
                behind.discard(identity_name)
                index = None
            elif changed:
                rows = self._joined_rows(identity, extensions, index, changed)
                with self._registered(rows) as name:
                    for sql in wide.replace_sql(identity, name):
                        self._writer.execute(sql)
                behind.add(identity_name)
                if (order := self._key_order.get(wide.table_name(identity))) is not None:
                    key_order[wide.table_name(identity)] = wide.KeyOrder(order.built, appended=True)
                if index is not None and index.overlay_size + rows.num_rows <= INDEX_OVERLAY_MAX:
                    index = index.updated(changed, wide.rows_of(rows), key)
                else:
                    index = None
            if index is None:  # a full join, or an overlay grown too large: index it all again
                rows = self._writer.sql(
                    f"SELECT * FROM {quote(wide.table_name(identity))}"
                ).to_arrow_table()
                index = wide.RowIndex.of(rows, key)
            indexes[identity_name] = index
        return indexes, behind, key_order

    def _joined_rows(
        self,
        identity: Contract,
        extensions: Sequence[Contract],
        index: wide.RowIndex | None,
        changed: Mapping[str, State],
    ) -> pa.Table:
        """The joined rows of the `changed` identity states, as the joined table will hold them.

        The log changes identity columns only: a row already joined keeps its extension
        columns, so only customers new to the snapshot are joined in DuckDB.
        """
        joined_table = quote(wide.table_name(identity))
        schema = (
            index.base.schema
            if index is not None
            else self._writer.sql(f"SELECT * FROM {joined_table} LIMIT 0").to_arrow_table().schema
        )
        joined = self._joined_before.pop(identity.table_name, None)
        if joined is None:
            joined = index.get_many(changed) if index is not None else {}
        rows = [
            joined[k] | {f.name: state[f.name] for f in identity.fields}
            for k, state in changed.items()
            if k in joined
        ]
        new = [state for k, state in changed.items() if k not in joined]
        table = pa.Table.from_pylist(rows, schema=schema)
        if new:
            with self._registered(identity.to_arrow(new)) as name:
                joined_new = self._writer.sql(
                    wide.select_sql(identity, extensions, identity_from=name)
                ).to_arrow_table()
            table = pa.concat_tables([table, joined_new.cast(schema)])
        return table

    def _explained(
        self, f: _Followed, dt: DeltaTable | None, version: int | None, projected: int
    ) -> bool:
        """Whether the identity table's changes since `f.version` up to `version` (the state of
        `dt` as read for this refresh) are merges of logged batches."""
        if not f.loaded or version is None or f.version is None:
            return f.loaded and version is None and f.version is None  # still not created
        if version < f.version or projected < f.projected:
            return False  # the table was recreated, or its progress went backwards
        if version == f.version:
            return True
        commits = dt.history(version - f.version) if dt is not None else []
        # Each merge of the hub writes a state the log already gave us (same fold, same order);
        # any other writer changed the table in a way the log cannot reproduce.
        return all(c.get("step") == PROJECT_STEP for c in commits if c["version"] > f.version)

    def _load(self, table: LakeTable, version: int | None) -> None:
        # A contract whose table is not created yet reads as an empty table.
        rows = (
            table.contract.arrow_schema().empty_table()
            if version is None
            else table.read(version=version)
        )
        # Sorted by key so that DuckDB's min/max zone maps serve key lookups and key-ordered pages.
        order = ", ".join(quote(k) for k in table.contract.key_fields)
        with self._registered(rows) as name:
            self._writer.execute(
                f"CREATE OR REPLACE TABLE {quote(table.name)} AS"
                f" SELECT * FROM {name} ORDER BY {order}"
            )
        self.full_loads.append(table.name)

    def _follow_log(
        self,
        behind: Sequence[_Followed],
        starts: Mapping[str, int],
        log_dt: DeltaTable,
        reloaded: set[str],
    ) -> None:
        """Fold the applied events of the log batches after each table's start onto its rows."""
        since = min(starts[f.table.name] for f in behind)
        rows = self._new_log_rows(log_dt, since)
        by_entity: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            by_entity[row["entity"]].append(row)
        for f in behind:
            contract = f.table.contract
            start = starts[f.table.name]
            events = [r for r in by_entity.get(contract.entity or "", []) if r["batch"] > start]
            if events:
                current = self._states(contract, events, fresh=f.table.name not in reloaded)
                resolved = fold_logged_batches(contract, events, current)
                self._upsert(contract, list(resolved.values()))

    def _new_log_rows(self, log_dt: DeltaTable, since: int) -> list[dict[str, Any]]:
        """The log's applied events of batches after `since`, as dicts."""
        applied = (pl.col("batch") > since) & (pl.col("disposition") == APPLIED)
        if self._log_version is not None and log_dt.version() > self._log_version:
            # The commits since the last refresh are appends of whole batches: their change
            # feed is just their new rows, read without listing the table's older files.
            try:
                changes = pl.from_arrow(
                    pa.table(log_dt.load_cdf(starting_version=self._log_version + 1))
                )
            except Exception:  # e.g. the commits' log files were cleaned up: read the table
                log.warning("reading the log's change feed failed; scanning it", exc_info=True)
            else:
                assert isinstance(changes, pl.DataFrame)
                if changes.get_column("_change_type").eq("insert").all():
                    return changes.filter(applied).to_dicts()
        return self._log.table.read(where=applied, version=log_dt.version()).to_pylist()

    def _states(
        self, contract: Contract, events: list[dict[str, Any]], fresh: bool
    ) -> dict[str, State]:
        """Current states of the entities `events` touch; from the row index when it is `fresh`."""
        key = contract.key_fields[0]
        wanted = {r["entity_id"] for r in events}
        found: dict[str, State] = {}
        index = self._indexes.get(contract.table_name) if fresh else None
        if index is not None:
            names = contract.arrow_schema().names
            joined = index.get_many(wanted)
            self._joined_before[contract.table_name] = joined
            found = {k: {n: row[n] for n in names} for k, row in joined.items()}
        missing = sorted(wanted - found.keys())
        if not missing:
            return found
        with self._registered(pa.table({key: missing})) as name:
            rows = self._writer.sql(
                f"SELECT t.* FROM {quote(contract.table_name)} t SEMI JOIN {name} USING ({quote(key)})"
            ).to_arrow_table()
        return found | {r[key]: r for r in rows.to_pylist()}

    def _upsert(self, contract: Contract, states: list[State]) -> None:
        """Record new identity states; `_join` writes them into the joined table."""
        key = contract.key_fields[0]
        self._upserted[contract.table_name].update((s[key], s) for s in states)

    def _write_identity(self, contract: Contract, states: Sequence[State]) -> None:
        """Replace the identity table's rows of `states` (before a full join reads it)."""
        key = quote(contract.key_fields[0])
        table = quote(contract.table_name)
        with self._registered(contract.to_arrow(list(states))) as name:
            self._writer.execute(f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {name})")
            self._writer.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {name}")

    @contextmanager
    def _registered(self, rows: pa.Table) -> Iterator[str]:
        self._writer.register("hubspoke_incoming", rows)
        try:
            yield "hubspoke_incoming"
        finally:
            self._writer.unregister("hubspoke_incoming")


def _delta(table: LakeTable) -> DeltaTable | None:
    try:
        return table.delta()
    except TableNotFoundError:
        return None


def _version(dt: DeltaTable | None) -> int | None:
    return None if dt is None else dt.version()
