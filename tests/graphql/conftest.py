"""Fixtures of the GraphQL tests: a seeded lake, the real ASGI app over it, and a query helper."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hubspoke_graphql.access import create_keys_file, roles
from hubspoke_graphql.app import create_app
from starlette.applications import Starlette

from hubspoke.config import Settings
from hubspoke.simulate import Simulator
from hubspoke.stack import Stack

Query = Callable[..., dict[str, Any]]
Http = Callable[..., httpx.Response]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """60 simulated customers (some deleted), propagated and synced into the lake."""
    with Stack.create(Settings(home=tmp_path_factory.mktemp("home"))) as stack:
        Simulator(stack, seed=7).seed(60)
        stack.sync()
        yield stack


@pytest.fixture(scope="module")
def identities(stack: Stack) -> dict[str, dict[str, Any]]:
    """Every identity row of the lake, live and deleted, by id."""
    return {r["id"]: r for r in stack.lake.table("customer_identity").read().to_pylist()}


@pytest.fixture(scope="module")
def live_ids(identities: dict[str, dict[str, Any]]) -> list[str]:
    """Ids of the customers that are not deleted, sorted."""
    return sorted(i for i, r in identities.items() if not r["deleted"])


@pytest.fixture(scope="module")
def deleted_ids(identities: dict[str, dict[str, Any]]) -> list[str]:
    """Ids of the deleted customers (the seed deletes at least one)."""
    ids = sorted(i for i, r in identities.items() if r["deleted"])
    assert ids, "the seed should have deleted a customer"
    return ids


@pytest.fixture(scope="module")
def api_keys(stack: Stack) -> dict[str, str]:
    """A key per role, in a keys file of the stack's home."""
    return create_keys_file(stack.settings.keys_file, roles(stack.catalog))


@pytest.fixture
def app(stack: Stack, api_keys: dict[str, str]) -> Iterator[Starlette]:
    """A fresh API over the seeded lake (its snapshot loads on the first request)."""
    app = create_app(stack.settings)
    yield app
    app.state.read_threads.shutdown(wait=False)  # what the lifespan's end does


@pytest.fixture
def queries(app: Starlette) -> list[str]:
    """The SQL statements the app's snapshot runs, in order."""
    executed: list[str] = []
    app.state.snapshot.query_hooks.append(lambda sql, params: executed.append(sql))
    return executed


@pytest.fixture
def http(app: Starlette, api_keys: dict[str, str]) -> Http:
    """Send one HTTP request to the ASGI app, in process, through httpx."""

    def send(method: str, url: str, role: str | None = "admin", **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app)
            headers = {"Authorization": f"Bearer {api_keys[role]}"} if role else {}
            headers |= kwargs.pop("headers", {})
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.request(method, url, headers=headers, **kwargs)

        return asyncio.run(go())

    return send


@pytest.fixture
def query(http: Http) -> Query:
    """POST a query to /graphql; returns the decoded JSON body (data and errors)."""

    def run(text: str, role: str = "admin", **variables: Any) -> dict[str, Any]:
        response = http("POST", "/graphql", role=role, json={"query": text, "variables": variables})
        assert response.status_code in (200, 400), response.text
        return response.json()

    return run
