"""Abuse is refused before execution, and unexpected failures never leak internals."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hubspoke_graphql import reads
from hubspoke_graphql.audit import AUDIT_TABLE
from hubspoke_graphql.limits import (
    MAX_ALIASES,
    MAX_FILTER_TERMS,
    MAX_REQUEST_BYTES,
    MAX_TOKENS,
    MAX_VARIABLE_VALUES,
)
from starlette.applications import Starlette

from hubspoke.stack import Stack
from tests.graphql.conftest import Http

Query = Callable[..., dict[str, Any]]
COUNT = "query ($w: CustomerWhere) { customers(where: $w) { totalCount } }"


def test_too_many_aliases_are_refused(query: Query) -> None:
    text = (
        "{ "
        + " ".join(f"a{i}: customers(first: 1) {{ totalCount }}" for i in range(MAX_ALIASES + 1))
        + " }"
    )
    body = query(text)
    assert "data" not in body or body["data"] is None
    assert "aliases found" in body["errors"][0]["message"]


def test_too_many_tokens_are_refused(query: Query) -> None:
    text = "{ customers { nodes { " + " ".join(["id"] * MAX_TOKENS) + " } } }"
    body = query(text)
    assert f"more than {MAX_TOKENS} tokens" in body["errors"][0]["message"]


def test_unexpected_errors_are_masked(query: Query, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk /secret/lake is gone")

    monkeypatch.setattr(reads, "page", broken)
    body = query("{ customers(first: 1) { totalCount } }")
    assert body["errors"][0]["message"] == "Unexpected error."
    assert "secret" not in str(body)


def test_validation_errors_are_not_masked(query: Query) -> None:
    body = query("{ customers { nope } }")
    assert "Cannot query field 'nope' on type 'CustomerConnection'" in body["errors"][0]["message"]


def test_depth_beyond_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from hubspoke_graphql import limits
    from hubspoke_graphql.schema import build_schema

    # The deepest query the schema allows today has depth 5; a lower limit shows the refusal.
    monkeypatch.setattr(limits, "MAX_QUERY_DEPTH", 3)
    schema = build_schema()
    query = "{ customers { edges { node { sales { salesRep } } } } }"
    result = asyncio.run(schema.execute(query))
    assert result.errors is not None
    assert "exceeds maximum operation depth of 3" in result.errors[0].message


def test_page_size_and_in_lists_are_bounded(query: Query) -> None:
    from hubspoke_graphql.limits import MAX_FILTER_VALUES, MAX_PAGE_SIZE

    body = query(f"{{ customers(first: {MAX_PAGE_SIZE + 1}) {{ nodes {{ id }} }} }}")
    assert f"first must be between 0 and {MAX_PAGE_SIZE}" in body["errors"][0]["message"]
    body = query(f"{{ customers(limit: {MAX_PAGE_SIZE + 1}) {{ nodes {{ id }} }} }}")
    assert f"limit must be between 0 and {MAX_PAGE_SIZE}" in body["errors"][0]["message"]
    many = ["x"] * (MAX_FILTER_VALUES + 1)
    body = query(
        "query ($ids: [String!]) { customers(where: {id: {in: $ids}}) { nodes { id } } }", ids=many
    )
    assert f"at most {MAX_FILTER_VALUES} are accepted" in body["errors"][0]["message"]


def test_parser_and_validation_caches_are_bounded() -> None:
    from hubspoke_graphql.limits import CACHE_SIZE, schema_extensions
    from strawberry.extensions import ParserCache, ValidationCache

    caches = [e for e in schema_extensions() if isinstance(e, ParserCache | ValidationCache)]
    assert len(caches) == 2
    for cache in caches:
        fn = getattr(cache, "cached_parse_document", None) or cache.cached_validate_document
        assert fn.cache_parameters()["maxsize"] == CACHE_SIZE


def test_a_where_beyond_the_term_limit_is_refused(query: Query) -> None:
    def ors(n: int) -> dict[str, Any]:  # the where, its or, and per branch a node and its eq
        return {"or": [{"id": {"eq": f"c{i}"}} for i in range(n)]}

    largest = (MAX_FILTER_TERMS - 1) // 2
    assert query(COUNT, w=ors(largest))["data"]["customers"]["totalCount"] == 0
    body = query(COUNT, w=ors(largest + 1))
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert f"where has {2 * largest + 3} conditions" in body["errors"][0]["message"]
    assert f"at most {MAX_FILTER_TERMS} are accepted" in body["errors"][0]["message"]
    deep: dict[str, Any] = {"id": {"isNull": False}}
    for _ in range(20):
        deep = {"not": {"not": deep}}  # nested nodes count too
    assert query(COUNT, w=deep)["data"]["customers"]["totalCount"] > 0


def test_variables_too_large_to_coerce_are_refused_before_coercion(http: Http) -> None:
    # Refused before graphql-core coerces them, so before the in-list limit is even looked at.
    where = {"id": {"in": ["c"] * MAX_VARIABLE_VALUES}}
    for method in ("POST", "GET"):
        if method == "POST":
            sent = {"json": {"query": COUNT, "variables": {"w": where}}}
        else:
            sent = {"params": {"query": COUNT, "variables": json.dumps({"w": where})}}
        response = http(method, "/graphql", **sent)
        assert response.status_code == 400, response.text
        assert f"variables hold more than {MAX_VARIABLE_VALUES} values" in response.text


def test_a_body_nested_deeper_than_json_allows_is_a_400(http: Http) -> None:
    nested = '{"not": ' * 5000 + '{"id": {"eq": "c1"}}' + "}" * 5000
    body = f'{{"query": {json.dumps(COUNT)}, "variables": {{"w": {nested}}}}}'
    response = http("POST", "/graphql", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "Unable to parse request body as JSON" in response.text


def test_a_body_over_the_size_limit_is_refused_with_413(http: Http) -> None:
    def padded(size: int) -> bytes:
        text = b'{"query": "{ customers(first: 1) { totalCount } }"}'
        return text[:-1] + b" " * (size - len(text)) + b"}"

    json_body = {"Content-Type": "application/json"}
    fits = http("POST", "/graphql", content=padded(MAX_REQUEST_BYTES), headers=json_body)
    assert fits.status_code == 200 and fits.json()["data"]["customers"]["totalCount"] > 0

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it is read
        over = padded(MAX_REQUEST_BYTES + 1)
        for start in range(0, len(over), 1 << 16):
            yield over[start : start + (1 << 16)]

    for content in (padded(MAX_REQUEST_BYTES + 1), chunked()):
        response = http("POST", "/graphql", content=content, headers=json_body)
        assert response.status_code == 413, response.text
        (error,) = response.json()["errors"]
        assert error["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
        assert f"at most {MAX_REQUEST_BYTES} are read" in error["message"]


def test_a_query_string_over_the_size_limit_is_refused_with_413(
    http: Http, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hubspoke_graphql import app as app_module

    monkeypatch.setattr(app_module, "MAX_REQUEST_BYTES", 1000)  # httpx caps URLs at 64 kB
    fits = http("GET", "/graphql", params={"query": "{ customers(first: 1) { totalCount } }"})
    assert fits.status_code == 200, fits.text
    long = "{ customers(first: 1) { totalCount } }" + "#" * 1000  # a comment, as long as it likes
    response = http("GET", "/graphql", params={"query": long})
    assert response.status_code == 413
    assert "the query string is" in response.json()["errors"][0]["message"]


def test_several_operations_without_a_name_are_refused(
    http: Http, app: Starlette, stack: Stack
) -> None:
    app.state.audit.flush()
    text = 'query A { customer(id: "x") { id } } query B { customers { totalCount } }'
    for _ in range(2):  # the second time the texts are known to the caches
        refused = http("POST", "/graphql", json={"query": text}).json()
        assert refused["data"] is None
        assert refused["errors"][0]["message"] == (
            "the document holds 2 operations (A, B): name the one to run with operationName"
        )
        chosen = http("POST", "/graphql", json={"query": text, "operationName": "B"}).json()
        assert chosen["data"]["customers"]["totalCount"] > 0
    one = http("POST", "/graphql", json={"query": "{ customers { totalCount } }"}).json()
    assert one["data"]["customers"]["totalCount"] == chosen["data"]["customers"]["totalCount"]
    app.state.audit.flush()
    records = stack.lake.table(AUDIT_TABLE).read().to_pylist()
    refused = [r for r in records if r["outcome"] == "refused" and "Query.customer" in r["fields"]]
    assert len(refused) == 2
    assert all(r["operation"] is None for r in refused)  # none of its operations ran
