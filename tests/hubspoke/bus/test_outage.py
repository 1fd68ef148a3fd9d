"""RabbitMQ stopped for a while under load: spokes keep writing, nothing is lost, order holds."""

from __future__ import annotations

import json
import random
import socket
import sqlite3
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from hubspoke.bus import BROADCAST_TOPIC, IDENTITY_TOPIC, BusUnavailable
from hubspoke.bus.rabbitmq import SUBSCRIBERS, RabbitBus
from hubspoke.config import Settings
from hubspoke.follow import BUS_RETRY_FIRST_S, BUS_RETRY_MAX_S
from hubspoke.ingest import HUB_SUBSCRIBER
from hubspoke.stack import Stack
from spokes import open_spokes

pytestmark = [pytest.mark.services, pytest.mark.slow]
OUTAGE_AFTER_S = 1.5
OUTAGE_S = 4.0
WRITING_AFTER_OUTAGE_S = 1.5
FIELDS = ("name", "email", "deleted", "updated_at")


def answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port or 5672), timeout=1).close()
    except OSError:
        return False
    return True


@contextmanager
def broker_outage(
    rabbitmqctl: Callable[..., str], url: str, timeline: dict[str, float]
) -> Iterator[threading.Thread]:
    """Stop the broker's application after a while, start it again; always restored on exit."""

    def outage() -> None:
        time.sleep(OUTAGE_AFTER_S)
        timeline["stopped"] = time.monotonic()
        rabbitmqctl("stop_app")
        time.sleep(OUTAGE_S)
        rabbitmqctl("start_app")
        timeline["started"] = time.monotonic()

    thread = threading.Thread(target=outage, name="outage")
    thread.start()
    try:
        yield thread
    finally:
        thread.join()
        if not answers(url):
            rabbitmqctl("start_app")
        deadline = time.monotonic() + 60
        while not answers(url) and time.monotonic() < deadline:
            time.sleep(0.2)


def write_customers(
    settings: Settings, stop: threading.Event, writes: list[float], errors: list[BaseException]
) -> None:
    """Spoke traffic through the write paths; each customer is changed only by its own spoke,
    so its events have one source order (its spoke's outbox order)."""
    try:
        _write_customers(settings, stop, writes)
    except BaseException as exc:  # a thread's exception would not fail the test by itself
        errors.append(exc)


def _write_customers(settings: Settings, stop: threading.Event, writes: list[float]) -> None:
    spokes = open_spokes(settings)  # this thread's own connections to the spoke databases
    rng = random.Random(11)
    live: dict[str, list[str]] = {name: [] for name in spokes}
    try:
        while not stop.is_set():
            name = rng.choice(sorted(spokes))
            spoke, mine = spokes[name], live[name]
            roll = rng.random()
            n = len(writes)
            if not mine or roll < 0.35:
                mine.append(spoke.create_customer(f"Customer {n}", f"c{n}@example.com"))
            elif roll < 0.95:
                spoke.update_customer(rng.choice(mine), name=f"Renamed {n}", email=f"r{n}@ex.com")
            else:
                spoke.delete_customer(mine.pop(rng.randrange(len(mine))))
            writes.append(time.monotonic())
            time.sleep(0.004)
    finally:
        for spoke in spokes.values():
            spoke.close()


def outbox_events(home: Path, spoke: str) -> list[dict[str, str]]:
    with sqlite3.connect(home / "spokes" / f"{spoke}.sqlite") as con:
        rows = con.execute("SELECT body, published_at FROM hubspoke_outbox ORDER BY seq").fetchall()
    assert all(published for _, published in rows), f"{spoke}: an outbox event was not relayed"
    return [json.loads(body) for body, _ in rows]


def test_broker_outage_under_load_loses_nothing_and_keeps_each_customers_order(
    tmp_path: Path, rabbitmq_url: str, namespace: str, rabbitmqctl: Callable[..., str]
) -> None:
    settings = Settings(home=tmp_path / "home", batch_size=200)
    buses: list[RabbitBus] = []

    # An auditor queue, bound from the start, records the order the bus delivered in.
    subscribers = {**SUBSCRIBERS, IDENTITY_TOPIC: (HUB_SUBSCRIBER, "auditor")}

    def rabbit() -> RabbitBus:
        buses.append(RabbitBus(rabbitmq_url, namespace, subscribers=subscribers))
        return buses[-1]

    stack = Stack.create(settings, bus=rabbit())
    timeline: dict[str, float] = {}
    writes: list[float] = []
    write_errors: list[BaseException] = []
    failures: list[str] = []
    stop_writing = threading.Event()
    writer = threading.Thread(
        target=write_customers, args=(settings, stop_writing, writes, write_errors)
    )
    started = time.monotonic()
    try:
        with broker_outage(rabbitmqctl, rabbitmq_url, timeline) as outage:
            writer.start()
            backoff = BUS_RETRY_FIRST_S
            while True:
                # The loop of `hubspoke consume --follow`: on BusUnavailable, pause with backoff
                # and reopen the stack (new connection, hub state rebuilt from the lake).
                try:
                    round_ = stack.propagate()
                except BusUnavailable as exc:
                    failures.append(str(exc))
                    stack.close()
                    time.sleep(backoff)
                    backoff = min(backoff * 2, BUS_RETRY_MAX_S)
                    stack = Stack(settings, bus=rabbit())
                    continue
                backoff = BUS_RETRY_FIRST_S
                if (
                    not outage.is_alive()
                    and time.monotonic() - timeline["started"] > WRITING_AFTER_OUTAGE_S
                ):
                    stop_writing.set()
                    writer.join()
                if (
                    stop_writing.is_set()
                    and not round_["relayed"]
                    and not (round_["ingest"].received or any(round_["broadcast_applied"].values()))
                ):
                    break
                time.sleep(0.1)
        elapsed = time.monotonic() - started

        # The outage happened while spokes wrote (never failing), and the relay and hub failed
        # cleanly.
        assert write_errors == []
        during = [t for t in writes if timeline["stopped"] <= t <= timeline["started"]]
        assert failures and len(during) > 50, (len(failures), len(during))
        assert all(
            "RabbitMQ" in f and ("no RabbitMQ answering" in f or "lost the connection" in f)
            for f in failures
        ), failures

        # Nothing is lost: every outbox event was relayed and has exactly one final disposition.
        sources = {name: outbox_events(settings.home, name) for name in stack.spokes}
        published = {e["event_id"]: e for events in sources.values() for e in events}
        log = stack.lake.table("identity_events").read().to_pylist()
        final = Counter(r["event_id"] for r in log if r["disposition"] != "duplicate")
        assert set(final) == set(published) and max(final.values()) == 1
        assert stack.lake.table("dead_letters").count() == 0
        assert stack.lake.table("parked_identity_events").count() == 0
        assert stack.bus.pending(IDENTITY_TOPIC, HUB_SUBSCRIBER) == 0
        assert all(stack.bus.pending(BROADCAST_TOPIC, name) == 0 for name in stack.spokes)

        # Order is kept: the bus delivered each spoke's events in outbox order (a batch that
        # failed part way is sent again: only first copies count), and the hub received each
        # customer's events in that order (an overtaken event would be stale or parked).
        delivered = [d.body for d in stack.bus.fetch(IDENTITY_TOPIC, "auditor", 1_000_000)]
        first_copies = list(dict.fromkeys(json.loads(b)["event_id"] for b in delivered))
        for name, events in sources.items():
            ids = {e["event_id"] for e in events}
            assert [i for i in first_copies if i in ids] == [e["event_id"] for e in events], name
        batch_of = {r["event_id"]: r["batch"] for r in log if r["disposition"] == "applied"}
        assert set(batch_of) == set(published)
        by_customer: dict[str, list[str]] = defaultdict(list)
        for events in sources.values():
            for e in events:
                by_customer[e["entity_id"]].append(e["event_id"])
        for customer, event_ids in by_customer.items():
            batches = [batch_of[i] for i in event_ids]
            assert batches == sorted(batches), customer

        # The lake and every spoke end with the same identities.
        lake = {r["id"]: r for r in stack.lake.table("customer_identity").read().to_pylist()}
        assert set(lake) == set(by_customer)
        for spoke in stack.spokes.values():
            copies = spoke.identities()
            assert {c["id"] for c in copies} == set(lake)
            for copy in copies:
                assert {k: copy[k] for k in FIELDS} == {k: lake[copy["id"]][k] for k in FIELDS}
        assert elapsed < 60, f"the outage test took {elapsed:.0f}s"
    finally:
        stop_writing.set()
        if writer.is_alive():
            writer.join()
        stack.close()
        buses[-1].delete_namespace()
