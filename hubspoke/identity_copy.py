"""The hub's in-memory copy of an identity table, so a batch looks up states without a scan."""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence

import polars as pl

from hubspoke.lake import LakeTable
from hubspoke.resolve import State


class IdentityCopy:
    """One identity table's rows at a known Delta version, kept current by the hub's own merges.

    Every batch needs the current state of the customers it touches. Keys are random UUIDs, so
    Delta's file statistics prune nothing and each lookup read the whole table: at a million
    customers that cost more than the rest of the batch. The hub is the only writer of its
    identity tables while it holds its lock, so a copy loaded once stays exact as long as the
    hub folds its own merges in; a commit by anyone else (seen as a version the copy does not
    know) drops it, and the next lookup loads the table again. It holds the whole table in
    memory: about 200 MB per million customers.

    Lookups come from the batch thread and merges are folded in from the merge thread; a lock
    keeps a merge from landing between a load's version and its rows, which would lose it.
    """

    def __init__(self, table: LakeTable) -> None:
        self.table = table
        self.key = table.contract.key_fields[0]
        self._rows: pl.DataFrame | None = None
        self._version: int | None = None
        self._lock = threading.Lock()

    def states(self, ids: Collection[str]) -> dict[str, State]:
        """The stored states of `ids` (absent ids have none)."""
        if not ids:
            return {}
        with self._lock:
            if self._rows is None:
                self._version = self.table.version()
                self._rows = self.table.scan(self._version).collect()
            rows = self._rows
        wanted = pl.DataFrame({self.key: list(ids)}, schema={self.key: rows[self.key].dtype})
        found = rows.join(wanted, on=self.key, how="semi")
        schema = self.table.contract.arrow_schema()
        return {r[self.key]: r for r in found.to_arrow().cast(schema).to_pylist()}

    def merged(self, states: Sequence[State], version: int | None) -> None:
        """Fold states the hub just merged, as the table holds them at `version` (None: unchanged)."""
        if version is None:
            return
        incoming = pl.from_arrow(self.table.contract.to_arrow(list(states)))
        assert isinstance(incoming, pl.DataFrame)
        with self._lock:
            if self._rows is None or self._version is None:
                return
            if version != self._version + 1:
                self._drop()  # someone else committed in between: what they wrote is unknown
                return
            kept = self._rows.join(incoming.select(self.key), on=self.key, how="anti")
            self._rows = pl.concat([kept, incoming], how="vertical_relaxed")
            self._version = version

    def check(self) -> None:
        """Drop the copy when the table moved on without this hub (another writer, a restore)."""
        with self._lock:
            if self._rows is not None and self.table.version() != self._version:
                self._drop()

    def _drop(self) -> None:
        self._rows = None
        self._version = None
