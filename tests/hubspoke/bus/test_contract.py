"""What every bus promises (EventBus), checked on the SQLite log and on RabbitMQ alike."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from hubspoke.bus import BROADCAST_TOPIC, IDENTITY_TOPIC, EventBus, SqliteBus

OpenBus = Callable[[], EventBus]
SPOKES = ("sales", "support", "billing")


def bodies(n: int, start: int = 0, prefix: str = "m") -> list[bytes]:
    return [f"{prefix}{i:05d}".encode() for i in range(start, start + n)]


def test_messages_come_out_in_publish_order(open_bus: OpenBus) -> None:
    bus = open_bus()
    bus.publish(IDENTITY_TOPIC, bodies(30))
    bus.publish(IDENTITY_TOPIC, bodies(1, 30))
    bus.publish(IDENTITY_TOPIC, bodies(69, 31))
    got = bus.fetch(IDENTITY_TOPIC, "hub", 1000)
    assert [d.body for d in got] == bodies(100)


def test_hub_and_every_spoke_see_every_message_of_their_topic(open_bus: OpenBus) -> None:
    bus = open_bus()
    bus.publish(IDENTITY_TOPIC, bodies(5, prefix="event"))
    bus.publish(BROADCAST_TOPIC, bodies(7, prefix="state"))

    # Acknowledging in one subscriber takes nothing from another.
    sales = bus.fetch(BROADCAST_TOPIC, "sales", 100)
    bus.ack(BROADCAST_TOPIC, "sales", sales)
    assert [d.body for d in sales] == bodies(7, prefix="state")
    for spoke in SPOKES[1:]:
        assert [d.body for d in bus.fetch(BROADCAST_TOPIC, spoke, 100)] == bodies(7, prefix="state")
    assert [d.body for d in bus.fetch(IDENTITY_TOPIC, "hub", 100)] == bodies(5, prefix="event")
    assert bus.pending(BROADCAST_TOPIC, "sales") == 0
    assert bus.pending(BROADCAST_TOPIC, "billing") == 7


def test_ack_then_fetch_gives_the_rest(open_bus: OpenBus) -> None:
    bus = open_bus()
    bus.publish(IDENTITY_TOPIC, bodies(10))
    first = bus.fetch(IDENTITY_TOPIC, "hub", 4)
    assert [d.body for d in first] == bodies(4)
    # Not acknowledged yet: the same deliveries again, oldest first.
    assert [d.body for d in bus.fetch(IDENTITY_TOPIC, "hub", 2)] == bodies(2)
    bus.ack(IDENTITY_TOPIC, "hub", first)
    rest = bus.fetch(IDENTITY_TOPIC, "hub", 100)
    assert [d.body for d in rest] == bodies(6, 4)
    # Acknowledging one delivery acknowledges every earlier one; a repeated ack changes nothing.
    bus.ack(IDENTITY_TOPIC, "hub", [rest[2]])
    bus.ack(IDENTITY_TOPIC, "hub", first)
    assert [d.body for d in bus.fetch(IDENTITY_TOPIC, "hub", 100)] == bodies(3, 7)


def test_unacknowledged_messages_come_back_after_a_restart(open_bus: OpenBus) -> None:
    before = open_bus()
    before.publish(IDENTITY_TOPIC, bodies(8))
    held = before.fetch(IDENTITY_TOPIC, "hub", 5)
    before.ack(IDENTITY_TOPIC, "hub", held[:2])
    before.close()  # the consumer goes away holding three unacknowledged deliveries

    after = open_bus()
    again = after.fetch(IDENTITY_TOPIC, "hub", 100)
    assert [d.body for d in again] == bodies(6, 2)
    after.ack(IDENTITY_TOPIC, "hub", again)
    assert after.pending(IDENTITY_TOPIC, "hub") == 0


def test_pending_counts_what_the_subscriber_has_not_acknowledged(open_bus: OpenBus) -> None:
    bus = open_bus()
    assert bus.pending(IDENTITY_TOPIC, "hub") == 0
    bus.publish(IDENTITY_TOPIC, bodies(7))
    assert bus.pending(IDENTITY_TOPIC, "hub") == 7
    held = bus.fetch(IDENTITY_TOPIC, "hub", 3)
    assert bus.pending(IDENTITY_TOPIC, "hub") == 7  # fetched is not acknowledged
    bus.ack(IDENTITY_TOPIC, "hub", held)
    assert bus.pending(IDENTITY_TOPIC, "hub") == 4
    assert bus.pending(BROADCAST_TOPIC, "sales") == 0


def test_ten_thousand_messages_in_one_publish(open_bus: OpenBus) -> None:
    bus = open_bus()
    sent = [f'{{"n": {i}, "pad": "{"x" * 200}"}}'.encode() for i in range(10_000)]
    bus.publish(IDENTITY_TOPIC, sent)
    assert bus.pending(IDENTITY_TOPIC, "hub") == 10_000
    received: list[bytes] = []
    while batch := bus.fetch(IDENTITY_TOPIC, "hub", 4000):
        received += [d.body for d in batch]
        bus.ack(IDENTITY_TOPIC, "hub", batch)
    assert received == sent
    assert bus.pending(IDENTITY_TOPIC, "hub") == 0


def test_empty_topic_fetches_nothing(open_bus: OpenBus) -> None:
    bus = open_bus()
    assert bus.fetch(IDENTITY_TOPIC, "hub", 100) == []
    assert bus.pending(IDENTITY_TOPIC, "hub") == 0
    assert bus.oldest_pending_at(IDENTITY_TOPIC, "hub") is None
    bus.publish(IDENTITY_TOPIC, [])
    bus.ack(IDENTITY_TOPIC, "hub", [])
    assert bus.fetch(IDENTITY_TOPIC, "hub", 100) == []


def test_deliveries_carry_their_publish_time(open_bus: OpenBus) -> None:
    bus = open_bus()
    start = time.time()
    bus.publish(IDENTITY_TOPIC, bodies(3))
    end = time.time()
    held = bus.fetch(IDENTITY_TOPIC, "hub", 10)
    # RabbitMQ carries milliseconds; allow for the truncation.
    assert all(start - 0.001 <= d.published_at <= end for d in held)
    oldest = bus.oldest_pending_at(IDENTITY_TOPIC, "hub")
    assert oldest is not None and start - 0.001 <= oldest <= end
    bus.ack(IDENTITY_TOPIC, "hub", held)
    assert bus.oldest_pending_at(IDENTITY_TOPIC, "hub") is None


def test_forget_removes_only_what_every_subscriber_acknowledged(tmp_path: Path) -> None:
    bus = SqliteBus(tmp_path / "bus.sqlite")
    bus.publish("t", [b"about alice", b"about bob", b"alice again"])
    for subscriber in ("a", "b"):
        bus.ack("t", subscriber, bus.fetch("t", subscriber, 1))  # both acked the first only
    assert bus.forget([b"alice"]) == 1
    assert [d.body for d in bus.fetch("t", "a", 10)] == [b"about bob", b"alice again"]
    assert b"about alice" not in (tmp_path / "bus.sqlite").read_bytes()
