"""A page or a batch of lookups is one query on the joined entity table; reads never block the loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

Query = Callable[..., dict[str, Any]]

PAGE = """
query ($first: Int) {
  customers(first: $first) {
    totalCount
    nodes {
      id name
      sales { accountValue salesRep creditLimit }
      support { supportTier lifetimeTickets }
      billing { vatNumber paymentTerms }
    }
  }
}
"""


@pytest.mark.parametrize("first", [1, 10, 50])
def test_a_page_costs_a_constant_number_of_queries(
    query: Query,
    queries: list[str],
    first: int,
) -> None:
    nodes = query(PAGE, first=first)["data"]["customers"]["nodes"]
    assert len(nodes) == first
    # the page with every extension, and its count, whatever the page size
    assert len(queries) == 2, queries
    assert all('FROM "customer_identity__entity"' in sql for sql in queries)


def test_lookups_by_id_are_answered_from_memory(
    query: Query,
    queries: list[str],
    live_ids: list[str],
) -> None:
    fields = " ".join(
        f'c{i}: customer(id: "{cid}") {{ sales {{ salesRep }} billing {{ paymentTerms }} }}'
        for i, cid in enumerate(live_ids[:10])
    )
    data = query(f"{{ {fields} }}")["data"]
    assert len(data) == 10
    assert queries == []  # the snapshot's row index answers, without DuckDB


def test_values_are_bound_never_formatted(query: Query, app: Starlette) -> None:
    seen: list[tuple[str, Any]] = []
    app.state.snapshot.query_hooks.append(lambda sql, params: seen.append((sql, params)))
    hostile = "x' OR '1'='1"
    text = "query ($v: String!) { customers(where: {name: {eq: $v}}) { nodes { id } } }"
    assert query(text, v=hostile) == {"data": {"customers": {"nodes": []}}}
    assert all(hostile not in sql for sql, _ in seen)
    assert [sql_params[0] for _, sql_params in seen] == [hostile]


def test_slow_reads_do_not_block_the_event_loop(app: Starlette, api_keys: dict[str, str]) -> None:
    delay, requests = 0.3, 6
    app.state.snapshot.query_hooks.append(lambda sql, params: time.sleep(delay))

    async def run() -> float:
        transport = httpx.ASGITransport(app)
        headers = {"X-API-Key": api_keys["analyst"]}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=headers
        ) as client:
            await client.post(
                "/graphql", json={"query": "{ customers(first: 1) { nodes { id } } }"}
            )
            started = time.monotonic()
            answers = await asyncio.gather(
                *(
                    client.post(
                        "/graphql", json={"query": "{ customers(first: 1) { nodes { id } } }"}
                    )
                    for _ in range(requests)
                )
            )
            assert all(a.status_code == 200 and "errors" not in a.json() for a in answers)
            return time.monotonic() - started

    # Serialised, six requests of one slow query each would take 1.8 s.
    assert asyncio.run(run()) < delay * requests / 2
