"""asOf and asOfVersion answer what the lake held then (Delta time travel)."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from deltalake import write_deltalake
from hubspoke_graphql.access import key_of_role
from hubspoke_graphql.app import create_app

from hubspoke.config import Settings
from hubspoke.erasure import ErasureRequest, erase
from hubspoke.simulate import Simulator
from hubspoke.stack import Stack


def live(stack: Stack) -> int:
    """How many customers the lake holds now, deleted ones left out."""
    rows = stack.lake.table("customer_identity").read(columns=["deleted"])
    return sum(not d for d in rows["deleted"].to_pylist())


COUNT = """query ($v: Int, $at: DateTime) {
  customers(asOfVersion: $v, asOf: $at) { totalCount nodes { id name } } }"""
SALES = """query ($v: Int, $at: DateTime) {
  customers(asOfVersion: $v, asOf: $at) { nodes { id sales { accountValue } } } }"""

Post = Callable[..., dict[str, Any]]


def poster(stack: Stack) -> Post:
    """POST a query with variables to a fresh API over the stack's lake, as the admin."""
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

    return post


def refusal(answer: dict[str, Any]) -> str:
    """The message of an answer that must be a BAD_USER_INPUT refusal."""
    assert answer["data"] is None, answer
    (error,) = answer["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    return str(error["message"])


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
        post = poster(stack)

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


def test_as_of_before_the_table_began_is_refused_not_answered_with_its_first_version(
    tmp_path: Path,
) -> None:
    with Stack.create(Settings(home=tmp_path)) as stack:
        Simulator(stack, seed=5).seed(3)
        post = poster(stack)
        began = stack.lake.table("customer_identity").commit_times().at(0)
        before = (began - timedelta(days=365)).isoformat()
        assert "is before customer_identity began" in refusal(post(COUNT, at=before))
        assert post(COUNT, at=began.isoformat())["data"]["customers"]["totalCount"] == 0
        later = post(COUNT, at=(datetime.now(UTC) + timedelta(days=1)).isoformat())
        assert later["data"]["customers"]["totalCount"] == live(stack) > 0  # as it stands


def test_as_of_a_forgotten_history_is_refused_not_answered_with_the_oldest_state_kept(
    tmp_path: Path,
) -> None:
    with Stack.create(Settings(home=tmp_path)) as stack:
        Simulator(stack, seed=5).seed(4)
        table = stack.lake.table("customer_identity")
        old_version, old_time = table.version(), datetime.now(UTC)
        time.sleep(0.01)
        Simulator(stack, seed=6).seed(2)
        table.forget_history()  # what an erasure does to every table with a rule
        oldest = table.commit_times().oldest
        post = poster(stack)

        message = refusal(post(COUNT, at=old_time.isoformat()))
        assert "keeps no state as of" in message and "was forgotten" in message
        message = refusal(post(COUNT, v=old_version))
        assert f"must be between {oldest} and" in message and "forgotten" in message
        now = post(COUNT, v=oldest)["data"]["customers"]["totalCount"]
        assert now == post(COUNT)["data"]["customers"]["totalCount"] == live(stack) > 0


def test_an_extension_that_began_after_the_asked_state_is_empty_in_it(tmp_path: Path) -> None:
    with Stack.create(Settings(home=tmp_path)) as stack:
        Simulator(stack, seed=5).seed(5)
        stack.sync()
        identity, sales = (
            stack.lake.table(n) for n in ("customer_identity", "customer_sales_domain")
        )
        version = identity.version()
        rows = sales.read()
        assert rows.num_rows > 0
        time.sleep(0.01)
        # The sales table begins anew after that version, its first commit holding rows.
        shutil.rmtree(sales.path)
        write_deltalake(str(sales.path), rows)
        assert sales.version() == 0
        post = poster(stack)

        then = post(SALES, v=version)["data"]["customers"]["nodes"]
        assert len(then) == live(stack) > 0 and all(n["sales"] is None for n in then)
        now = post(SALES)["data"]["customers"]["nodes"]
        assert sum(n["sales"] is not None for n in now) == rows.num_rows


def test_as_of_answers_after_an_erasure_from_the_state_it_left(tmp_path: Path) -> None:
    with Stack.create(Settings(home=tmp_path)) as stack:
        Simulator(stack, seed=5).seed(6)
        stack.sync()
        person = next(
            r["id"]
            for r in stack.lake.table("customer_identity").read().to_pylist()
            if not r["deleted"]
        )
        erase(stack, ErasureRequest(person, "ticket DPO-1"))
        post = poster(stack)
        version = stack.lake.table("customer_identity").version()
        now = post(SALES)["data"]["customers"]["nodes"]
        assert person not in {n["id"] for n in now} and len(now) == live(stack)
        # The identity's oldest kept state joins extensions whose kept history starts before it.
        assert post(SALES, v=version)["data"]["customers"]["nodes"] == now
        assert post(SALES, at=datetime.now(UTC).isoformat())["data"]["customers"]["nodes"] == now
