"""The hub's in-memory copy of an identity table, so a batch looks up states without a scan."""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from hubspoke.lake import LakeTable
from hubspoke.resolve import State

MERGED_KEPT_MAX = 200_000
"""States merged since the copy was loaded that it keeps beside the loaded rows; past that they
are folded into a new base on the merge thread."""


@dataclass(frozen=True)
class _Rows:
    """The rows of one identity table version: loaded rows by position, and states merged since."""

    base: pa.Table
    positions: Mapping[str, int]
    merged: Mapping[str, State]
    version: int


class IdentityCopy:
    """One identity table's rows at a known Delta version, kept current by the hub's own merges.

    Every batch needs the current state of the customers it touches. Keys are random UUIDs, so
    Delta's file statistics prune nothing and each lookup read the whole table: at a million
    customers that cost more than the rest of the batch. The hub is the only writer of its
    identity tables while it holds its lock, so a copy loaded once stays exact as long as the
    hub folds its own merges in; a commit by anyone else (seen as a version the copy does not
    know) drops it, and the next lookup loads the table again. It holds the whole table in
    memory: about 200 MB per million customers.

    A lookup is a dict probe per key and one Arrow take, not a join over every row: batches
    come every few milliseconds under load. Lookups come from the batch thread and merges are
    folded in from the merge thread; each fold publishes a new immutable `_Rows`, and a lock
    keeps a merge from landing between a load's version and its rows, which would lose it.
    """

    def __init__(self, table: LakeTable) -> None:
        self.table = table
        self.key = table.contract.key_fields[0]
        self._rows: _Rows | None = None
        self._lock = threading.Lock()

    def states(self, ids: Collection[str]) -> dict[str, State]:
        """The stored states of `ids` (absent ids have none)."""
        if not ids:
            return {}
        with self._lock:
            if self._rows is None:
                version = self.table.version()
                self._rows = _indexed(self.table.read(version=version), self.key, {}, version)
            rows = self._rows
        found = {i: dict(rows.merged[i]) for i in ids if i in rows.merged}
        stored = {i: p for i in ids if i not in found and (p := rows.positions.get(i)) is not None}
        if stored:
            taken = rows.base.take(list(stored.values())).to_pylist()
            found |= dict(zip(stored, taken, strict=True))
        return found

    def merged(self, states: Sequence[State], version: int | None) -> None:
        """Fold states the hub just merged, as the table holds them at `version` (None: unchanged)."""
        if version is None:
            return
        # As the table stores them: typed by the contract, whatever the fold produced.
        incoming = self.table.contract.to_arrow(list(states)).to_pylist()
        with self._lock:
            rows = self._rows
            if rows is None:
                return
            if version != rows.version + 1:
                self._rows = None  # someone else committed in between: what they wrote is unknown
                return
            merged = {**rows.merged, **{s[self.key]: s for s in incoming}}
            self._rows = rows = _Rows(rows.base, rows.positions, merged, version)
        if len(merged) <= MERGED_KEPT_MAX:
            return
        # Folded outside the lock, as it takes a second at a million rows; merges come one at a
        # time from the merge thread, so only a drop or a reload can happen meanwhile.
        folded = _indexed(rows.base, self.key, merged, version)
        with self._lock:
            if self._rows is rows:
                self._rows = folded

    def check(self) -> None:
        """Drop the copy when the table moved on without this hub (another writer, a restore)."""
        with self._lock:
            if self._rows is not None and self.table.version() != self._rows.version:
                self._rows = None


def _indexed(base: pa.Table, key: str, merged: Mapping[str, State], version: int) -> _Rows:
    """Rows of `base` with `merged` states folded in, indexed by key."""
    if merged:
        kept = pc.invert(pc.is_in(base[key], value_set=pa.array(list(merged))))
        base = pa.concat_tables(
            [base.filter(kept), pa.Table.from_pylist(list(merged.values()), schema=base.schema)]
        )
    base = base.combine_chunks()  # one chunk: a take then needs no concatenation first
    keys = base.column(key).to_pylist()
    return _Rows(base, dict(zip(keys, range(len(keys)), strict=True)), {}, version)
