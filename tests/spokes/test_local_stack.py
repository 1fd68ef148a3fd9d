"""The local stack's spokes on real databases (sales on PostgreSQL, support on MariaDB, billing on
SQLite), driven end to end through the embedded SQLite bus."""

from __future__ import annotations

from typing import Any

import pytest

from hubspoke.bus import SqliteBus
from hubspoke.config import Settings
from hubspoke.simulate import Simulator
from hubspoke.stack import Stack
from hubspoke.sync import reconcile

pytestmark = pytest.mark.services

COMPARED = ("name", "email", "updated_at", "deleted", "version")


def open_stack(settings: Settings) -> Stack:
    # The local stack's own bus is RabbitMQ; this test is about the spokes, so it uses the
    # embedded log and stays independent of the broker.
    return Stack.create(settings, bus=SqliteBus(settings.home / "bus" / "events.sqlite"))


def held(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Identity rows by id, reduced to what every copy must agree on."""
    return {r["id"]: {k: r[k] for k in COMPARED} for r in rows}


def test_local_spokes_converge_with_the_lake_and_reconcile(local_settings: Settings) -> None:
    with open_stack(local_settings) as stack:
        engines = {name: spoke.db.engine for name, spoke in stack.spokes.items()}
        assert engines == {"sales": "postgres", "support": "mariadb", "billing": "sqlite"}

        Simulator(stack).seed(100)
        stack.sync()

        lake = held(stack.lake.table("customer_identity").read().to_pylist())
        assert len(lake) == 100 and any(s["deleted"] for s in lake.values())
        for name, spoke in stack.spokes.items():
            assert held(spoke.identities()) == lake, f"{name} differs from the lake"
        for contract in stack.catalog.extensions():
            check = reconcile(stack.lake, stack.spokes[contract.owner], contract)
            assert check.ok and check.spoke_rows > 0, check

    # A second run on the same home finds the same databases.
    with open_stack(local_settings) as again:
        for spoke in again.spokes.values():
            assert held(spoke.identities()) == lake
