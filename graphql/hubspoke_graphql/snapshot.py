"""An in-memory DuckDB copy of the lake tables the API reads, reloaded when one of them changes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import duckdb
import pyarrow as pa
from deltalake.exceptions import TableNotFoundError

from hubspoke.lake import Lake, LakeTable
from hubspoke_graphql.limits import REFRESH_INTERVAL_S
from lake_schema import Contract

QueryHook = Callable[[str, Sequence[Any]], None]
"""Called with the SQL text and its parameters before each query runs."""


def quote(identifier: str) -> str:
    """`identifier` as a quoted SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


class View:
    """One loaded set of tables, each at a known Delta version; immutable once built."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        versions: Mapping[str, int | None],
        hooks: Sequence[QueryHook],
    ) -> None:
        self.versions = dict(versions)
        self._con = con
        self._hooks = hooks
        self._cursor_lock = threading.Lock()

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a read-only query, as dicts; values are always bound, never formatted in."""
        for hook in self._hooks:
            hook(sql, params)
        # duckdb allows one open result per connection: each call gets its own cursor.
        with self._cursor_lock:
            cursor = self._con.cursor()
        try:
            return cursor.sql(sql, params=list(params)).to_arrow_table().to_pylist()
        finally:
            cursor.close()


class Snapshot:
    """Keeps a View of `contracts`' tables that is at most one refresh interval behind the lake."""

    def __init__(
        self,
        lake: Lake,
        contracts: Sequence[Contract],
        refresh_interval: float = REFRESH_INTERVAL_S,
    ) -> None:
        self.query_hooks: list[QueryHook] = []
        self._tables = [lake.table(c) for c in contracts]
        self._interval = refresh_interval
        self._lock = threading.Lock()
        self._view: View | None = None
        self._checked_at = 0.0

    def current(self) -> View:
        """The newest view; blocks (in the calling thread) only for the first load or a check."""
        view = self._view
        if view is not None and time.monotonic() - self._checked_at < self._interval:
            return view
        # One thread checks and reloads; meanwhile the others keep serving the view they have
        # (only the very first load makes everyone wait).
        if not self._lock.acquire(blocking=view is None):
            return view  # type: ignore[return-value]  # non-blocking only when view is set
        try:
            if self._view is None or time.monotonic() - self._checked_at >= self._interval:
                versions = {t.name: _version(t) for t in self._tables}
                if self._view is None or versions != self._view.versions:
                    self._view = self._load(versions)
                self._checked_at = time.monotonic()
            return self._view
        finally:
            self._lock.release()

    def _load(self, versions: Mapping[str, int | None]) -> View:
        con = duckdb.connect(":memory:")
        con.execute("SET TimeZone = 'UTC'")
        for table in self._tables:
            version = versions[table.name]
            # A contract whose table is not created yet reads as an empty table.
            rows = (
                table.contract.arrow_schema().empty_table()
                if version is None
                else table.read(version=version)
            )
            _create(con, table.contract, rows)
        # The previous view's connection closes when the last request using it lets go.
        return View(con, versions, self.query_hooks)


def _version(table: LakeTable) -> int | None:
    try:
        return table.version()
    except TableNotFoundError:
        return None


def _create(con: duckdb.DuckDBPyConnection, contract: Contract, rows: pa.Table) -> None:
    # Sorted by key so that DuckDB's min/max zone maps serve key lookups and key-ordered pages.
    order = ", ".join(quote(k) for k in contract.key_fields)
    con.register("hubspoke_incoming", rows)
    try:
        con.execute(
            f"CREATE TABLE {quote(contract.table_name)} AS"
            f" SELECT * FROM hubspoke_incoming ORDER BY {order}"
        )
    finally:
        con.unregister("hubspoke_incoming")
