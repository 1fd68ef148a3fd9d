"""Abuse is refused before execution, and unexpected failures never leak internals."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from hubspoke_graphql import reads
from hubspoke_graphql.limits import MAX_ALIASES, MAX_TOKENS

Query = Callable[..., dict[str, Any]]


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
