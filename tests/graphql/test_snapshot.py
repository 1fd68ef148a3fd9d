"""The DuckDB snapshot follows the lake: a new Delta version shows up within about a second."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from hubspoke_graphql.access import key_of_role
from hubspoke_graphql.app import create_app
from hubspoke_graphql.limits import REFRESH_INTERVAL_S
from hubspoke_graphql.snapshot import Interruptible, QueryStopped, Snapshot, View, ViewGone
from hubspoke_graphql.timetravel import TimeTravel
from starlette.applications import Starlette

from hubspoke.config import ConfigError, Settings
from hubspoke.simulate import Simulator
from hubspoke.stack import HomeNotFound, Stack

COUNT = "{ customers { totalCount } }"


def test_changes_in_the_lake_show_after_the_refresh_interval(tmp_path: Path) -> None:
    with Stack.create(Settings(home=tmp_path)) as stack:
        Simulator(stack, seed=3).seed(10)
        stack.sync()
        app = create_app(stack.settings)
        snapshot = app.state.snapshot
        post = _poster(app)
        before = post(COUNT)["customers"]["totalCount"]
        first_view = snapshot.current()
        # Within the interval the view is reused: the lake is not asked on every request.
        assert snapshot.current() is first_view

        new_id = stack.spokes["sales"].create_customer(
            "Radia Perlman",
            "radia@example.com",
            {"account_value": "10.00", "owner_rep": None, "credit_limit": "0.00"},
        )
        stack.propagate()
        stack.sync(["sales"])
        time.sleep(REFRESH_INTERVAL_S + 0.1)
        assert post(COUNT)["customers"]["totalCount"] == before + 1
        assert snapshot.current() is not first_view
        got = post(f'{{ customer(id: "{new_id}") {{ name sales {{ accountValue }} }} }}')
        assert got == {"customer": {"name": "Radia Perlman", "sales": {"accountValue": "10.00"}}}

        time.sleep(REFRESH_INTERVAL_S + 0.1)
        reloaded = snapshot.current()
        time.sleep(REFRESH_INTERVAL_S + 0.1)
        assert snapshot.current() is reloaded  # versions unchanged: no reload


def test_missing_home_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HomeNotFound, match="no Hubspoke lake at"):
        create_app(Settings(home=tmp_path / "nowhere"))


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


@pytest.mark.parametrize("threads", [1, 2])
def test_requests_query_on_the_configured_threads_and_a_full_load_on_every_core(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    with Stack.create(Settings(home=tmp_path)) as stack:
        Simulator(stack, seed=4).seed(5)
        stack.sync()
        app = create_app(replace(stack.settings, api_query_threads=threads))
        snapshot = app.state.snapshot
        during: list[tuple[bool, int]] = []  # (a full load, DuckDB's threads while joining)
        join = Snapshot._join

        def watched(self: Snapshot, reloaded: set[str]) -> Any:
            setting = self._con.execute("SELECT current_setting('threads')").fetchall()
            during.append((bool(reloaded), setting[0][0]))
            return join(self, reloaded)

        monkeypatch.setattr(Snapshot, "_join", watched)
        asked = "SELECT current_setting('threads') AS n"
        assert snapshot.current().fetch(asked)[0]["n"] == threads
        stack.spokes["sales"].create_customer(
            "Frances Allen",
            "frances@example.com",
            {"account_value": "1.00", "owner_rep": None, "credit_limit": "0.00"},
        )
        stack.propagate()
        stack.sync(["sales"])  # a new sales version: the next refresh loads and joins in full
        time.sleep(REFRESH_INTERVAL_S + 0.1)
        assert snapshot.current().fetch(asked)[0]["n"] == threads
        assert (True, os.cpu_count()) in during
        assert all(n == (os.cpu_count() if full else threads) for full, n in during)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("HUBSPOKE_API_QUERY_THREADS", "0", "=0 must be between 1 and 256"),
        ("HUBSPOKE_API_QUERY_THREADS", "²", "='²' must be a whole number"),
        ("HUBSPOKE_API_READ_THREADS", "0", "=0 must be between 1 and 32"),
        ("HUBSPOKE_API_READ_THREADS", "33", "=33 must be between 1 and 32"),
        ("HUBSPOKE_API_READ_THREADS", "²", "='²' must be a whole number"),
        ("HUBSPOKE_API_SWITCH_INTERVAL_MS", "0", "=0 must be between 0.05 and 100"),
        ("HUBSPOKE_API_SWITCH_INTERVAL_MS", "500", "=500 must be between 0.05 and 100"),
        ("HUBSPOKE_API_SWITCH_INTERVAL_MS", "fast", "='fast' must be a number"),
    ],
)
def test_a_bad_thread_setting_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"{name}{message}"):
        Settings.from_env()


ENDLESS = "SELECT count(*) FROM range(10000000000) AS r WHERE r.range % 7 = 3"
"""Half a minute of DuckDB work (bounded: a broken interruption fails a test, never hangs it)."""
IDS = 'SELECT count(*) AS n FROM "customer_identity__entity"'


def _interrupted(view: View, pool: ThreadPoolExecutor) -> float:
    """Run ENDLESS on `view` in `pool`, interrupt it once running; seconds it took to stop."""
    read = Interruptible()
    running = pool.submit(read.run, lambda: view.fetch_tuples(ENDLESS))
    time.sleep(0.3)
    assert not running.done()
    started = time.monotonic()
    read.interrupt()
    with pytest.raises(duckdb.InterruptException):
        running.result(timeout=10)
    return time.monotonic() - started


def test_an_interrupted_query_frees_its_thread_and_its_view_answers_on(tmp_path: Path) -> None:
    with Stack.create(Settings(home=tmp_path)) as stack, ThreadPoolExecutor(1) as pool:
        Simulator(stack, seed=6).seed(5)
        stack.sync()
        view = create_app(stack.settings).state.snapshot.current()  # one cursor: one read thread
        before = view.fetch(IDS)
        assert _interrupted(view, pool) < 2
        # The interruption aborted the cursor's transaction: a new one shows the same state.
        assert pool.submit(view.fetch, IDS).result(timeout=10) == before

        stopped = Interruptible()
        stopped.interrupt()  # stopped before its query starts: the query never runs
        ran: list[str] = []
        view._hooks = [lambda sql, params: ran.append(sql)]
        with pytest.raises(QueryStopped):
            pool.submit(stopped.run, lambda: view.fetch(IDS)).result(timeout=10)
        assert ran == [IDS]
        assert pool.submit(view.fetch, IDS).result(timeout=10) == before


def test_a_query_that_fails_in_duckdb_leaves_its_view_answering(tmp_path: Path) -> None:
    with Stack.create(Settings(home=tmp_path)) as stack:
        Simulator(stack, seed=8).seed(5)
        stack.sync()
        view = create_app(stack.settings).state.snapshot.current()
        before = view.fetch(IDS)
        for _ in range(2):  # the failure aborts the cursor's transaction: a new one replaces it
            with pytest.raises(duckdb.ConversionException):
                view.fetch("SELECT CAST(? AS DECIMAL(18,2)) AS v", ["1e30"])
        assert view.fetch(IDS) == before


def test_a_past_view_answers_on_after_an_interruption(tmp_path: Path) -> None:
    with Stack.create(Settings(home=tmp_path)) as stack, ThreadPoolExecutor(1) as pool:
        Simulator(stack, seed=9).seed(5)
        stack.sync()
        identity = stack.catalog.identity("customer")
        version = stack.lake.table(identity).version()
        past = TimeTravel(stack.lake, [], read_threads=1).view(identity, version=version, at=None)
        before = past.fetch(IDS)
        assert _interrupted(past, pool) < 2
        # Its tables never change: the cursor is always pinned anew.
        assert pool.submit(past.fetch, IDS).result(timeout=10) == before


def test_a_view_the_lake_moved_past_says_so_once_its_last_cursor_is_interrupted(
    tmp_path: Path,
) -> None:
    with Stack.create(Settings(home=tmp_path)) as stack, ThreadPoolExecutor(2) as pool:
        Simulator(stack, seed=7).seed(5)
        stack.sync()
        snapshot = create_app(replace(stack.settings, api_read_threads=2)).state.snapshot
        old = snapshot.current()
        before = old.fetch(IDS)[0]["n"]
        stack.spokes["sales"].create_customer(
            "Hedy Lamarr",
            "hedy@example.com",
            {"account_value": "1.00", "owner_rep": None, "credit_limit": "0.00"},
        )
        stack.propagate()
        time.sleep(REFRESH_INTERVAL_S + 0.1)
        new = snapshot.current()
        assert new is not old and new.fetch(IDS)[0]["n"] == before + 1
        assert old.fetch(IDS)[0]["n"] == before  # still its own state while its cursor lives

        assert _interrupted(old, pool) < 2
        # A cursor pinned now would show the new state as the old view's: none is made, and
        # the view answers on its other cursor until that one goes too.
        assert pool.submit(old.fetch, IDS).result(timeout=10)[0]["n"] == before
        assert _interrupted(old, pool) < 2
        for _ in range(2):  # then every later query says so, none waits for a cursor
            with pytest.raises(ViewGone, match="view of the lake is gone"):
                pool.submit(old.fetch, IDS).result(timeout=10)
        assert new.fetch(IDS)[0]["n"] == before + 1
