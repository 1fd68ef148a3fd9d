"""Fixtures of the hub's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hubspoke.bus.sqlite import SqliteBus
from hubspoke.config import Settings
from hubspoke.stack import Stack
from spokes.databases import drop_local_databases


@pytest.fixture
def local(tmp_path: Path, services: None) -> Iterator[Stack]:
    """A local stack (sales on PostgreSQL, support on MariaDB, billing on SQLite) with the
    embedded bus; its databases are dropped afterwards."""
    settings = Settings(home=tmp_path / "h", stack="local")
    try:
        with Stack.create(settings, bus=SqliteBus(settings.home / "bus" / "events.sqlite")) as s:
            yield s
    finally:
        drop_local_databases(settings)
