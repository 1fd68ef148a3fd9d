"""Shared fixtures: a fresh embedded stack in a temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hubspoke.config import Settings
from hubspoke.stack import Stack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """An empty embedded stack (lake tables, bus, three spoke databases)."""
    with Stack.create(Settings(home=tmp_path / "home")) as s:
        yield s


@pytest.fixture(scope="session")
def services() -> None:
    """PostgreSQL, MariaDB and RabbitMQ answering on 127.0.0.1 (started if they were down)."""
    import subprocess

    script = Path(__file__).resolve().parent.parent / ".ci" / "services.sh"
    subprocess.run(["bash", str(script)], check=True, timeout=300)


@pytest.fixture
def local_settings(tmp_path: Path, services: None) -> Iterator[Settings]:
    """A local-stack home (PostgreSQL, MariaDB, RabbitMQ); databases and queues dropped after."""
    from hubspoke.bus.rabbitmq import RabbitBus
    from spokes.databases import drop_local_databases

    settings = Settings(home=tmp_path / "h", stack="local")
    try:
        yield settings
    finally:
        bus = RabbitBus(settings.rabbitmq_url, namespace=settings.namespace)
        bus.delete_namespace()
        bus.close()
        drop_local_databases(settings)
