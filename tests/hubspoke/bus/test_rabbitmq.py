"""What only RabbitMQ does: confirms, dead letters, redelivery after kill -9, clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from hubspoke.bus import BROADCAST_TOPIC, IDENTITY_TOPIC, BusError, BusUnavailable
from hubspoke.bus.rabbitmq import SUBSCRIBERS, RabbitBus
from hubspoke.ingest import HUB_SUBSCRIBER
from spokes import SPOKE_KINDS

pytestmark = pytest.mark.services
OpenRabbit = Callable[..., RabbitBus]


@contextmanager
def raw_channel(url: str) -> Iterator[BlockingChannel]:
    """A plain pika channel, to look at the broker from outside the bus."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        yield connection.channel()
    finally:
        connection.close()


def depth(channel: BlockingChannel, queue: str) -> int:
    return channel.queue_declare(queue, passive=True).method.message_count


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_known_subscribers_are_the_hub_and_the_demo_spokes() -> None:
    assert set(SUBSCRIBERS[IDENTITY_TOPIC]) == {HUB_SUBSCRIBER}
    assert set(SUBSCRIBERS[BROADCAST_TOPIC]) == set(SPOKE_KINDS)


def test_publish_returns_once_the_broker_holds_every_message(
    rabbit: OpenRabbit, rabbitmq_url: str
) -> None:
    bus = rabbit()
    bus.publish(BROADCAST_TOPIC, [b"state %d" % i for i in range(1000)])
    # Right after publish, from another connection: every spoke's queue already holds all.
    with raw_channel(rabbitmq_url) as channel:
        for spoke in SUBSCRIBERS[BROADCAST_TOPIC]:
            assert depth(channel, bus.queue_name(BROADCAST_TOPIC, spoke)) == 1000


def test_topology_is_durable_quorum_queues_named_after_the_namespace(
    rabbit: OpenRabbit, namespace: str, rabbitmqctl: Callable[..., str]
) -> None:
    bus = rabbit()
    bus.publish(IDENTITY_TOPIC, [b"e"])
    bus.publish(BROADCAST_TOPIC, [b"s"])
    queues = {
        q["name"]: q
        for q in json.loads(
            rabbitmqctl(
                "list_queues", "name", "type", "durable", "arguments", "--formatter", "json"
            )
        )
        if q["name"].startswith(namespace + ".")
    }
    expected = {
        f"{namespace}.identity.events.hub",
        f"{namespace}.identity.broadcast.sales",
        f"{namespace}.identity.broadcast.support",
        f"{namespace}.identity.broadcast.billing",
        f"{namespace}.dead-letters",
    }
    assert set(queues) == expected
    assert all(q["type"] == "quorum" and q["durable"] for q in queues.values())
    hub = {
        name: value for name, _, value in queues[f"{namespace}.identity.events.hub"]["arguments"]
    }
    assert hub == {
        "x-queue-type": "quorum",
        "x-delivery-limit": 20,
        "x-dead-letter-exchange": f"{namespace}.dead",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    exchanges = [
        line.split("\t")
        for line in rabbitmqctl("list_exchanges", "name", "type", "durable").splitlines()
        if line.startswith(namespace + ".")
    ]
    assert sorted(exchanges) == [
        [f"{namespace}.dead", "fanout", "true"],
        [f"{namespace}.topics", "topic", "true"],
    ]

    bus.delete_namespace()
    assert namespace not in rabbitmqctl("list_queues", "name")
    assert namespace not in rabbitmqctl("list_exchanges", "name")


def test_rejected_message_lands_in_the_dead_letter_queue(
    rabbit: OpenRabbit, rabbitmq_url: str
) -> None:
    bus = rabbit()
    bus.publish(IDENTITY_TOPIC, [b"good 1", b"poison", b"good 2"])
    queue = bus.queue_name(IDENTITY_TOPIC, "hub")
    with raw_channel(rabbitmq_url) as channel:
        channel.basic_ack(channel.basic_get(queue)[0].delivery_tag)
        method, _, body = channel.basic_get(queue)
        assert body == b"poison"
        channel.basic_reject(method.delivery_tag, requeue=False)
        wait_for(lambda: bus.dead_letter_count() == 1)
        method, properties, body = channel.basic_get(bus.dead_letter_queue)
        assert body == b"poison"
        [death] = properties.headers["x-death"]
        assert (death["queue"], death["reason"]) == (queue, "rejected")
        channel.basic_ack(method.delivery_tag)
    assert [d.body for d in bus.fetch(IDENTITY_TOPIC, "hub", 10)] == [b"good 2"]


def test_message_never_acknowledged_is_dead_lettered_after_the_delivery_limit(
    rabbit: OpenRabbit,
) -> None:
    publisher = rabbit(delivery_limit=2)
    publisher.publish(IDENTITY_TOPIC, [b"crashes every consumer"])
    deliveries = 0
    for _ in range(5):
        consumer = rabbit(delivery_limit=2)
        got = consumer.fetch(IDENTITY_TOPIC, "hub", 10)
        consumer.close()  # the consumer dies before acknowledging, every time
        if not got:
            break
        deliveries += 1
    assert deliveries == 3  # the first delivery and two redeliveries
    wait_for(lambda: publisher.dead_letter_count() == 1)
    assert publisher.pending(IDENTITY_TOPIC, "hub") == 0


def test_deliveries_of_a_killed_consumer_go_to_the_next_one(
    rabbit: OpenRabbit, rabbitmq_url: str, namespace: str
) -> None:
    bus = rabbit()
    bus.publish(IDENTITY_TOPIC, [b"%03d" % i for i in range(50)])
    script = textwrap.dedent(f"""
        import sys, time
        from hubspoke.bus.rabbitmq import RabbitBus
        bus = RabbitBus({rabbitmq_url!r}, {namespace!r})
        held = bus.fetch("identity.events", "hub", 30)
        bus.ack("identity.events", "hub", held[:10])
        print(len(held), flush=True)
        time.sleep(120)
    """)
    consumer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert consumer.stdout is not None
        assert consumer.stdout.readline().strip() == "30"
        assert bus.pending(IDENTITY_TOPIC, "hub") == 20  # the rest is held by the consumer
    finally:
        os.kill(consumer.pid, signal.SIGKILL)
        consumer.wait()
    wait_for(lambda: bus.pending(IDENTITY_TOPIC, "hub") == 40)
    again = bus.fetch(IDENTITY_TOPIC, "hub", 100)
    assert [d.body for d in again] == [b"%03d" % i for i in range(10, 50)]


def test_ack_after_the_connection_was_lost_says_they_come_again(rabbit: OpenRabbit) -> None:
    bus = rabbit()
    bus.publish(IDENTITY_TOPIC, [b"a", b"b"])
    held = bus.fetch(IDENTITY_TOPIC, "hub", 10)
    bus.close()
    with pytest.raises(BusUnavailable, match="hands them out again"):
        bus.ack(IDENTITY_TOPIC, "hub", held)
    assert [d.body for d in bus.fetch(IDENTITY_TOPIC, "hub", 10)] == [b"a", b"b"]


def test_connection_the_broker_closed_is_reopened_and_its_deliveries_come_again(
    rabbit: OpenRabbit, namespace: str, rabbitmqctl: Callable[..., str]
) -> None:
    bus = rabbit()
    bus.publish(IDENTITY_TOPIC, [b"a", b"b"])
    held = bus.fetch(IDENTITY_TOPIC, "hub", 10)
    closed = 0
    for line in rabbitmqctl("list_connections", "pid", "client_properties").splitlines():
        if namespace in line:  # the connection name carries the namespace
            rabbitmqctl("close_connection", line.split("\t")[0], "test: the broker closes it")
            closed += 1
    assert closed == 1
    # Whether the bus notices the close before sending the ack or while sending it, the ack
    # fails as unavailable, and the next call reconnects.
    with pytest.raises(BusUnavailable, match=r"hands them out again|CONNECTION_FORCED"):
        bus.ack(IDENTITY_TOPIC, "hub", held)
    assert [d.body for d in bus.fetch(IDENTITY_TOPIC, "hub", 10)] == [b"a", b"b"]


def test_topic_without_subscribers_refuses_the_publish(rabbit: OpenRabbit) -> None:
    with pytest.raises(BusError, match="reached no queue"):
        rabbit().publish("audit.events", [b"nobody listens"])


@pytest.mark.parametrize(
    "operation",
    [
        lambda bus: bus.publish(IDENTITY_TOPIC, [b"x"]),
        lambda bus: bus.fetch(IDENTITY_TOPIC, "hub", 10),
        lambda bus: bus.pending(IDENTITY_TOPIC, "hub"),
    ],
    ids=["publish", "fetch", "pending"],
)
def test_broker_not_answering_is_one_clear_error_without_the_password(
    namespace: str, operation: Callable[[RabbitBus], object]
) -> None:
    bus = RabbitBus("amqp://hubspoke:s3cret@127.0.0.1:1/%2F", namespace)  # nothing listens on 1
    with pytest.raises(BusUnavailable) as caught:
        operation(bus)
    message = str(caught.value)
    assert isinstance(caught.value, ConnectionError)
    assert (
        "no RabbitMQ answering at amqp://hubspoke@127.0.0.1:1/%2F (connection refused)" in message
    )
    assert "s3cret" not in message
