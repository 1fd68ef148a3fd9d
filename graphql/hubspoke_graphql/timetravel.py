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

from hubspoke.lake import HistoryGone, Lake, LakeTable
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
        self._commits: dict[str, tuple[int, dict[int, datetime]]] = {}
        """Per identity table: its version, and the commit times its log held then."""
        self._lock = threading.Lock()

    def view(self, identity: Contract, *, version: int | None, at: datetime | None) -> View:
        """The view of `identity`'s entity at a version or point in time (InputError if none)."""
        table = self._lake.table(identity)
        if at is not None and at.tzinfo is None:
            raise InputError(f"asOf needs a date-time with a UTC offset, got {at.isoformat()}")
        try:
            commits = self._commit_times(table)
            if at is not None:
                version = table.version_at(at.astimezone(UTC), commits)
        except HistoryGone as exc:
            raise InputError(f"asOf: {exc}") from None
        except (TableNotFoundError, DeltaError) as exc:
            raise InputError(f"the lake holds no {identity.table_name}: {exc}") from None
        oldest, latest = min(commits), max(commits)
        if version is None:
            assert at is not None
            raise InputError(
                f"asOf {at.isoformat()} is before {identity.table_name} began"
                f" ({commits[0].isoformat()})"
            )
        if not oldest <= version <= latest:
            raise InputError(
                f"asOfVersion must be between {oldest} and {latest}, got {version}"
                + (f" (the history before {oldest} was forgotten)" if oldest else "")
            )
        with self._lock:
            cached = self._views.get((identity.name, version))
            if cached is not None:
                self._views.move_to_end((identity.name, version))
                return cached
            view = self._load(identity, version, commits[version])
            self._views[(identity.name, version)] = view
            while len(self._views) > TIME_TRAVEL_VIEWS:
                self._views.popitem(last=False)
            return view

    def _commit_times(self, table: LakeTable) -> dict[int, datetime]:
        # A history only changes with a new version: read it again only then (a table written
        # in real time has thousands of commits).
        current = table.version()
        known = self._commits.get(table.name)
        if known is None or known[0] != current:
            known = self._commits[table.name] = (current, table.commit_times())
        return known[1]

    def _load(self, identity: Contract, version: int, when: datetime) -> View:
        extensions = self._lake.catalog.extensions(identity.entity)
        con = duckdb.connect(":memory:")
        con.execute("SET TimeZone = 'UTC'")
        tables = {identity.table_name: self._lake.table(identity).read(version=version)}
        versions: dict[str, int | None] = {identity.table_name: version}
        for ext in extensions:
            table = self._lake.table(ext)
            try:
                at = table.version_at(when)
            except HistoryGone as exc:
                raise InputError(f"asOf: {exc}") from None
            except (TableNotFoundError, DeltaError):
                at = None  # no such table yet
            # None: the extension began after that commit, and held nothing then.
            tables[ext.table_name] = (
                ext.arrow_schema().empty_table() if at is None else table.read(version=at)
            )
            versions[ext.table_name] = at
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
