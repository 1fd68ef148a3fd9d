"""`serve --workers N`: N processes on one port, answering, each new connection handed to the
worker with the fewest open, and stopping together."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import polars as pl
import pytest
from hubspoke_graphql.app import app_from_env
from hubspoke_graphql.audit import AUDIT_TABLE
from hubspoke_graphql.workers import PARENT_NICENESS, run_workers

from hubspoke.stack import Stack


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


@contextmanager
def _two_workers(stack: Stack, key: str, *, clean: bool = True) -> Iterator[tuple[int, list[int]]]:
    """`serve --workers 2` on a free port once it answers: the port and the worker processes.
    Stopped with SIGTERM afterwards; it must exit within a minute, cleanly unless not `clean`."""
    port = _free_port()
    command = [sys.executable, "-m", "hubspoke.cli", "serve", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--workers", "2", "--home", str(stack.settings.home)], start_new_session=True
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, "the server exited"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as probe:
                    _ask(probe, port, key)
                break
            except OSError:
                assert time.monotonic() < deadline, "no answer within 90 s"
                time.sleep(0.5)
        yield port, [p for p in _children(server.pid) if "spawn_main" in _cmdline(p)]
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(60)
    assert (code == 0) == clean, code


def test_workers_answer_on_one_port_and_stop_together(
    stack: Stack, api_keys: dict[str, str]
) -> None:
    headers = {"X-API-Key": api_keys["analyst"]}
    body = {"query": "{ customers(first: 1) { nodes { id } } }"}
    with _two_workers(stack, api_keys["analyst"]) as (port, workers):
        assert len(workers) == 2
        for _ in range(10):  # each on a new connection
            answer = httpx.post(
                f"http://127.0.0.1:{port}/graphql", json=body, headers=headers, timeout=5
            )
            assert answer.json()["data"]["customers"]["nodes"]
        # The parent's own work (audit flushes) yields the cores to the workers' requests.
        parent = _parent(workers[0])
        ours = os.getpriority(os.PRIO_PROCESS, 0)  # what the server started with
        assert _niceness(parent) == {max(PARENT_NICENESS, ours)}
        assert all(_niceness(w) == {ours} for w in workers)
    assert not any(_alive(p) for p in workers)


def _parent(pid: int) -> int:
    return int(_stat(Path(f"/proc/{pid}/stat"))[1])


def _niceness(pid: int) -> set[int]:
    """The nice values of a process's threads (Linux keeps one per thread)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found.add(int(_stat(task / "stat")[16]))
        except (FileNotFoundError, ProcessLookupError):  # a thread that ended meanwhile
            continue
    return found


def test_the_parent_writes_every_worker_s_audit_records_and_loses_none_on_stop(
    stack: Stack, api_keys: dict[str, str]
) -> None:
    key = api_keys["analyst"]
    query = "query Counted { customers(first: 1) { nodes { id } } }"
    table = stack.lake.table(AUDIT_TABLE)
    with _two_workers(stack, key) as (port, workers):
        time.sleep(0.5)  # the probe's close reaches the dealer's count
        # Two keep-alive clients at once, one on each worker, ten requests each.
        clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        try:
            for _ in range(10):
                for client in clients:
                    _ask(client, port, key, query)
            assert {_serving_worker(c, workers) for c in clients} == set(workers)
        finally:
            for client in clients:
                client.close()
    # Stopped right after the last answer: what the workers held went to the parent first.
    counted = table.read(where=pl.col("operation") == "Counted")
    assert counted.num_rows == 20
    assert set(counted["role"].to_pylist()) == {"analyst"}


def test_a_killed_worker_stops_the_others_and_the_server_fails(
    stack: Stack, api_keys: dict[str, str]
) -> None:
    key = api_keys["analyst"]
    with _two_workers(stack, key, clean=False) as (port, workers):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            for _ in range(5):  # records on their way to the parent
                _ask(client, port, key)
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _alive(workers[1]):  # stopped by the parent
            assert time.monotonic() < deadline, "the surviving worker was not stopped"
            time.sleep(0.2)


STUCK_APP = """
import asyncio


def app():
    async def asgi(scope, receive, send):
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"up"})
            return
        while True:  # lifespan
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:  # a shutdown that never ends
                await asyncio.Event().wait()

    return asgi
"""


def test_a_worker_stuck_in_shutdown_is_killed_and_the_server_fails(tmp_path: Path) -> None:
    (tmp_path / "stuck.py").write_text(STUCK_APP)
    port = _free_port()
    run = (
        "import hubspoke_graphql.workers as w; w.STOP_TIMEOUT_S = 1;"
        f" w.run_workers('stuck:app', '127.0.0.1', {port}, 1)"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", run], cwd=tmp_path, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # the worker answers: its startup is done
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "up":
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the worker never answered"
            time.sleep(0.2)
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
    assert server.returncode != 0
    assert b"did not stop within 1 s; killing it" in err


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _alive(pid: int) -> bool:
    try:
        state = _stat(Path(f"/proc/{pid}/stat"))[0]
    except FileNotFoundError:  # reaped
        return False
    return state != "Z"


def _stat(path: Path) -> list[str]:
    """The fields of a /proc stat file after the command name (state first, then the parent)."""
    return path.read_text().rsplit(")", 1)[1].split()


def test_each_worker_hands_the_gil_over_as_configured(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUBSPOKE_HOME", str(stack.settings.home))
    monkeypatch.setenv("HUBSPOKE_API_SWITCH_INTERVAL_MS", "2")
    before = sys.getswitchinterval()
    try:
        app_from_env()  # what each worker builds its app with
        assert sys.getswitchinterval() == pytest.approx(0.002)
    finally:
        sys.setswitchinterval(before)


def test_a_port_in_use_is_refused_before_any_worker_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            run_workers("hubspoke_graphql.app:app_from_env", "127.0.0.1", port, 2)


def _serving_worker(connection: socket.socket, workers: list[int]) -> int:
    """The worker process holding the server side of a client connection to loopback."""
    client_port = connection.getsockname()[1]
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].split(":")[1], 16) == client_port:  # remote end: the client
            inodes.add(fields[9])
    holders = [pid for pid in workers if _socket_inodes(pid) & inodes]
    assert len(holders) == 1, holders
    return holders[0]


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except FileNotFoundError:  # closed meanwhile (DuckDB, the lake, ...)
            continue
        if target.startswith("socket:["):
            found.add(target.removeprefix("socket:[").removesuffix("]"))
    return found


def _ask(connection: socket.socket, port: int, key: str, query: str = "{ __typename }") -> None:
    body = json.dumps({"query": query}).encode()
    connection.sendall(
        f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json"
        f"\r\nX-API-Key: {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    answer = b""
    while b'"data"' not in answer or not answer.endswith(b"}"):
        chunk = connection.recv(65536)
        assert chunk, answer
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer


def test_connections_go_to_the_worker_with_fewest_open(
    stack: Stack, api_keys: dict[str, str]
) -> None:
    key = api_keys["analyst"]
    opened: list[socket.socket] = []
    with _two_workers(stack, key) as (port, workers):
        try:
            time.sleep(0.5)  # the probe's close reaches the dealer's count

            # 16 keep-alive clients at once: 8 on each worker, every time.
            opened = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(16)]
            for connection in opened:
                _ask(connection, port, key)
            serving = [_serving_worker(c, workers) for c in opened]
            assert sorted(serving.count(w) for w in workers) == [8, 8]

            # Half of one worker's clients leave: the next four connections all go to it.
            emptied = workers[0]
            leaving = [c for c, w in zip(opened, serving, strict=True) if w == emptied][:4]
            for connection in leaving:
                connection.close()
            opened = [c for c in opened if c not in leaving]
            time.sleep(0.5)
            fresh = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(4)]
            opened += fresh
            for connection in fresh:
                _ask(connection, port, key)
            assert [_serving_worker(c, workers) for c in fresh] == [emptied] * 4
        finally:
            for connection in opened:
                connection.close()
