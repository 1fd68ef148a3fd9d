"""`hubspoke demo` serves GraphQL and the Dagster UI, and Ctrl-C stops both."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from hubspoke_graphql.access import create_keys_file


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float, method: str = "GET", **kwargs: object) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return httpx.request(method, url, timeout=2, **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_demo_serves_graphql_and_dagster_until_ctrl_c(tmp_path: Path) -> None:
    gql, ui = free_port(), free_port()
    keys = create_keys_file(tmp_path / "keys.json")
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hubspoke.cli",
            "demo",
            "--customers",
            "50",
            "--home",
            str(tmp_path / "home"),
            "--graphql-port",
            str(gql),
            "--dagster-port",
            str(ui),
        ],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ | {"HUBSPOKE_API_KEYS_FILE": str(tmp_path / "keys.json")},
    )
    try:
        answer = wait_for(
            f"http://127.0.0.1:{gql}/graphql",
            60,
            method="POST",
            json={"query": "{ customers(first: 1) { totalCount } }"},
            headers={"X-API-Key": keys["analyst"]},
        )
        assert answer.json()["data"]["customers"]["totalCount"] > 0
        info = wait_for(f"http://127.0.0.1:{ui}/server_info", 90)
        assert "dagster_version" in info.json()
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        try:
            assert demo.wait(timeout=40) == 0
        finally:
            if demo.poll() is None:
                os.killpg(demo.pid, signal.SIGKILL)
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", ui)) != 0, "the Dagster UI outlived the demo"
