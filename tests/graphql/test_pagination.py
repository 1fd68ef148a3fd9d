"""Cursor pagination: every live customer exactly once, in id order, with clear input errors."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

Query = Callable[..., dict[str, Any]]

PAGE = """
query ($first: Int, $after: String, $all: Boolean! = false) {
  customers(first: $first, after: $after, includeDeleted: $all) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id deleted } }
    nodes { id }
  }
}
"""


def _walk(query: Query, first: int, include_deleted: bool = False) -> tuple[list[str], set[int]]:
    """Ids of all pages in order, and the totalCounts the pages reported."""
    seen: list[str] = []
    totals: set[int] = set()
    after = None
    while True:
        body = query(PAGE, first=first, after=after, all=include_deleted)
        page = body["data"]["customers"]
        totals.add(page["totalCount"])
        seen += [e["node"]["id"] for e in page["edges"]]
        assert [n["id"] for n in page["nodes"]] == [e["node"]["id"] for e in page["edges"]]
        if page["edges"]:
            assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        if not page["pageInfo"]["hasNextPage"]:
            return seen, totals
        assert len(page["edges"]) == first
        after = page["pageInfo"]["endCursor"]


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=st.integers(min_value=1, max_value=60))
def test_pages_visit_every_live_customer_once(
    query: Query,
    live_ids: list[str],
    deleted_ids: list[str],
    first: int,
) -> None:
    seen, totals = _walk(query, first)
    assert seen == live_ids  # each exactly once, in id order
    assert totals == {len(live_ids)}
    assert not set(seen) & set(deleted_ids)


def test_include_deleted_lists_everyone(query: Query, identities: dict) -> None:
    seen, totals = _walk(query, 17, include_deleted=True)
    assert seen == sorted(identities)
    assert totals == {len(identities)}


def test_default_and_empty_pages(query: Query, live_ids: list[str]) -> None:
    assert len(query("{ customers { nodes { id } } }")["data"]["customers"]["nodes"]) == min(
        100, len(live_ids)
    )
    empty = query(PAGE, first=0)["data"]["customers"]
    assert empty["edges"] == []
    assert empty["pageInfo"] == {"hasNextPage": True, "endCursor": None}
    assert empty["totalCount"] == len(live_ids)
    last = query(
        PAGE,
        first=1,
        after=query(PAGE, first=len(live_ids))["data"]["customers"]["pageInfo"]["endCursor"],
    )["data"]["customers"]
    assert last["edges"] == []
    assert last["pageInfo"] == {"hasNextPage": False, "endCursor": None}


def _cursor(text: bytes) -> str:
    return base64.urlsafe_b64encode(text).decode()


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"first": -1}, "first must be between 0 and 1000, got -1"),
        ({"first": 1001}, "first must be between 0 and 1000, got 1001"),
        ({"after": "not a cursor!"}, "is not a cursor of this customer connection"),
        ({"after": _cursor(b"product:abc")}, "is not a cursor of this customer connection"),
        ({"after": _cursor(b"customer:")}, "is not a cursor of this customer connection"),
        ({"after": _cursor(b"\xff\xfe")}, "is not a cursor of this customer connection"),
        ({"after": "A" * 600}, "is not a cursor of this customer connection"),
    ],
)
def test_bad_input_gets_a_clear_error(query: Query, variables: dict, message: str) -> None:
    body = query(PAGE, **variables)
    assert body["data"] is None
    [error] = body["errors"]
    assert message in error["message"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT"}
    assert error["path"] == ["customers"]


def test_wrongly_typed_first_is_a_validation_error(query: Query) -> None:
    body = query('{ customers(first: "ten") { totalCount } }')
    assert "Int cannot represent non-integer value" in body["errors"][0]["message"]


ORDERED = """
query ($first: Int, $after: String, $last: Int, $before: String) {
  customers(first: $first, after: $after, last: $last, before: $before,
            orderBy: [{sales: {accountValue: DESC}}]) {
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    nodes { id }
  }
}
"""


@pytest.mark.parametrize("size", [1, 7, 25])
def test_forward_and_backward_visit_every_customer_once(
    query: Query, live_ids: list[str], size: int
) -> None:
    forward: list[str] = []
    after = None
    while True:
        page = query(ORDERED, first=size, after=after)["data"]["customers"]
        forward += [n["id"] for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    backward: list[str] = []
    before = None
    while True:
        page = query(ORDERED, last=size, before=before)["data"]["customers"]
        backward = [n["id"] for n in page["nodes"]] + backward
        if not page["pageInfo"]["hasPreviousPage"]:
            break
        before = page["pageInfo"]["startCursor"]
    assert sorted(forward) == live_ids
    assert backward == forward


def test_limit_and_offset_visit_every_customer_once(query: Query, live_ids: list[str]) -> None:
    text = "query ($o: Int) { customers(limit: 9, offset: $o) { nodes { id } } }"
    seen: list[str] = []
    while batch := [n["id"] for n in query(text, o=len(seen))["data"]["customers"]["nodes"]]:
        seen += batch
    assert seen == live_ids


BY = """
query ($after: String, $all: Boolean!, $order: [CustomerOrderBy!]) {
  customers(first: 3, after: $after, includeDeleted: $all, orderBy: $order) {
    pageInfo { hasNextPage endCursor }
    nodes { id }
  }
}
"""
ORDERS = [
    {"createdAt": "DESC"},  # TIMESTAMPTZ
    {"version": "ASC"},  # BIGINT
    {"deleted": "DESC"},  # BOOLEAN
    {"email": "ASC"},  # VARCHAR
    {"deletedAt": "ASC"},  # nulls in the cursor
    {"sales": {"creditLimit": "DESC"}},  # DECIMAL
    {"support": {"lifetimeTickets": "ASC"}},  # an extension's BIGINT, nulls where it has no row
]


@pytest.mark.parametrize("order", ORDERS, ids=lambda o: str(o).replace(" ", ""))
def test_cursors_of_every_sort_type_page_through_everyone(
    query: Query, identities: dict, order: dict
) -> None:
    seen: list[str] = []
    after = None
    while True:
        page = query(BY, after=after, all=True, order=[order])["data"]["customers"]
        seen += [n["id"] for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert sorted(seen) == sorted(identities)


def _forged(cursor: str, value: Any) -> str:
    entity, signature, values = json.loads(base64.urlsafe_b64decode(cursor))
    text = json.dumps([entity, signature, [value, *values[1:]]])
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("order", "value"),
    [
        ({"sales": {"creditLimit": "DESC"}}, "abc"),
        ({"sales": {"creditLimit": "DESC"}}, "1e30"),  # beyond decimal(18,2)
        ({"sales": {"creditLimit": "DESC"}}, 12.5),
        ({"createdAt": "DESC"}, "yesterday"),
        ({"createdAt": "DESC"}, "2026-01-01T00:00:00"),  # no UTC offset
        ({"createdAt": "DESC"}, "2026-W01-1T00:00:00+00:00"),  # Python reads it, DuckDB not
        ({"createdAt": "DESC"}, "20260101T000000+0000"),
        ({"sales": {"creditLimit": "DESC"}}, " 5 "),
        ({"version": "ASC"}, 2**70),
        ({"version": "ASC"}, "3"),
        ({"deleted": "DESC"}, 1),
        ({"email": "ASC"}, 5),
    ],
)
def test_a_cursor_with_a_forged_sort_value_is_refused(
    query: Query, order: dict, value: Any
) -> None:
    first = query(BY, after=None, all=False, order=[order])["data"]["customers"]
    forged = _forged(first["pageInfo"]["endCursor"], value)
    body = query(BY, after=forged, all=False, order=[order])
    assert "is not a cursor of this customer connection" in body["errors"][0]["message"], body
    again = query(BY, after=first["pageInfo"]["endCursor"], all=False, order=[order])
    assert "errors" not in again  # and the API answers on
