"""asOf and asOfVersion answer what the lake held then (Delta time travel)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from hubspoke_graphql.access import key_of_role
from hubspoke_graphql.app import create_app

from hubspoke.config import Settings
from hubspoke.simulate import Simulator
from hubspoke.stack import Stack

COUNT = """query ($v: Int, $at: DateTime) {
  customers(asOfVersion: $v, asOf: $at) { totalCount nodes { id name } } }"""


def test_as_of_answers_the_table_at_that_version(tmp_path: Path) -> None:
    with Stack.create(Settings(home=tmp_path)) as stack:
        Simulator(stack, seed=5).seed(6)
        table = stack.lake.table("customer_identity")
        version, at = table.version(), datetime.now(UTC)
        then = {r["id"]: r for r in table.read().to_pylist() if not r["deleted"]}
        stack.spokes["sales"].create_customer(
            "Grace Hopper",
            "grace@example.com",
            {"account_value": "1.00", "owner_rep": None, "credit_limit": "0.00"},
        )
        stack.propagate()
        assert table.version() > version
        app = create_app(stack.settings)
        key = key_of_role(stack.settings.keys_file, "admin")

        def post(text: str, **variables: Any) -> dict[str, Any]:
            async def go() -> httpx.Response:
                transport = httpx.ASGITransport(app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                    return await client.post(
                        "/graphql",
                        json={"query": text, "variables": variables},
                        headers={"X-API-Key": key},
                    )

            return asyncio.run(go()).json()

        now = post(COUNT)["data"]["customers"]
        past = post(COUNT, v=version)["data"]["customers"]
        past_by_time = post(COUNT, at=at.isoformat())["data"]["customers"]
        assert now["totalCount"] == len(then) + 1
        assert past == past_by_time
        assert {n["id"]: n["name"] for n in past["nodes"]} == {
            i: r["name"] for i, r in then.items()
        }
        grace = next(n["id"] for n in now["nodes"] if n["name"] == "Grace Hopper")
        one = "query ($id: ID!, $v: Int) { customer(id: $id, asOfVersion: $v) { name } }"
        assert post(one, id=grace, v=version)["data"]["customer"] is None
        assert post(one, id=grace)["data"]["customer"]["name"] == "Grace Hopper"

        refused = post(COUNT, v=10_000)
        assert "asOfVersion must be between 0 and" in refused["errors"][0]["message"]
        naive = post(COUNT, at="2026-01-01T00:00:00")
        assert "UTC offset" in naive["errors"][0]["message"]
