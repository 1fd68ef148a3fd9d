"""Abuse is refused before execution, and unexpected failures never leak internals."""

from __future__ import annotations

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
