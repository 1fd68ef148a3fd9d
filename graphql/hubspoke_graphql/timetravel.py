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

from hubspoke.lake import CommitTimes, HistoryGone, Lake, LakeTable
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
        self._commits: dict[str, CommitTimes] = {}
        """Per table, the commit times read so far (extended as the table moves on)."""
        self._lock = threading.Lock()

    def view(self, identity: Contract, *, version: int | None, at: datetime | None) -> View:
        """The view of `identity`'s entity at a version or point in time (InputError if none)."""
        table = self._lake.table(identity)
        if at is not None and at.tzinfo is None:
            raise InputError(f"asOf needs a date-time with a UTC offset, got {at.isoformat()}")
        try:
            commits = self._commit_times(table)
            if at is not None:
                version = commits.version_at(at.astimezone(UTC))
        except HistoryGone as exc:
            raise InputError(f"asOf: {exc}") from None
        except (TableNotFoundError, DeltaError) as exc:
            raise InputError(f"the lake holds no {identity.table_name}: {exc}") from None
        if version is None:
            assert at is not None
            raise InputError(
                f"asOf {at.isoformat()} is before {identity.table_name} began"
                f" ({commits.at(0).isoformat()})"
            )
        if not commits.oldest <= version <= commits.latest:
            forgotten = f" (the history before {commits.oldest} was forgotten)"
            raise InputError(
                f"asOfVersion must be between {commits.oldest} and {commits.latest},"
                f" got {version}{forgotten if commits.oldest else ''}"
            )
        with self._lock:
            # A forgotten state (an erasure) leaves memory too.
            for name, kept in list(self._views):
                if name == identity.name and kept < commits.oldest:
                    del self._views[(name, kept)]
            cached = self._views.get((identity.name, version))
            if cached is not None:
                self._views.move_to_end((identity.name, version))
                return cached
            view = self._load(identity, version, commits.at(version))
            self._views[(identity.name, version)] = view
            while len(self._views) > TIME_TRAVEL_VIEWS:
                self._views.popitem(last=False)
            return view

    def _commit_times(self, table: LakeTable) -> CommitTimes:
        self._commits[table.name] = table.commit_times(self._commits.get(table.name))
        return self._commits[table.name]

    def _load(self, identity: Contract, version: int, when: datetime) -> View:
        extensions = self._lake.catalog.extensions(identity.entity)
        con = duckdb.connect(":memory:")
        con.execute("SET TimeZone = 'UTC'")
        tables = {identity.table_name: self._lake.table(identity).read(version=version)}
        versions: dict[str, int | None] = {identity.table_name: version}
        for ext in extensions:
            table = self._lake.table(ext)
            try:
                at = self._commit_times(table).version_at(when)
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
