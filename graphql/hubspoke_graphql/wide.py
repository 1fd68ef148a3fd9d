"""The entity table the API reads: identity columns plus every extension's, joined once per refresh.

A lookup, a filtered page or an aggregate then reads one table (one indexed probe, one scan) instead
of joining a million identity rows with each extension per request.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, overload

import duckdb
import pyarrow as pa

from lake_schema import Contract


def quote(identifier: str) -> str:
    """`identifier` as a quoted SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def table_name(identity: Contract) -> str:
    """The name of an entity's joined table in the snapshot."""
    return f"{identity.table_name}__entity"


def column(extension: Contract, field: str) -> str:
    """The joined column holding `field` of an extension (`sales__account_value`)."""
    return f"{extension.extension_name}__{field}"


def present_column(extension: Contract) -> str:
    """The joined column that is null when the extension holds no row for the entity."""
    return column(extension, extension.key_fields[0])


def select_sql(
    identity: Contract,
    extensions: Sequence[Contract],
    ids_from: str | None = None,
    identity_from: str | None = None,
) -> str:
    """SELECT of the joined rows, all of them or those whose key is in table `ids_from`; the
    identity rows come from table `identity_from` when given, else the identity table."""
    key = quote(identity.key_fields[0])
    columns = ["i.*"]
    joins = []
    for n, ext in enumerate(extensions):
        alias = f"e{n}"
        columns += [f"{alias}.{quote(f.name)} AS {quote(column(ext, f.name))}" for f in ext.fields]
        joins.append(
            f" LEFT JOIN {quote(ext.table_name)} {alias}"
            f" ON {alias}.{quote(ext.key_fields[0])} = i.{key}"
        )
    where = f" WHERE i.{key} IN (SELECT {key} FROM {ids_from})" if ids_from else ""
    source = identity_from or quote(identity.table_name)
    return f"SELECT {', '.join(columns)} FROM {source} i{''.join(joins)}{where}"


def rebuild_sql(identity: Contract, extensions: Sequence[Contract]) -> list[str]:
    """Statements that recreate the joined table, sorted and indexed by key."""
    name, key = quote(table_name(identity)), quote(identity.key_fields[0])
    # Sorted by key: DuckDB's zone maps then prune key-ordered pages and keyset cursors.
    return [
        f"CREATE OR REPLACE TABLE {name} AS {select_sql(identity, extensions)} ORDER BY {key}",
        f"CREATE INDEX {quote(table_name(identity) + '_key')} ON {name} ({key})",
    ]


def row_count(con: duckdb.DuckDBPyConnection, identity: Contract) -> int:
    """Rows of an entity's joined table."""
    row = con.sql(f"SELECT count(*) FROM {quote(table_name(identity))}").fetchall()[0]
    return int(row[0])


def identity_from_joined_sql(identity: Contract) -> str:
    """A statement that recreates the identity table from the joined table's identity columns."""
    columns = ", ".join(quote(name) for name in identity.arrow_schema().names)
    return (
        f"CREATE OR REPLACE TABLE {quote(identity.table_name)} AS SELECT {columns}"
        f" FROM {quote(table_name(identity))} ORDER BY {quote(identity.key_fields[0])}"
    )


def replace_sql(identity: Contract, rows_from: str) -> list[str]:
    """Statements that replace the joined rows whose key is in table `rows_from` with its rows."""
    name, key = quote(table_name(identity)), quote(identity.key_fields[0])
    return [
        f"DELETE FROM {name} WHERE {key} IN (SELECT {key} FROM {rows_from})",
        f"INSERT INTO {name} BY NAME SELECT * FROM {rows_from}",
    ]


Row = dict[str, Any]


@dataclass(frozen=True)
class KeyOrder:
    """How much of a joined table lies in key order by rowid (as built, for pages to stop early)."""

    built: int
    """Rows the table held in key order when last built: rowids below this."""
    appended: bool
    """Whether rows changed since were appended after them (their old versions deleted)."""


OVERLAY_CHAIN_MAX = 32
"""Refreshes whose changes an index chains before flattening them into one dict."""


@dataclass(frozen=True)
class RowIndex:
    """Key -> joined row of one entity, in memory: a lookup costs microseconds and no query.

    The rows of the last full join stay in one Arrow table with a hash index of their keys;
    rows changed since (by the followed log) sit in a small overlay, replaced as a whole on
    every refresh so that a view keeps the index it was created with.
    """

    base: pa.Table
    positions: Mapping[str, int]
    overlay: ChainMap[str, Row | None]
    """Rows changed since `base` was taken, newest refresh first; None for a row that is gone."""
    readers: tuple[tuple[str, Callable[[int], Any]], ...]
    """Column name and the function reading its value at a position of `base`."""

    @classmethod
    def of(cls, rows: pa.Table, key: str) -> RowIndex:
        """An index over a full join."""
        # One chunk: taking rows by position from DuckDB's many small chunks would first
        # concatenate every column on each take.
        rows = rows.combine_chunks()
        keys = rows.column(key).to_pylist()
        readers = tuple((name, _reader(rows.column(name))) for name in rows.column_names)
        return cls(rows, dict(zip(keys, range(len(keys)), strict=True)), ChainMap(), readers)

    def get(self, key: str) -> Row | None:
        """The joined row of `key`, or None."""
        if key in self.overlay:
            return self.overlay[key]
        position = self.positions.get(key)
        if position is None:
            return None
        # Column by column: a one-row slice's to_pylist costs ~80 us of fixed overhead per row.
        return {name: read(position) for name, read in self.readers}

    def get_many(self, keys: Iterable[str]) -> dict[str, Row]:
        """The joined rows of those `keys` that have one, the base's taken in one Arrow call."""
        found: dict[str, Row] = {}
        in_base: dict[str, int] = {}
        for key in keys:
            if key in self.overlay:
                row = self.overlay[key]
                if row is not None:
                    found[key] = row
            elif (position := self.positions.get(key)) is not None:
                in_base[key] = position
        if in_base:
            taken = rows_of(self.base.take(list(in_base.values())))
            found |= dict(zip(in_base, taken, strict=True))
        return found

    def rows(self, keys: Sequence[str]) -> Rows | None:
        """The joined rows of `keys` in their order, as one Arrow table; None when one is gone."""
        positions: list[int] = []
        changed: list[Row] = []
        order: list[int] = []  # per key, its row among the base rows taken, then the changed
        for key in keys:
            if key in self.overlay:
                row = self.overlay[key]
                if row is None:
                    return None
                order.append(-1 - len(changed))  # resolved once the base rows are counted
                changed.append(row)
            elif (position := self.positions.get(key)) is not None:
                order.append(len(positions))
                positions.append(position)
            else:
                return None
        taken = self.base.take(pa.array(positions, pa.int64()))
        if not changed:
            return Rows(taken)
        fresh = pa.Table.from_pylist(changed, schema=self.base.schema)
        both = pa.concat_tables([taken, fresh])
        return Rows(both.take([i if i >= 0 else len(positions) - 1 - i for i in order]))

    def updated(self, keys: Iterable[str], rows: Sequence[Row], key: str) -> RowIndex:
        """A new index with the rows of `keys` replaced by `rows` (keys without a row are gone)."""
        changed: dict[str, Row | None] = dict.fromkeys(keys)
        changed |= {row[key]: row for row in rows}
        # Chained, not copied: every refresh would otherwise copy all changes since the last
        # full join. Flattened once the chain is long, so lookups stay a few dict probes.
        overlay = self.overlay.new_child(changed)
        if len(overlay.maps) > OVERLAY_CHAIN_MAX:
            overlay = ChainMap(dict(overlay))
        return RowIndex(self.base, self.positions, overlay, self.readers)

    @property
    def overlay_size(self) -> int:
        """How many changed rows the overlay holds at most (a key changed twice counts twice)."""
        return sum(len(m) for m in self.overlay.maps)


class Rows(Sequence[Row]):
    """Joined rows held as one Arrow table, as a page read from the index: answers take whole
    columns (serialized in Arrow where a scalar allows, see lookups), and a column becomes
    Python values only when asked for, a row's dict only when one is read."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self._python: dict[str, list[Any]] = {}

    def __len__(self) -> int:
        return self.table.num_rows

    @overload
    def __getitem__(self, index: int) -> Row: ...
    @overload
    def __getitem__(self, index: slice) -> Rows: ...
    def __getitem__(self, index: int | slice) -> Row | Rows:
        if isinstance(index, slice):
            chosen = range(len(self))[index]
            if chosen.step == 1:  # a page trimmed to its size: no copy
                return Rows(self.table.slice(chosen.start, len(chosen)))
            return self.select(chosen)
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return {name: self.column(name)[index] for name in self.table.column_names}

    def column(self, name: str) -> list[Any]:
        """The Python values of one column, in row order (converted once)."""
        values = self._python.get(name)
        if values is None:
            values = self._python[name] = _values(self.table.column(name))
        return values

    def select(self, positions: Sequence[int]) -> Rows:
        """The rows at `positions`, in that order."""
        return Rows(self.table.take(pa.array(positions, pa.int64())))


def column_of(rows: Sequence[Row], name: str) -> list[Any]:
    """The values of one column of `rows`, whether held as dicts or column by column."""
    return rows.column(name) if isinstance(rows, Rows) else [row[name] for row in rows]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UTC_NAMES = {"UTC", "Etc/UTC", "+00:00", "Z"}


def rows_of(table: pa.Table) -> list[Row]:
    """The rows of `table` as dicts, as `to_pylist` gives them, UTC timestamps built faster."""
    # Column by column: a page of 100 joined rows with five UTC timestamps took 3.0 ms through
    # to_pylist (zoneinfo, ~5 us a timestamp) and takes 0.7 ms so.
    columns = [_values(column) for column in table.columns]
    names = table.column_names
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def _values(column: pa.ChunkedArray) -> list[Any]:
    """The Python values of `column`; UTC microsecond timestamps as the epoch plus the micros,
    the same instants with the same isoformat as pyarrow's, without zoneinfo."""
    if is_utc(column.type) and column.type.unit == "us":
        return [_utc_from_micros(m) for m in column.cast(pa.int64()).to_pylist()]
    if is_utc(column.type):
        naive = column.cast(pa.timestamp(column.type.unit)).to_pylist()
        return [None if v is None else v.replace(tzinfo=UTC) for v in naive]
    return column.to_pylist()


def is_utc(kind: pa.DataType) -> bool:
    """Whether `kind` is a timestamp in UTC."""
    return pa.types.is_timestamp(kind) and kind.tz in _UTC_NAMES


def _reader(column: pa.ChunkedArray) -> Callable[[int], Any]:
    """A function reading the value at one position of `column` as the Python object pyarrow gives."""
    kind = column.type
    if is_utc(kind) and kind.unit == "us":
        # pyarrow builds a UTC timestamp through zoneinfo (~4 us a value); the epoch plus the
        # stored microseconds is the same instant, with the same isoformat, several times faster.
        micros = column.cast(pa.int64())

        return lambda position: _utc_from_micros(micros[position].as_py())
    return lambda position: column[position].as_py()


def _utc_from_micros(micros: int | None) -> datetime | None:
    """The UTC instant `micros` after the epoch, as pyarrow would give it (isoformat alike)."""
    return None if micros is None else _EPOCH + timedelta(microseconds=micros)
