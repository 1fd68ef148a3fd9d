"""Cursor connections: opaque cursors, the bounds on `first`, and the generic page types."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import strawberry

from hubspoke_graphql.limits import MAX_CURSOR_LENGTH, MAX_PAGE_SIZE, InputError

Node = TypeVar("Node")


def encode_cursor(entity: str, key: str) -> str:
    """The opaque cursor of the row with `key`."""
    return base64.urlsafe_b64encode(f"{entity}:{key}".encode()).decode()


def decode_cursor(entity: str, cursor: str) -> str:
    """The key inside a cursor made by `encode_cursor` for `entity`; InputError otherwise."""
    refused = InputError(
        f"after: {cursor[:40]!r} is not a cursor of this {entity} connection;"
        " pass an endCursor or edge cursor returned by it"
    )
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise refused
    try:
        text = base64.b64decode(cursor, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise refused from None
    prefix, sep, key = text.partition(":")
    if prefix != entity or not sep or not key:
        raise refused
    return key


def check_first(first: int) -> int:
    """`first` when it is a page size the API serves; InputError otherwise."""
    if not 0 <= first <= MAX_PAGE_SIZE:
        raise InputError(f"first must be between 0 and {MAX_PAGE_SIZE}, got {first}")
    return first


@strawberry.type(description="Where this page ends and whether another one follows.")
class PageInfo:
    has_next_page: bool = strawberry.field(
        description="True when rows follow this page; fetch them with after: endCursor."
    )
    end_cursor: str | None = strawberry.field(
        description="Cursor of the last row of this page; null when the page is empty."
    )


@strawberry.type(description="One row of a page, with the cursor that points at it.")
class Edge(Generic[Node]):
    cursor: str = strawberry.field(description="Opaque position of this row; pass it as after.")
    node: Node = strawberry.field(description="The row.")


@strawberry.type(description="A page of rows in key order.")
class Connection(Generic[Node]):
    edges: list[Edge[Node]] = strawberry.field(description="The rows of this page, with cursors.")
    page_info: PageInfo = strawberry.field(description="Where this page ends.")
    counter: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="The rows of this page, without cursors.")
    def nodes(self) -> list[Node]:
        return [edge.node for edge in self.edges]

    @strawberry.field(description="How many rows all pages hold together (one extra query).")
    async def total_count(self) -> int:
        return await self.counter()
