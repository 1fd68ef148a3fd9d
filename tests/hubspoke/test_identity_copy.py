"""The hub's in-memory identity copy answers what the identity table holds, merge after merge."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubspoke.config import Settings
from hubspoke.identity_copy import IdentityCopy
from hubspoke.lake import LakeTable
from hubspoke.stack import Stack

KEYS = [f"c{i}" for i in range(8)]
AT = datetime(2026, 1, 1, tzinfo=UTC)


def _state(key: str, version: int, name: str) -> dict[str, Any]:
    return {
        "id": key,
        "name": name,
        "email": f"{key}@example.com",
        "created_at": AT,
        "created_by": "sales",
        "updated_at": AT,
        "updated_by": "sales",
        "last_event_id": f"{key}-{version}",
        "version": version,
        "deleted": False,
        "deleted_at": None,
    }


def _merge(table: LakeTable, copy: IdentityCopy, states: list[dict[str, Any]]) -> None:
    metrics = table.upsert(table.contract.to_arrow(states), newer_than="version")
    copy.merged(states, metrics["version"])


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("identity-copy")


@settings(max_examples=15, deadline=None)
@given(merges=st.lists(st.lists(st.sampled_from(KEYS), min_size=1, max_size=4), max_size=6))
def test_lookups_read_like_the_table_after_any_series_of_merges(
    home: Path, merges: list[list[str]]
) -> None:
    with Stack.create(Settings(home=home / f"h{len(list(home.iterdir()))}")) as stack:
        table = stack.lake.table("customer_identity")
        table.upsert(table.contract.to_arrow([_state(k, 1, "seed") for k in KEYS[:4]]))
        copy = IdentityCopy(table)
        assert copy.states(KEYS).keys() == set(KEYS[:4])  # loads the table
        versions = dict.fromkeys(KEYS, 1)
        for n, keys in enumerate(merges):
            states = []
            for key in dict.fromkeys(keys):
                versions[key] += 1
                states.append(_state(key, versions[key], f"merge {n}"))
            _merge(table, copy, states)
            stored = {r["id"]: r for r in table.read().to_pylist()}
            assert copy.states(KEYS) == stored


def test_a_commit_by_another_writer_drops_the_copy(tmp_path: Path) -> None:
    with Stack.create(Settings(home=tmp_path)) as stack:
        table = stack.lake.table("customer_identity")
        table.upsert(table.contract.to_arrow([_state(k, 1, "seed") for k in KEYS]))
        copy = IdentityCopy(table)
        assert copy.states(["c0"])["c0"]["name"] == "seed"
        table.upsert(table.contract.to_arrow([_state("c0", 2, "elsewhere")]))  # not via the copy
        _merge(table, copy, [_state("c1", 2, "hub")])  # a version the copy cannot follow
        assert copy.states(["c0", "c1"]) == {
            r["id"]: r for r in table.read().to_pylist() if r["id"] in ("c0", "c1")
        }
        table.upsert(table.contract.to_arrow([_state("c2", 2, "restore")]))
        copy.check()
        assert copy.states(["c2"])["c2"]["name"] == "restore"
