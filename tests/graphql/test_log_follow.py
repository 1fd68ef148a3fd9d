"""The snapshot follows the hub's log: a logged change shows before it is merged, never before."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from hubspoke_graphql.access import key_of_role
from hubspoke_graphql.app import create_app
from hubspoke_graphql.limits import REFRESH_INTERVAL_S
from starlette.applications import Starlette

from hubspoke.config import Settings
from hubspoke.ingest import INGEST_APP, PROJECTION_APP, Hub
from hubspoke.lake import LakeTable
from hubspoke.simulate import Simulator
from hubspoke.stack import Stack

FIELDS = "name email version lastEventId"
COUNT = "{ customers { totalCount } }"
IDENTITY = "customer_identity"


def test_logged_changes_show_before_the_merge_and_survive_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Stack.create(Settings(home=tmp_path)) as stack:
        Simulator(stack, seed=5).seed(10)
        app = create_app(stack.settings)
        post = _poster(app)
        before = post(COUNT)["customers"]["totalCount"]
        live = _live_ids(stack)
        updated, deleted = live[0], live[1]
        assert app.state.snapshot.full_loads.count(IDENTITY) == 1

        # The hub logs the batch but does not merge it (as between two projections under load).
        monkeypatch.setattr(Hub, "project", lambda self: None)
        sales = stack.spokes["sales"]
        sales.update_customer(updated, name="Ada Lovelace", email="ada@example.com")
        sales.delete_customer(deleted)
        created = sales.create_customer("Grace Hopper", "grace@example.com")
        stack.relay()
        stack.hub.drain()
        table = stack.lake.table(IDENTITY)
        logged = stack.lake.table("identity_events").progress(INGEST_APP)
        assert (table.progress(PROJECTION_APP) or 0) < (logged or 0)
        assert created not in _lake_rows(stack, [created])

        time.sleep(REFRESH_INTERVAL_S + 0.1)
        unmerged = _customers(post, [updated, deleted, created])
        assert unmerged[updated]["name"] == "Ada Lovelace"
        assert unmerged[updated]["email"] == "ada@example.com"
        assert unmerged[deleted] is None
        assert unmerged[created]["name"] == "Grace Hopper"
        assert post(COUNT)["customers"]["totalCount"] == before

        # The real merge writes exactly what the API already showed, and needs no reload.
        monkeypatch.undo()
        stack.hub.project()
        assert table.progress(PROJECTION_APP) == logged
        lake = _lake_rows(stack, [updated, created])
        for key in (updated, created):
            shown = unmerged[key]
            assert (shown["name"], shown["email"], shown["version"], shown["lastEventId"]) == (
                lake[key]["name"],
                lake[key]["email"],
                lake[key]["version"],
                lake[key]["last_event_id"],
            )
        time.sleep(REFRESH_INTERVAL_S + 0.1)
        assert _customers(post, [updated, deleted, created]) == unmerged
        assert app.state.snapshot.full_loads.count(IDENTITY) == 1


def test_an_extension_reload_keeps_the_logged_changes_it_did_not_join(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Stack.create(Settings(home=tmp_path)) as stack:
        Simulator(stack, seed=9).seed(10)
        stack.sync()
        app = create_app(stack.settings)
        post = _poster(app)
        before = post(COUNT)["customers"]["totalCount"]
        updated = _live_ids(stack)[0]
        monkeypatch.setattr(Hub, "project", lambda self: None)  # logged, never merged
        sales = stack.spokes["sales"]
        sales.update_customer(updated, name="Ada Lovelace")
        created = sales.create_customer("Grace Hopper", "grace@example.com")
        stack.relay()
        stack.hub.drain()
        time.sleep(REFRESH_INTERVAL_S + 0.1)
        assert _customers(post, [updated, created])[updated]["name"] == "Ada Lovelace"

        # A nightly sync reloads the sales table: the joined table is built again from the
        # identity rows, which must still hold what the log changed since the last merge.
        sales.save_domain(
            updated, {"account_value": "4242.00", "owner_rep": None, "credit_limit": "0.00"}
        )
        stack.sync(["sales"])
        time.sleep(REFRESH_INTERVAL_S + 0.1)
        query = '{{ c: customer(id: "{}") {{ name sales {{ accountValue }} }} }}'
        assert post(query.format(updated))["c"] == {
            "name": "Ada Lovelace",
            "sales": {"accountValue": "4242.00"},
        }
        assert post(query.format(created))["c"]["name"] == "Grace Hopper"
        assert post(COUNT)["customers"]["totalCount"] == before + 1
        page = post('{ customers(where: {name: {eq: "Ada Lovelace"}}) { nodes { id } } }')
        assert page["customers"]["nodes"] == [{"id": updated}]
        assert app.state.snapshot.full_loads.count(IDENTITY) == 1
        assert app.state.snapshot.full_loads.count("customer_sales_domain") == 2


def test_pages_in_key_order_stay_exact_with_logged_changes_appended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Stack.create(Settings(home=tmp_path)) as stack:
        Simulator(stack, seed=11).seed(40)
        app = create_app(stack.settings)
        post = _poster(app)
        post(COUNT)
        table = "customer_identity__entity"
        view = app.state.snapshot.current()
        assert not view.key_order[table].appended  # pages read the scan alone
        _walk_pages_in_key_order(post, view, table)
        monkeypatch.setattr(Hub, "project", lambda self: None)  # logged, never merged
        live = _live_ids(stack)
        sales = stack.spokes["sales"]
        for n, key in enumerate(live[::3]):  # moved after the rows in key order
            sales.update_customer(key, name=f"Zed {n}")
        sales.delete_customer(live[1])
        for n in range(5):
            sales.create_customer(f"Zed new {n}", f"new{n}@example.com")
        stack.relay()
        stack.hub.drain()
        time.sleep(REFRESH_INTERVAL_S + 0.1)
        view = app.state.snapshot.current()
        assert view.key_order[table].appended
        assert (
            view.key_order[table].built
            < view.fetch(f"SELECT max(rowid) + 1 AS n FROM {table}")[0]["n"]
        )
        assert min(_walk_pages_in_key_order(post, view, table)) > 7  # several pages each


def _walk_pages_in_key_order(post: Callable[[str], Any], view: Any, table: str) -> list[int]:
    """Every page, with and without a filter, and an offset page, against DuckDB's ORDER BY;
    returns how many rows each walk saw."""
    sizes = []
    for where, sql in (("", "TRUE"), ('where: {name: {contains: "Zed"}}', "name LIKE '%Zed%'")):
        expected = [
            r["id"]
            for r in view.fetch(f"SELECT id FROM {table} WHERE NOT deleted AND {sql} ORDER BY id")
        ]
        seen, after = [], None
        while True:
            cursor = f', after: "{after}"' if after else ""
            page = post(
                f"{{ customers(first: 7{cursor}{', ' + where if where else ''})"
                " { nodes { id } pageInfo { hasNextPage endCursor } } }"
            )["customers"]
            seen += [n["id"] for n in page["nodes"]]
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        assert seen == expected
        sizes.append(len(expected))
        offset = post("{ customers(limit: 5, offset: 3) { nodes { id } } }")
        assert [n["id"] for n in offset["customers"]["nodes"]] == _ordered(view, table)[3:8]
    return sizes


def _ordered(view: Any, table: str) -> list[str]:
    return [r["id"] for r in view.fetch(f"SELECT id FROM {table} WHERE NOT deleted ORDER BY id")]


def test_a_batch_whose_log_commit_failed_is_not_visible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Stack.create(Settings(home=tmp_path)) as stack:
        Simulator(stack, seed=6).seed(5)
        app = create_app(stack.settings)
        post = _poster(app)
        customer = _live_ids(stack)[0]
        shown = _customers(post, [customer])[customer]

        real_append = LakeTable.append

        def failing(self: LakeTable, rows: Any, progress: Any = None, **metadata: Any) -> int:
            if self.name == "identity_events":
                raise OSError("disk full")
            return real_append(self, rows, progress, **metadata)

        monkeypatch.setattr(LakeTable, "append", failing)
        stack.spokes["billing"].update_customer(customer, name="Never Logged")
        stack.relay()
        with pytest.raises(OSError, match="disk full"):
            stack.hub.drain()
        time.sleep(REFRESH_INTERVAL_S + 0.1)
        assert _customers(post, [customer])[customer] == shown

        # Redelivered and logged, it shows.
        monkeypatch.undo()
        stack.hub.drain()
        time.sleep(REFRESH_INTERVAL_S + 0.1)
        assert _customers(post, [customer])[customer]["name"] == "Never Logged"


def test_a_change_the_log_does_not_explain_reloads_the_identity_table(tmp_path: Path) -> None:
    with Stack.create(Settings(home=tmp_path)) as stack:
        Simulator(stack, seed=8).seed(5)
        app = create_app(stack.settings)
        post = _poster(app)
        gone = _live_ids(stack)[0]
        assert _customers(post, [gone])[gone] is not None

        stack.lake.table(IDENTITY).delete_where(f"id = '{gone}'", step="erase")
        time.sleep(REFRESH_INTERVAL_S + 0.1)
        assert _customers(post, [gone])[gone] is None
        assert app.state.snapshot.full_loads.count(IDENTITY) == 2


def _live_ids(stack: Stack) -> list[str]:
    rows = stack.lake.table(IDENTITY).read().to_pylist()
    return sorted(r["id"] for r in rows if not r["deleted"])


def _lake_rows(stack: Stack, ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = stack.lake.table(IDENTITY).read().to_pylist()
    return {r["id"]: r for r in rows if r["id"] in ids}


def _customers(post: Callable[[str], dict[str, Any]], ids: list[str]) -> dict[str, Any]:
    aliases = " ".join(f'c{i}: customer(id: "{key}") {{ {FIELDS} }}' for i, key in enumerate(ids))
    data = post(f"{{ {aliases} }}")
    return {key: data[f"c{i}"] for i, key in enumerate(ids)}


def _poster(app: Starlette) -> Callable[[str], dict[str, Any]]:
    def post(text: str) -> dict[str, Any]:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app)
            headers = {"X-API-Key": key_of_role(app.state.keys_file, "admin")}
            async with httpx.AsyncClient(
                transport=transport, base_url="http://test", headers=headers
            ) as client:
                return await client.post("/graphql", json={"query": text})

        body = asyncio.run(go()).json()
        assert "errors" not in body, body
        return body["data"]

    return post
