"""Cursor connections: opaque keyset cursors, the paging arguments, and the page types.

A cursor holds the sort values of its row (and the entity key, which ends every order), so
the next page starts right after it whatever changed in between, and it names the order it was
made for: a cursor from another orderBy is refused instead of silently skipping rows.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

import strawberry

from hubspoke_graphql.filters import SortKey, decimal_fits, decimal_shape
from hubspoke_graphql.limits import DEFAULT_PAGE_SIZE, MAX_CURSOR_LENGTH, MAX_PAGE_SIZE, InputError
from hubspoke_graphql.wide import column_of

Node = TypeVar("Node")


def _signature(order: Sequence[SortKey]) -> str:
    return ",".join(f"{k.column}{'+' if k.ascending else '-'}" for k in order)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal | datetime | date):
        return str(value) if isinstance(value, Decimal) else value.isoformat()
    return value


def encode_cursor(entity: str, order: Sequence[SortKey], row: dict[str, Any]) -> str:
    """The opaque cursor of `row` in `order`."""
    values = [_plain(row[k.column]) for k in order]
    text = json.dumps([entity, _signature(order), values], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode()


class Cursors(Sequence[str]):
    """The cursors of a page's rows, each encoded when it is read: most queries ask for the
    end cursor only (100 cursors cost ~0.5 ms a page)."""

    def __init__(
        self, entity: str, order: Sequence[SortKey], rows: Sequence[dict[str, Any]]
    ) -> None:
        self._entity, self._order, self._rows = entity, order, rows
        self._columns: dict[str, list[Any]] | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        if self._columns is None:  # only the sort columns: a whole row may be ~25 columns
            self._columns = {k.column: column_of(self._rows, k.column) for k in self._order}
        row = {name: values[index] for name, values in self._columns.items()}
        return encode_cursor(self._entity, self._order, row)


def decode_cursor(entity: str, order: Sequence[SortKey], cursor: str, argument: str) -> list[Any]:
    """The sort values inside a cursor made by `encode_cursor` for this order; InputError otherwise."""
    refused = InputError(
        f"{argument}: {cursor[:40]!r} is not a cursor of this {entity} connection and orderBy;"
        " pass a startCursor, endCursor or edge cursor returned by the same query"
    )
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise refused
    try:
        name, signature, values = json.loads(
            base64.b64decode(cursor, altchars=b"-_", validate=True)
        )
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        raise refused from None
    if name != entity or signature != _signature(order) or not isinstance(values, list):
        raise refused
    if len(values) != len(order) or not all(
        _of_type(key, v) for key, v in zip(order, values, strict=True)
    ):
        raise refused
    return values


_PARSED = {"DECIMAL": Decimal, "TIMESTAMPTZ": datetime.fromisoformat, "DATE": date.fromisoformat}
_AS_JSON = {"VARCHAR": str, "DOUBLE": int | float, "BOOLEAN": bool}


def _of_type(key: SortKey, value: Any) -> bool:
    """Whether a cursor's sort value is of `key`'s type, written as `encode_cursor` writes it: a
    forged one might not cast, failing the query where the cursor should be refused."""
    if value is None:
        return True
    kind = key.sql_type.partition("(")[0]
    if kind == "BIGINT":
        return type(value) is int and -(2**63) <= value < 2**63
    if kind not in _PARSED:
        return isinstance(value, _AS_JSON[kind])
    try:
        parsed = _PARSED[kind](value) if isinstance(value, str) else None
    except (ValueError, ArithmeticError):
        return False
    if parsed is None or _plain(parsed) != value:  # Python reads forms DuckDB cannot cast
        return False
    if isinstance(parsed, Decimal):
        shape = decimal_shape(key.sql_type)
        return shape is not None and decimal_fits(parsed, *shape)
    return not isinstance(parsed, datetime) or parsed.tzinfo is not None


@dataclass(frozen=True)
class Window:
    """Which slice of the ordered rows a connection returns."""

    limit: int
    offset: int = 0
    after: list[Any] | None = None
    before: list[Any] | None = None
    backwards: bool = False


def window(
    entity: str,
    order: Sequence[SortKey],
    *,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    limit: int | None,
    offset: int | None,
) -> Window:
    """The slice the paging arguments ask for; InputError for combinations that make no sense."""
    if limit is not None or offset is not None:
        if any(a is not None for a in (first, after, last, before)):
            raise InputError("pass either limit/offset or first/after/last/before, not both")
        size = _size("limit", DEFAULT_PAGE_SIZE if limit is None else limit)
        if offset is not None and offset < 0:
            raise InputError(f"offset must be 0 or more, got {offset}")
        return Window(limit=size, offset=offset or 0)
    if first is not None and last is not None:
        raise InputError("pass first or last, not both")
    start = None if after is None else decode_cursor(entity, order, after, "after")
    end = None if before is None else decode_cursor(entity, order, before, "before")
    if last is not None:
        return Window(limit=_size("last", last), after=start, before=end, backwards=True)
    size = _size("first", DEFAULT_PAGE_SIZE if first is None else first)
    return Window(limit=size, after=start, before=end)


def _size(argument: str, value: int) -> int:
    if not 0 <= value <= MAX_PAGE_SIZE:
        raise InputError(f"{argument} must be between 0 and {MAX_PAGE_SIZE}, got {value}")
    return value


@strawberry.type(description="Where this page starts and ends, and whether rows lie beyond it.")
class PageInfo:
    has_next_page: bool = strawberry.field(
        description="True when rows follow this page; fetch them with after: endCursor."
    )
    has_previous_page: bool = strawberry.field(
        description="True when rows precede this page; fetch them with before: startCursor."
    )
    start_cursor: str | None = strawberry.field(
        description="Cursor of the first row of this page; null when the page is empty."
    )
    end_cursor: str | None = strawberry.field(
        description="Cursor of the last row of this page; null when the page is empty."
    )


@strawberry.type(description="One row of a page, with the cursor that points at it.")
class Edge(Generic[Node]):
    cursor: str = strawberry.field(
        description="Opaque position of this row; pass it as after or before."
    )
    node: Node = strawberry.field(description="The row.")
