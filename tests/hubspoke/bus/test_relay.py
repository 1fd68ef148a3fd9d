"""The outbox relay and `consume --follow` when the bus is unavailable."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hubspoke import cli
from hubspoke.bus import IDENTITY_TOPIC, BusUnavailable, SqliteBus
from hubspoke.bus.rabbitmq import RabbitBus
from hubspoke.config import Settings
from hubspoke.follow import Follower
from hubspoke.stack import Stack
from spokes import Spoke, open_spokes
from spokes.relay import relay_outbox


class FlakyBus(SqliteBus):
    """The SQLite bus, unavailable for the publishes numbered in `failing` (1-based)."""

    def __init__(self, path: Path, failing: set[int]) -> None:
        super().__init__(path)
        self.failing = failing
        self.calls = 0

    def publish(self, topic: str, bodies: Sequence[bytes]) -> None:
        self.calls += 1
        if self.calls in self.failing:
            raise BusUnavailable("no RabbitMQ answering (test)")
        super().publish(topic, bodies)


@pytest.fixture
def sales(tmp_path: Path) -> Iterator[Spoke]:
    spokes = open_spokes(Settings(home=tmp_path / "home"))
    yield spokes["sales"]
    for spoke in spokes.values():
        spoke.close()


def outbox_bodies(spoke: Spoke) -> list[bytes]:
    return [m.body for m in spoke.outbox(1_000_000)]


def test_relay_stops_at_the_failing_batch_and_the_next_call_resumes_in_order(
    sales: Spoke, tmp_path: Path
) -> None:
    for i in range(25):
        sales.create_customer(f"Customer {i}", f"c{i}@example.com")
    written = outbox_bodies(sales)
    bus = FlakyBus(tmp_path / "bus.sqlite", failing={2})

    with pytest.raises(BusUnavailable, match=r"sales outbox: relayed 10 events, the rest wait"):
        relay_outbox(sales, bus, batch_size=10)
    assert outbox_bodies(sales) == written[10:]  # the failed batch and all after it wait

    assert relay_outbox(sales, bus, batch_size=10) == 15
    assert outbox_bodies(sales) == []
    assert [d.body for d in bus.fetch(IDENTITY_TOPIC, "hub", 100)] == written


def test_spoke_writes_go_on_while_the_broker_is_down(sales: Spoke, namespace: str) -> None:
    down = RabbitBus("amqp://guest:guest@127.0.0.1:1/%2F", namespace)
    sales.create_customer("Ada", "ada@example.com")
    with pytest.raises(BusUnavailable, match="no RabbitMQ answering"):
        relay_outbox(sales, down)
    customer = sales.create_customer("Alan", "alan@example.com")
    sales.update_customer(customer, name="Alan M. Turing")
    assert len(outbox_bodies(sales)) == 3


def test_consume_follow_backs_off_and_retries_an_unavailable_bus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = str(tmp_path / "home")
    runner = CliRunner()
    assert runner.invoke(cli.app, ["init", "--home", home]).exit_code == 0

    class Stop(Exception):
        pass

    outcomes = iter(["down"] * 6 + ["ok", "down", "stop"])
    real_hub_turn = Follower._hub_turn

    def hub_turn(follower: Follower, stack: Stack) -> None:
        outcome = next(outcomes)
        if outcome == "down":
            raise BusUnavailable("no RabbitMQ answering at amqp://guest@127.0.0.1:5672/%2F")
        if outcome == "stop":
            raise Stop
        real_hub_turn(follower, stack)

    hub_pauses: list[float] = []

    def pause(follower: Follower, loop: str, seconds: float) -> None:
        hub_pauses.append(seconds)

    monkeypatch.setattr(Follower, "_hub_turn", hub_turn)
    monkeypatch.setattr(Follower, "_pause", pause)
    result = runner.invoke(cli.app, ["consume", "--follow", "--home", home, "--interval", "0.2"])

    assert isinstance(result.exception, Stop)
    # Doubling from 0.5 s up to 10 s; a successful round (then its 0.2 s poll) resets it.
    assert hub_pauses == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 0.2, 0.5]
    retries = [line for line in result.stderr.splitlines() if "retrying" in line]
    assert retries[0] == (
        "hub: no RabbitMQ answering at amqp://guest@127.0.0.1:5672/%2F; retrying in 0.5s"
    )
    assert len(retries) == 7


def test_consume_once_with_the_bus_down_is_one_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = str(tmp_path / "home")
    runner = CliRunner()
    assert runner.invoke(cli.app, ["init", "--home", home]).exit_code == 0

    def propagate(stack: Stack, settle: bool = True) -> dict[str, Any]:
        raise BusUnavailable("no RabbitMQ answering at amqp://guest@127.0.0.1:5672/%2F")

    monkeypatch.setattr(Stack, "propagate", propagate)
    result = runner.invoke(cli.app, ["consume", "--home", home])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: no RabbitMQ answering at amqp://guest@127.0.0.1:5672/%2F"
    ]
