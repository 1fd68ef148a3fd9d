"""Past states of the lake for `asOf` and `asOfVersion`, through Delta time travel.

A past state is the identity table at one Delta version with each extension table as it stood
at that version's commit time, joined like the live snapshot. The few most recently asked
states stay loaded; asking for one again costs nothing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
from deltalake.exceptions import DeltaError, TableNotFoundError

from hubspoke.lake import Lake
from hubspoke_graphql import wide
from hubspoke_graphql.limits import TIME_TRAVEL_VIEWS, InputError
from hubspoke_graphql.snapshot import QueryHook, View
from hubspoke_graphql.wide import quote
from lake_schema import Contract


class TimeTravel:
    """Loads and keeps views of the lake as it stood at past identity versions."""

    def __init__(self, lake: Lake, hooks: Sequence[QueryHook], *, read_threads: int) -> None:
        self._lake = lake
        self._hooks = hooks
        self._read_threads = read_threads
        self._views: OrderedDict[tuple[str, int], View] = OrderedDict()
        self._lock = threading.Lock()

    def view(self, identity: Contract, *, version: int | None, at: datetime | None) -> View:
        """The view of `identity`'s entity at a version or point in time (InputError if none)."""
        table = self._lake.table(identity)
        try:
            if at is not None:
                if at.tzinfo is None:
                    raise InputError(
                        f"asOf needs a date-time with a UTC offset, got {at.isoformat()}"
                    )
                version = table.delta(at.astimezone(UTC)).version()
            assert version is not None
            latest = table.version()
        except (TableNotFoundError, DeltaError, ValueError) as exc:
            raise InputError(f"the lake holds no {identity.table_name} as of {at}: {exc}") from None
        if not 0 <= version <= latest:
            raise InputError(f"asOfVersion must be between 0 and {latest}, got {version}")
        with self._lock:
            cached = self._views.get((identity.name, version))
            if cached is not None:
                self._views.move_to_end((identity.name, version))
                return cached
            view = self._load(identity, version)
            self._views[(identity.name, version)] = view
            while len(self._views) > TIME_TRAVEL_VIEWS:
                self._views.popitem(last=False)
            return view

    def _load(self, identity: Contract, version: int) -> View:
        commit = next(c for c in self._lake.table(identity).history() if c["version"] == version)
        when = datetime.fromtimestamp(commit["timestamp"] / 1000, UTC)
        extensions = self._lake.catalog.extensions(identity.entity)
        con = duckdb.connect(":memory:")
        con.execute("SET TimeZone = 'UTC'")
        tables = {identity.table_name: self._lake.table(identity).read(version=version)}
        versions: dict[str, int | None] = {identity.table_name: version}
        for ext in extensions:
            table = self._lake.table(ext)
            try:
                dt = table.delta(when)
                tables[ext.table_name] = table.read(version=dt.version())
                versions[ext.table_name] = dt.version()
            except (TableNotFoundError, DeltaError, ValueError):
                tables[ext.table_name] = ext.arrow_schema().empty_table()
                versions[ext.table_name] = None
        for name, rows in tables.items():
            _create(con, name, rows)
        for sql in wide.rebuild_sql(identity, extensions):
            con.execute(sql)
        key_order = {
            wide.table_name(identity): wide.KeyOrder(wide.row_count(con, identity), appended=False)
        }
        return View(
            con,
            versions,
            self._hooks,
            identity.table_name,
            key_order=key_order,
            cursors=self._read_threads,
        )


def _create(con: duckdb.DuckDBPyConnection, name: str, rows: pa.Table) -> None:
    con.register("hubspoke_incoming", rows)
    try:
        con.execute(f"CREATE TABLE {quote(name)} AS SELECT * FROM hubspoke_incoming")
    finally:
        con.unregister("hubspoke_incoming")
