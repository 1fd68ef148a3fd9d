"""API keys, roles, masking of personal data per contract, and introspection per role."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from hubspoke_graphql.access import Access, load_keys
from hubspoke_graphql.app import create_app
from hubspoke_graphql.limits import REQUEST_TIMEOUT_S

from hubspoke.config import ConfigError
from hubspoke.stack import Stack

Query = Callable[..., dict[str, Any]]
Http = Callable[..., httpx.Response]
ONE = """query ($id: ID!) { customer(id: $id) { id name email
  sales { accountValue } billing { vatNumber paymentTerms } } }"""


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-key-wrong-key-wrong"}, {"X-API-Key": "nope"}],
    ids=["none", "wrong-bearer", "wrong-x-api-key"],
)
def test_requests_without_a_valid_key_get_a_graphql_shaped_401(http: Http, headers: dict) -> None:
    answer = http("POST", "/graphql", role=None, headers=headers, json={"query": "{ __typename }"})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    body = answer.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_both_header_forms_are_accepted(http: Http, api_keys: dict[str, str]) -> None:
    for headers in (
        {"Authorization": f"Bearer {api_keys['sales']}"},
        {"X-API-Key": api_keys["sales"]},
    ):
        answer = http(
            "POST", "/graphql", role=None, headers=headers, json={"query": "{ __typename }"}
        )
        assert answer.status_code == 200, answer.text


def _customer_with_vat(identities: dict[str, Any], stack: Stack) -> str:
    billing = stack.lake.table("customer_billing_domain").read().to_pylist()
    return next(
        r["customer_id"]
        for r in billing
        if r["vat_number"]
        and r["customer_id"] in identities
        and not identities[r["customer_id"]]["deleted"]
    )


def test_masking_follows_the_contracts_per_role(
    query: Query, identities: dict[str, Any], stack: Stack
) -> None:
    cid = _customer_with_vat(identities, stack)
    person = identities[cid]
    seen = {
        role: query(ONE, role=role, id=cid)["data"]["customer"]
        for role in ("admin", "analyst", "sales", "billing")
    }
    assert seen["admin"]["name"] == person["name"]
    assert seen["admin"]["email"] == person["email"]
    assert seen["admin"]["billing"]["vatNumber"]
    for role in ("analyst", "sales", "billing"):
        assert seen[role]["name"] is None  # mask: null
        assert seen[role]["email"].startswith("hash:")  # mask: hash, stable
        assert seen[role]["email"] == seen["analyst"]["email"]
        assert person["email"] not in str(seen[role])
        assert seen[role]["billing"]["paymentTerms"] == seen["admin"]["billing"]["paymentTerms"]
    # a domain role reads its own extension fully, the others per contract
    assert seen["billing"]["billing"]["vatNumber"] == seen["admin"]["billing"]["vatNumber"]
    assert seen["sales"]["billing"]["vatNumber"] is None
    assert seen["analyst"]["billing"]["vatNumber"] is None
    assert seen["analyst"]["sales"] == seen["admin"]["sales"]


def test_hashes_differ_between_people(query: Query, live_ids: list[str]) -> None:
    text = "{ customers(first: 20) { nodes { email } } }"
    emails = [n["email"] for n in query(text, role="analyst")["data"]["customers"]["nodes"]]
    assert len(set(emails)) == len(emails)


def test_mask_hashes_are_keyed_by_the_secret_of_any_length(tmp_path: Path) -> None:
    hashes = {}
    for secret in ("s3cret-s3cret-s3", "x" * 16, "x" * 500):
        path = tmp_path / f"keys-{len(secret)}.json"
        path.write_text(json.dumps({"keys": {"k" * 24: "analyst"}, "mask_secret": secret}))
        access = Access("analyst", load_keys(path, ["analyst"]).mask_secret)
        hashes[secret] = access.mask("hash", "ada@example.com")
        assert access.mask("hash", "ada@example.com") == hashes[secret]  # stable
        assert access.mask_all("hash", ["ada@example.com", None]) == [hashes[secret], None]
        assert access.mask_all("null", ["ada@example.com"]) == [None]
    assert len(set(hashes.values())) == 3
    assert all(re.fullmatch("hash:[0-9a-f]{32}", h) for h in hashes.values())
    for weak in ({"mask_secret": "short"}, {}):  # a guessable key would unmask by dictionary
        path = tmp_path / "weak.json"
        path.write_text(json.dumps({"keys": {"k" * 24: "analyst"}, **weak}))
        with pytest.raises(ConfigError, match="mask_secret needs at least 16 characters"):
            load_keys(path, ["analyst"])


def test_filtering_or_sorting_on_masked_fields_is_refused(query: Query) -> None:
    for arguments in ('where: {name: {contains: "a"}}', "orderBy: [{email: ASC}]"):
        body = query(f"{{ customers({arguments}) {{ nodes {{ id }} }} }}", role="analyst")
        assert "personal data this key's role may not read" in body["errors"][0]["message"]
    assert "errors" not in query('{ customers(where: {name: {contains: "a"}}) { nodes { id } } }')


def test_introspection_and_graphiql_follow_the_roles(
    stack: Stack, api_keys: dict[str, str]
) -> None:
    settings = dataclasses.replace(stack.settings, introspection_roles=("admin",))
    app = create_app(settings)

    async def post(role: str, text: str) -> dict[str, Any]:
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answer = await client.post(
                "/graphql", json={"query": text}, headers={"X-API-Key": api_keys[role]}
            )
            return answer.json()

    text = "{ __schema { queryType { name } } }"
    assert asyncio.run(post("admin", text))["data"]["__schema"]["queryType"]["name"] == "Query"
    refused = asyncio.run(post("analyst", text))
    assert "introspection is switched off for role 'analyst'" in refused["errors"][0]["message"]

    closed = create_app(dataclasses.replace(stack.settings, introspection_roles=()))

    async def page() -> httpx.Response:
        transport = httpx.ASGITransport(closed)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/graphql", headers={"accept": "text/html"})

    assert asyncio.run(page()).status_code == 401  # no GraphiQL where nobody may introspect


def test_a_slow_request_is_stopped_at_the_time_limit(
    query: Query, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hubspoke_graphql.app as app_module

    monkeypatch.setattr(app_module, "REQUEST_TIMEOUT_S", 0.2)
    app.state.snapshot.current()
    app.state.snapshot.query_hooks.append(lambda sql, params: __import__("time").sleep(0.5))
    body = query("{ customers(first: 1) { nodes { id } } }")
    assert body["errors"][0]["extensions"]["code"] == "TIMEOUT"
    assert "longer than 0.2 s" in body["errors"][0]["message"]
    assert REQUEST_TIMEOUT_S == 10


def test_a_compiled_page_past_the_time_limit_runs_once_and_is_audited(
    query: Query, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hubspoke_graphql.app as app_module

    monkeypatch.setattr(app_module, "REQUEST_TIMEOUT_S", 0.3)
    compiled = "query Slow($n: Int) { customers(first: $n) { nodes { id } } }"
    executed = "query Slow($n: Int) { customers(first: $n) @include(if: true) { nodes { id } } }"
    assert "errors" not in query(compiled, n=1)  # answered by the executor, then compiled
    ran: list[str] = []
    app.state.snapshot.query_hooks.append(lambda sql, params: (ran.append(sql), time.sleep(1)))
    audit = app.state.audit
    seen = len(audit.pending())

    started = time.monotonic()
    body = query(compiled, n=2)  # a page not asked before
    assert time.monotonic() - started < 0.9  # stopped once, not once more by the executor
    assert len(ran) == 1
    assert body == query(executed, n=2)  # the executor's answer to a timeout, word for word
    assert body["errors"][0]["extensions"]["code"] == "TIMEOUT"
    records = audit.pending()[seen:]
    assert [(r["operation"], r["outcome"], r["customer_ids"]) for r in records] == [
        ("Slow", "error", []),
        ("Slow", "error", []),
    ]
    assert records[0]["fields"] == ["Customer.id", "CustomerConnection.nodes", "Query.customers"]


@pytest.mark.parametrize(
    "text",
    [
        "query Endless($n: Int) { customers(first: $n) { nodes { id } } }",
        "query Endless($n: Int) { customers(first: $n) @include(if: true) { nodes { id } } }",
    ],
    ids=["compiled", "executed"],
)
def test_a_query_past_the_time_limit_is_interrupted_and_frees_its_read_thread(
    query: Query, app: Any, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    import hubspoke_graphql.app as app_module
    from hubspoke_graphql import reads

    assert app.state.read_threads._max_workers == 1
    monkeypatch.setattr(app_module, "REQUEST_TIMEOUT_S", 0.3)
    assert "errors" not in query(text, n=1)  # compiled from now on where it can be
    page = reads.page
    monkeypatch.setattr(reads, "page", _after_endless_work(page))
    started = time.monotonic()
    assert query(text, n=2)["errors"][0]["extensions"]["code"] == "TIMEOUT"
    monkeypatch.setattr(reads, "page", page)
    # Had the query run on, the next read would wait behind it and time out as well.
    assert len(query(text, n=3)["data"]["customers"]["nodes"]) == 3
    assert time.monotonic() - started < 3


def test_a_lookup_past_the_time_limit_is_interrupted_and_frees_its_read_thread(
    query: Query, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hubspoke_graphql.app as app_module
    from hubspoke_graphql import reads

    monkeypatch.setattr(app_module, "REQUEST_TIMEOUT_S", 0.3)
    first = query("{ customers(first: 1) { nodes { id } } }")["data"]["customers"]["nodes"][0]
    # Without the view's row index (a table it does not hold in memory) an executed lookup
    # goes through the request's DataLoader, whose batch runs as a task of its own, outside
    # the operation that the time limit cancels.
    monkeypatch.delitem(app.state.snapshot.current().indexes, "customer_identity")
    text = "query Who($id: ID!) { customer(id: $id) @include(if: true) { id } }"
    by_keys = reads.by_keys
    monkeypatch.setattr(reads, "by_keys", _after_endless_work(by_keys))
    started = time.monotonic()
    assert query(text, id=first["id"])["errors"][0]["extensions"]["code"] == "TIMEOUT"
    monkeypatch.setattr(reads, "by_keys", by_keys)
    # Had the loader's query run on, the next read would wait behind it and time out as well.
    assert query(text, id=first["id"])["data"]["customer"] == first
    assert time.monotonic() - started < 3


def _after_endless_work(read: Callable[..., Any]) -> Callable[..., Any]:
    """`read` of a view, after half a minute of DuckDB work on its cursor unless interrupted
    (bounded: a broken interruption fails the test instead of hanging it)."""

    def endless(view: Any, *args: Any, **kwargs: Any) -> Any:
        view.fetch_tuples("SELECT count(*) FROM range(10000000000) AS r WHERE r.range % 7 = 3")
        return read(view, *args, **kwargs)

    return endless


def test_a_compiled_page_asked_again_is_the_executors_kept_answer(query: Query, app: Any) -> None:
    text = "query Again($n: Int) { customers(first: $n) { nodes { id name } } }"
    first = query(text, n=3)  # the executor answers and keeps it; the text is compiled
    ran: list[str] = []
    app.state.snapshot.query_hooks.append(lambda sql, params: ran.append(sql))
    audit = app.state.audit
    seen = len(audit.pending())
    assert query(text, n=3) == first
    assert ran == []  # the same view holds the same answer: no query
    again = audit.pending()[seen:]
    assert [(r["operation"], r["customer_count"]) for r in again] == [("Again", 3)]
