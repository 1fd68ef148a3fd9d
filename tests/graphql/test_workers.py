"""`serve --workers N`: N processes listening on one port, answering, and stopping together."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from hubspoke_graphql.workers import run_workers

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


def test_workers_answer_on_one_port_and_stop_together(
    stack: Stack, api_keys: dict[str, str]
) -> None:
    port = _free_port()
    command = [sys.executable, "-m", "hubspoke.cli", "serve", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--workers", "2", "--home", str(stack.settings.home)],
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/graphql"
    body = {"query": "{ customers(first: 1) { nodes { id } } }"}
    headers = {"X-API-Key": api_keys["analyst"]}
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, "the server exited"
            try:
                if httpx.post(url, json=body, headers=headers, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "no answer within 90 s"
            time.sleep(0.5)
        workers = [p for p in _children(server.pid) if "spawn_main" in _cmdline(p)]
        assert len(workers) == 2
        for _ in range(10):  # each on a new connection, whichever worker takes it
            answer = httpx.post(url, json=body, headers=headers, timeout=5)
            assert answer.json()["data"]["customers"]["nodes"]
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(60)
    assert code == 0
    assert not any(Path(f"/proc/{p}").exists() and _alive(p) for p in workers)


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _alive(pid: int) -> bool:
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def test_a_port_in_use_is_refused_before_any_worker_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            run_workers("hubspoke_graphql.app:app_from_env", "127.0.0.1", port, 2)
