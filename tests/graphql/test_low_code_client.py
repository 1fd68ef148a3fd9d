"""What a low-code tool does: introspect the schema, then page through everything with cursors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import build_client_schema, get_introspection_query

Query = Callable[..., dict[str, Any]]


def test_introspect_then_page_through_everything(query: Query, live_ids: list[str]) -> None:
    introspection = query(get_introspection_query(descriptions=True), role="analyst")
    assert "errors" not in introspection
    schema = build_client_schema(introspection["data"])
    customers = schema.query_type.fields["customers"]
    assert {"where", "orderBy", "first", "after", "last", "before", "limit", "offset"} <= set(
        customers.args
    )
    connection = schema.get_type("CustomerConnection")
    assert {"edges", "nodes", "pageInfo", "totalCount", "aggregate"} <= set(connection.fields)
    # The tool builds its query from what it found: every scalar field of Customer.
    customer = schema.get_type("Customer")
    scalars = [n for n, f in customer.fields.items() if not hasattr(_named(f.type), "fields")]
    text = (
        "query Sync($after: String) { customers(first: 16, after: $after) {"
        f" totalCount pageInfo {{ hasNextPage endCursor }} edges {{ node {{ {' '.join(scalars)} }} }} }} }}"
    )
    seen: list[str] = []
    after = None
    while True:
        page = query(text, role="analyst", after=after)["data"]["customers"]
        seen += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == live_ids
    assert page["totalCount"] == len(live_ids)


def _named(kind: Any) -> Any:
    while hasattr(kind, "of_type"):
        kind = kind.of_type
    return kind
