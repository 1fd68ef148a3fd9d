"""Buses for the bus tests: the embedded SQLite log and RabbitMQ, each in its own namespace."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hubspoke.bus import EventBus, SqliteBus
from hubspoke.bus.rabbitmq import RabbitBus
from hubspoke.config import Settings

OpenBus = Callable[[], EventBus]
"""Opens one more bus on the same storage (a second process, or the same one after a restart)."""


@pytest.fixture
def rabbitmq_url(services: None) -> str:
    """The broker of the local stack (HUBSPOKE_RABBITMQ_URL, read by hubspoke.config), running."""
    return Settings.from_env().rabbitmq_url


@pytest.fixture
def namespace(tmp_path: Path) -> str:
    """This test's own namespace, as a home of its own would have."""
    return Settings(home=tmp_path / "home").namespace


@pytest.fixture
def rabbit(rabbitmq_url: str, namespace: str) -> Iterator[Callable[..., RabbitBus]]:
    """Opens RabbitBus instances on this test's namespace; deletes the namespace afterwards."""
    opened: list[RabbitBus] = []

    def open_rabbit(**options: object) -> RabbitBus:
        bus = RabbitBus(rabbitmq_url, namespace, **options)  # type: ignore[arg-type]
        opened.append(bus)
        return bus

    yield open_rabbit
    for bus in opened:  # each deletes the queues it knows (ad-hoc subscribers included)
        bus.delete_namespace()


@pytest.fixture(params=["sqlite", pytest.param("rabbitmq", marks=pytest.mark.services)])
def open_bus(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenBus]:
    """A factory of buses sharing one storage, for each bus implementation."""
    if request.param == "rabbitmq":
        yield request.getfixturevalue("rabbit")
        return
    opened: list[EventBus] = []

    def open_sqlite() -> EventBus:
        bus = SqliteBus(tmp_path / "bus" / "events.sqlite")
        opened.append(bus)
        return bus

    yield open_sqlite
    for bus in opened:
        bus.close()


@pytest.fixture
def rabbitmqctl(services: None) -> Callable[..., str]:
    """Runs rabbitmqctl against this machine's broker and returns its output."""

    def run(*args: str) -> str:
        done = subprocess.run(
            ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=120, check=True
        )
        return done.stdout

    return run
