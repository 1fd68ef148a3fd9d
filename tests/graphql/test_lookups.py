"""Compiled lookups and pages answer exactly what the executor answers, masked, and are audited."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from hubspoke_graphql.access import Access, load_keys, roles
from hubspoke_graphql.context import RequestContext
from hubspoke_graphql.lookups import Lookups
from hubspoke_graphql.schema import build_schema
from starlette.applications import Starlette

from hubspoke.stack import Stack

Query = Callable[..., dict[str, Any]]

WIDE = """
query Wide($id: ID!, $all: Boolean! = false) {
  customer(id: $id, includeDeleted: $all) {
    id name email createdAt createdBy updatedAt updatedBy version deleted
    sales { accountValue salesRep creditLimit updatedAt }
    support { supportTier lifetimeTickets updatedAt }
    billing { vatNumber paymentTerms updatedAt }
  }
}
"""
SHAPED = """
query Shaped($id: ID!, $other: ID!) {
  __typename
  first: customer(id: $id) { ...Who __typename s: sales { ... on CustomerSalesDomain { salesRep } } }
  second: customer(id: $other, includeDeleted: true) { id ... { email } }
}
fragment Who on Customer { name id billing { __typename paymentTerms } }
"""
PAGES = """
query Pages($min: Decimal!, $after: String) {
  customers(first: 7, after: $after, where: {sales: {accountValue: {gt: $min}}}) {
    __typename
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    nodes { id name email sales { accountValue salesRep } billing { vatNumber } }
    edges { cursor node { ...Who } }
  }
  back: customers(last: 3, orderBy: [{support: {lifetimeTickets: DESC}}], includeDeleted: true) {
    edges { __typename node { id deleted support { lifetimeTickets } } }
    pageInfo { startCursor hasPreviousPage }
  }
}
fragment Who on Customer { id updatedAt }
"""
NOT_PLAIN = [
    "query ($id: ID!) { customer(id: $id) { id @include(if: true) } }",
    "query ($id: ID!) { customer(id: $id) { id id } }",
    "query ($id: ID!) { customer(id: $id, asOfVersion: 0) { id } }",
    "{ __schema { queryType { name } } }",
    "query ($id: ID!) { customers(where: {id: {eq: $id}}) { totalCount nodes { id } } }",
    "query ($id: ID!) { customers(first: 5000, where: {id: {ne: $id}}) { nodes { id } } }",
]


@pytest.mark.parametrize("role", ["admin", "analyst", "sales", "billing"])
def test_compiled_answers_equal_the_executor_for_every_role(
    app: Starlette, stack: Stack, role: str, live_ids: list[str], deleted_ids: list[str]
) -> None:
    schema = build_schema(stack.catalog)
    lookups = Lookups(schema)
    keys = load_keys(stack.settings.keys_file, roles(stack.catalog))
    access = Access(role, keys.mask_secret)
    view = app.state.snapshot.current()
    cases = [
        (WIDE, {"id": i, "all": flag})
        for i in [*live_ids[:5], *deleted_ids, "nobody"]
        for flag in (False, True)
    ] + [
        (SHAPED, {"id": live_ids[1], "other": deleted_ids[0]}),
        (PAGES, {"min": "0"}),
        (PAGES, {"min": "100.5", "after": None}),
    ]
    for text, variables in cases:
        context = RequestContext(view, access, time_travel=None)  # type: ignore[arg-type]
        expected = asyncio.run(schema.execute(text, variables, context_value=context))
        assert expected.errors is None
        lookups.learn(text, None)
        plan = lookups.plan(text, None)
        assert plan is not None, text
        mine = RequestContext(view, access, time_travel=None)  # type: ignore[arg-type]
        answer = asyncio.run(lookups.answer(plan, variables, mine, None))
        assert answer is not None, text
        assert answer.data == expected.data
        assert list(_keys(answer.data)) == list(_keys(expected.data))  # the same order too
        assert sorted(answer.ids) == sorted(set(context.touched))  # the executor's order varies


def _keys(value: Any) -> Any:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield key
            yield from _keys(inner)


def test_what_is_not_plain_is_left_to_the_executor(
    app: Starlette, stack: Stack, live_ids: list[str]
) -> None:
    schema = build_schema(stack.catalog)
    lookups = Lookups(schema)
    context = RequestContext(
        app.state.snapshot.current(),
        Access("analyst", b""),
        time_travel=None,  # type: ignore[arg-type]
    )

    def answer(text: str, variables: dict[str, Any]) -> Any:
        lookups.learn(text, None)
        plan = lookups.plan(text, None)
        return plan and asyncio.run(lookups.answer(plan, variables, context, None))

    for text in NOT_PLAIN:
        assert answer(text, {"id": live_ids[0]}) is None, text
    for variables in ({}, {"id": None}, {"id": ["x"]}, {"id": "x" * 300}):
        assert answer(WIDE, variables) is None, variables
    defaulted = 'query ($id: ID = "x") { customer(id: $id) { id } }'
    assert answer(defaulted, {"id": None}) is None  # null for the non-null argument
    for variables in ({"min": "1", "after": "bogus"}, {"min": "x"}):
        assert answer(PAGES, variables) is None, variables
    # Filtering on pii the role may not read is refused by the executor, not answered.
    assert answer('{ customers(where: {name: {eq: "x"}}) { nodes { id } } }', {}) is None


def test_compiled_requests_are_answered_and_audited_like_the_first(
    query: Query, app: Starlette, live_ids: list[str]
) -> None:
    first = query(WIDE, role="analyst", id=live_ids[0])
    again = query(WIDE, role="analyst", id=live_ids[0])
    other = query(WIDE, role="analyst", id=live_ids[1])
    refused = query(WIDE, role="analyst", id="x" * 300)
    assert first == again
    assert first["data"]["customer"]["name"] is None  # pii masked for analysts
    assert other["data"]["customer"]["id"] == live_ids[1]
    assert refused["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    audit = app.state.audit
    records = [r for r in audit.pending() if r["operation"] == "Wide"]
    assert [r["customer_ids"] for r in records] == [[live_ids[0]], [live_ids[0]], [live_ids[1]], []]
    assert [r["outcome"] for r in records] == ["ok", "ok", "ok", "refused"]
    assert len({tuple(r["fields"]) for r in records}) == 1

    defaulted = 'query ($id: ID = "nobody") { customer(id: $id) { id } }'
    assert query(defaulted, role="analyst") == {"data": {"customer": None}}
    refused = query(defaulted, role="analyst", id=None)  # compiled now, left to the executor
    assert "must not be null" in refused["errors"][0]["message"]
