"""The hub's in-memory copy of an identity table, so a batch looks up states without a scan."""

from __future__ import annotations

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
    """

    def __init__(self, table: LakeTable) -> None:
        self.table = table
        self.key = table.contract.key_fields[0]
        self._rows: pl.DataFrame | None = None
        self._version: int | None = None

    def states(self, ids: Collection[str]) -> dict[str, State]:
        """The stored states of `ids` (absent ids have none)."""
        if not ids:
            return {}
        if self._rows is None:
            self._version = self.table.version()
            self._rows = self.table.scan(self._version).collect()
        wanted = pl.DataFrame({self.key: list(ids)}, schema={self.key: self._rows[self.key].dtype})
        found = self._rows.join(wanted, on=self.key, how="semi")
        schema = self.table.contract.arrow_schema()
        return {r[self.key]: r for r in found.to_arrow().cast(schema).to_pylist()}

    def merged(self, states: Sequence[State], version: int | None) -> None:
        """Fold states the hub just merged, as the table holds them at `version`."""
        if self._rows is None:
            return
        if version is None or self._version is None or version != self._version + 1:
            self.drop()  # someone else committed in between: what they wrote is unknown here
            return
        incoming = pl.from_arrow(self.table.contract.to_arrow(list(states)))
        assert isinstance(incoming, pl.DataFrame)
        kept = self._rows.join(incoming.select(self.key), on=self.key, how="anti")
        self._rows = pl.concat([kept, incoming], how="vertical_relaxed")
        self._version = version

    def check(self) -> None:
        """Drop the copy when the table moved on without this hub (another writer, a restore)."""
        if self._rows is not None and self.table.version() != self._version:
            self.drop()

    def drop(self) -> None:
        """Forget the copy; the next lookup loads the table again."""
        self._rows = None
        self._version = None
