"""A customer read through the API equals the lake's identity and what every spoke holds."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

from hubspoke.stack import Stack

Query = Callable[..., dict[str, Any]]

CUSTOMER = """
query ($id: ID!, $all: Boolean! = false) {
  customer(id: $id, includeDeleted: $all) {
    id name email createdAt updatedAt createdBy version deleted
    sales { accountValue salesRep creditLimit updatedAt }
    support { supportTier lifetimeTickets updatedAt }
    billing { vatNumber paymentTerms updatedAt }
  }
}
"""
PAGE = """
query ($first: Int) {
  customers(first: $first) {
    nodes {
      id
      sales { accountValue salesRep creditLimit updatedAt }
      support { supportTier lifetimeTickets updatedAt }
      billing { vatNumber paymentTerms updatedAt }
    }
  }
}
"""


def _as_api(row: dict[str, Any] | None, fields: dict[str, str]) -> dict[str, Any] | None:
    """A contract row converted to what the API returns (camelCase; decimals and times as text)."""
    if row is None:
        return None
    out = {}
    for name, api_name in fields.items():
        value = row[name]
        if isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        out[api_name] = value
    return out


def test_identity_fields_equal_the_lake(
    query: Query, identities: dict, live_ids: list[str]
) -> None:
    row = identities[live_ids[0]]
    got = query(CUSTOMER, id=row["id"])["data"]["customer"]
    assert {k: got[k] for k in ("id", "name", "email", "createdBy", "version", "deleted")} == {
        "id": row["id"],
        "name": row["name"],
        "email": row["email"],
        "createdBy": row["created_by"],
        "version": row["version"],
        "deleted": False,
    }
    assert datetime.fromisoformat(got["createdAt"]) == row["created_at"]
    assert datetime.fromisoformat(got["updatedAt"]) == row["updated_at"]


def test_extensions_equal_what_the_spokes_hold(
    query: Query,
    stack: Stack,
    live_ids: list[str],
) -> None:
    nodes = query(PAGE, first=len(live_ids))["data"]["customers"]["nodes"]
    assert sorted(n["id"] for n in nodes) == live_ids
    shapes = {
        "sales": {
            "account_value": "accountValue",
            "sales_rep": "salesRep",
            "credit_limit": "creditLimit",
            "updated_at": "updatedAt",
        },
        "support": {
            "support_tier": "supportTier",
            "lifetime_tickets": "lifetimeTickets",
            "updated_at": "updatedAt",
        },
        "billing": {
            "vat_number": "vatNumber",
            "payment_terms": "paymentTerms",
            "updated_at": "updatedAt",
        },
    }
    for domain, fields in shapes.items():
        contract = stack.catalog.extension(domain)
        # Rows that break the contract (legacy codes) stay in the sync quarantine, not the lake.
        spoke = stack.spokes[domain]
        mapped = [spoke.domain_to_contract(r) for r in spoke.local_domain_rows(live_ids)]
        held = {r["customer_id"]: r for r in mapped if not contract.row_problems(r)}
        assert held, f"the seed should give {domain} rows"
        for node in nodes:
            assert node[domain] == _as_api(held.get(node["id"]), fields), (domain, node["id"])
    assert any(n["sales"] is None for n in nodes), "some customers have no sales row"


def test_unknown_id_is_null(query: Query) -> None:
    assert query(CUSTOMER, id="no-such-customer") == {"data": {"customer": None}}


def test_deleted_customer_is_null_unless_asked_for(query: Query, deleted_ids: list[str]) -> None:
    gone = deleted_ids[0]
    assert query(CUSTOMER, id=gone)["data"]["customer"] is None
    got = query(CUSTOMER, id=gone, all=True)["data"]["customer"]
    assert got["id"] == gone
    assert got["deleted"] is True
    # The spokes soft-deleted the domain rows and the sync propagated that.
    assert (got["sales"], got["support"], got["billing"]) == (None, None, None)


def test_too_long_id_is_refused(query: Query) -> None:
    body = query(CUSTOMER, id="x" * 300)
    assert body["data"] == {"customer": None}
    assert body["errors"][0]["message"] == "id must be at most 256 characters, got 300"
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT"}


def test_root_redirects_to_graphiql(http: Callable[..., httpx.Response]) -> None:
    moved = http("GET", "/")
    assert (moved.status_code, moved.headers["location"]) == (307, "/graphql")
    page = http("GET", "/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "GraphiQL" in page.text
