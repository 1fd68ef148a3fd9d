"""A page or a batch of lookups is one query on the joined entity table; reads never block the loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import httpx
import pytest
from hubspoke_graphql.app import create_app
from hubspoke_graphql.snapshot import View
from starlette.applications import Starlette

from hubspoke.stack import Stack

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


@pytest.mark.parametrize("threads", [1, 3, 6])
def test_slow_reads_run_on_the_read_threads_and_do_not_block_the_event_loop(
    stack: Stack,
    api_keys: dict[str, str],
    live_ids: list[str],
    monkeypatch: pytest.MonkeyPatch,
    threads: int,
) -> None:
    app = create_app(replace(stack.settings, api_read_threads=threads))
    delay, requests = 0.3, 6
    ran_on: set[str] = set()
    holding = View._cursor

    @contextmanager
    def slow(view: View, sql: str, params: Any) -> Iterator[Any]:
        with holding(view, sql, params) as cursor:  # slow while it holds one of the cursors
            ran_on.add(threading.current_thread().name)
            time.sleep(delay)
            yield cursor

    text = "query ($n: Int) { customers(first: $n) { nodes { id } } }"

    def page(n: int) -> dict[str, Any]:  # a page size per request: no answer is kept for it
        return {"query": text, "variables": {"n": n}}

    lookup = {"query": f'{{ customer(id: "{live_ids[0]}") {{ id }} }}'}

    async def run() -> tuple[float, float]:
        transport = httpx.ASGITransport(app)
        headers = {"X-API-Key": api_keys["analyst"]}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=headers
        ) as client:
            await client.post("/graphql", json=page(requests + 1))
            monkeypatch.setattr(View, "_cursor", slow)
            started = time.monotonic()
            slow_pages = [
                asyncio.ensure_future(client.post("/graphql", json=page(n + 1)))
                for n in range(requests)
            ]
            await asyncio.sleep(delay / 3)
            asked = time.monotonic()
            answered = await client.post("/graphql", json=lookup)  # from memory: no read
            waited = time.monotonic() - asked
            answers = [answered, *await asyncio.gather(*slow_pages)]
            assert all(a.status_code == 200 and "errors" not in a.json() for a in answers)
            return time.monotonic() - started, waited

    try:
        elapsed, waited = asyncio.run(run())
    finally:
        app.state.read_threads.shutdown(wait=False)
    assert waited < delay / 2  # the loop answered while every read thread slept
    # The reads queue for the threads, `threads` at a time: a view has a cursor for each.
    rounds = -(-requests // threads)
    assert rounds * delay <= elapsed < (rounds + 1) * delay
    assert len(ran_on) == threads and all(n.startswith("lake-read") for n in ran_on)
