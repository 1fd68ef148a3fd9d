"""The hub consumer: every event gets one disposition, duplicates and disorder change nothing."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hubspoke.bus import IDENTITY_TOPIC
from hubspoke.bus.rabbitmq import RabbitBus
from hubspoke.config import Settings
from hubspoke.events import IdentityEvent
from hubspoke.ingest import Hub
from hubspoke.simulate import Simulator
from hubspoke.stack import Stack

STATE = (
    "id",
    "name",
    "email",
    "created_at",
    "created_by",
    "updated_at",
    "updated_by",
    "deleted",
    "deleted_at",
    "last_event_id",
)


def identity_state(stack: Stack) -> dict[str, dict]:
    rows = stack.lake.table("customer_identity").read().to_pylist()
    return {r["id"]: {k: r[k] for k in STATE} for r in rows}


def recorded_history(tmp_path: Path, operations: int = 120) -> list[bytes]:
    """Identity events as spokes write them, in commit order, without delivering them."""
    with Stack.create(Settings(home=tmp_path / "source")) as source:
        sim = Simulator(source, seed=3)
        sim.seed(20)
        sim.run(operations)
        source.relay()
        bodies = [d.body for d in source.bus.fetch(IDENTITY_TOPIC, "recorder", 100_000)]
    return bodies


def ingest(tmp_path: Path, name: str, bodies: list[bytes], batch_size: int) -> Stack:
    stack = Stack.create(Settings(home=tmp_path / name, batch_size=batch_size))
    stack.bus.publish(IDENTITY_TOPIC, bodies)
    stack.hub.drain(batch_size)
    return stack


def test_duplicated_and_reordered_delivery_gives_the_in_order_state(tmp_path: Path) -> None:
    bodies = recorded_history(tmp_path)
    in_order = ingest(tmp_path, "in_order", bodies, batch_size=10_000)

    rng = random.Random(11)
    messy = bodies + rng.sample(bodies, len(bodies) // 3)
    rng.shuffle(messy)
    disordered = ingest(tmp_path, "messy", messy, batch_size=37)

    assert identity_state(disordered) == identity_state(in_order)
    status = disordered.status()["events"]
    assert status["received"] == len(messy)
    assert status["duplicate"] == len(messy) - len(bodies)
    assert status["parked"] == 0
    assert status["received"] == sum(
        status[k] for k in ("applied", "duplicate", "stale", "parked", "dead_lettered")
    )
    in_order.close()
    disordered.close()


@pytest.fixture(params=["sqlite", pytest.param("rabbitmq", marks=pytest.mark.services)])
def any_bus_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """An embedded stack whose bus is the SQLite log or RabbitMQ."""
    settings = Settings(home=tmp_path / "bus-home")
    bus = None
    if request.param == "rabbitmq":
        request.getfixturevalue("services")
        bus = RabbitBus(settings.rabbitmq_url, settings.namespace)
    with Stack.create(settings, bus=bus) as stack:
        yield stack
    if bus is not None:
        bus.delete_namespace()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (
            json.dumps(
                {
                    "event_id": "e1",
                    "event_type": "renamed",
                    "entity": "customer",
                    "entity_id": "c",
                    "source": "sales",
                    "occurred_at": "2026-01-01T00:00:00+00:00",
                    "data": {"name": "A", "email": "a@x"},
                }
            ).encode(),
            "event_type must be one of",
        ),
        (
            json.dumps(
                {
                    "event_id": "e2",
                    "event_type": "created",
                    "entity": "customer",
                    "entity_id": "c",
                    "source": "sales",
                    "occurred_at": "yesterday",
                    "data": {"name": "A", "email": "a@x"},
                }
            ).encode(),
            "occurred_at must be timestamp",
        ),
        (
            json.dumps(
                {
                    "event_id": "e3",
                    "event_type": "created",
                    "entity": "customer",
                    "entity_id": "c",
                    "source": "sales",
                    "occurred_at": "2026-01-01T00:00:00+00:00",
                    "data": {"name": "A", "email": "a@x", "credit_limit": 5},
                }
            ).encode(),
            "may not carry",
        ),
        (
            json.dumps(
                {
                    "event_id": "e4",
                    "event_type": "created",
                    "entity": "invoice",
                    "entity_id": "c",
                    "source": "sales",
                    "occurred_at": "2026-01-01T00:00:00+00:00",
                    "data": {},
                }
            ).encode(),
            "no identity contract for entity 'invoice'",
        ),
        (b'{"pad": "' + b"x" * 70_000 + b'"}', "exceeds the 65536-byte limit"),
    ],
    ids=[
        "not-json",
        "not-object",
        "unknown-type",
        "bad-timestamp",
        "smuggled-domain-field",
        "unknown-entity",
        "oversized",
    ],
)
def test_malformed_event_is_dead_lettered_with_reason_and_consumer_goes_on(
    any_bus_stack: Stack, body: bytes, reason: str
) -> None:
    stack = any_bus_stack
    customer = stack.spokes["sales"].create_customer("Ada Lovelace", "ada@example.com")
    stack.relay()
    stack.bus.publish(IDENTITY_TOPIC, [body])
    stack.spokes["sales"].update_customer(customer, name="Ada King")
    stack.relay()

    stack.hub.drain()

    dead = stack.lake.table("dead_letters").read().to_pylist()
    assert len(dead) == 1 and reason in dead[0]["reason"]
    assert dead[0]["body"].startswith(body[:100].decode())
    assert identity_state(stack)[customer]["name"] == "Ada King"
    assert stack.hub.pending() == 0


@pytest.mark.parametrize(
    ("crash_point", "redelivered"),
    [
        ("before_log_commit", False),
        ("after_log_commit_before_ack", True),
        ("before_identity_merge", False),
        ("during_broadcast", False),
    ],
)
def test_crash_anywhere_in_a_batch_is_recovered_without_loss_or_double_apply(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, crash_point: str, redelivered: bool
) -> None:
    Simulator(stack, seed=5).seed(10)
    Simulator(stack, seed=6).run(60)
    stack.relay()
    pending = stack.hub.pending()
    logged_before = stack.lake.table("identity_events").count()

    def crash(*args: object, **kwargs: object) -> None:
        raise SystemExit(f"killed at {crash_point}")

    target = {
        "before_log_commit": (stack.hub.log, "append"),
        "after_log_commit_before_ack": (stack.bus, "ack"),
        "before_identity_merge": (Hub, "_merge"),
        "during_broadcast": (Hub, "_broadcast"),
    }[crash_point]
    monkeypatch.setattr(*target, crash)
    with pytest.raises(SystemExit):
        stack.hub.drain()
    monkeypatch.undo()

    restarted = Hub(stack.lake, stack.bus, stack.home / "hub")
    restarted.drain()
    stack.deliver_broadcasts()

    status = stack.status()["events"]
    assert status["duplicate"] == (pending if redelivered else 0)
    assert status["pending"] == 0
    log = stack.lake.table("identity_events").read().to_pylist()
    final = [r["event_id"] for r in log if r["disposition"] != "duplicate"]
    assert len(final) == len(set(final)) == logged_before + pending
    lake = identity_state(stack)
    for spoke in stack.spokes.values():
        for copy in spoke.identities():
            assert {k: copy[k] for k in ("name", "email", "deleted", "updated_at")} == {
                k: lake[copy["id"]][k] for k in ("name", "email", "deleted", "updated_at")
            }


def test_follower_merges_on_its_interval_and_another_hub_recovers_what_it_held(
    stack: Stack,
) -> None:
    Simulator(stack, seed=5).seed(10)
    Simulator(stack, seed=8).run(40)
    stack.relay()
    identity, log = stack.lake.table("customer_identity"), stack.lake.table("identity_events")
    merged_before = identity.version()

    follower = Hub(stack.lake, stack.bus, stack.home / "hub", projection_interval_s=3600)
    follower.drain(settle=False)
    assert identity.version() == merged_before, "a follower merges only on its interval"
    assert (identity.progress("hub.projection") or 0) < (log.progress("hub.ingest") or 0)
    held = {k: v for states in follower._overlay.values() for k, v in states.items()}
    assert held

    Hub(stack.lake, stack.bus, stack.home / "hub").drain()  # another process takes the lock
    assert identity.progress("hub.projection") == log.progress("hub.ingest")
    lake = identity_state(stack)
    for key, state in held.items():
        assert {k: state[k] for k in STATE} == lake[key]


def test_recovery_gives_every_state_the_version_the_first_application_gave_it(
    stack: Stack,
) -> None:
    """A late event with an earlier stamp, folded in its own batch, then re-projected after a
    crash, must come out with the same version: spokes skip a state whose version they hold."""
    at = datetime(2026, 5, 1, 12, tzinfo=UTC)

    def event(kind: str, seconds: int, source: str, data: dict | None = None) -> bytes:
        return (
            IdentityEvent(
                str(uuid.uuid4()),
                kind,
                "customer",
                "c-1",
                source,
                at + timedelta(seconds=seconds),
                data,
            )
            .to_json()
            .encode()
        )

    batches = [
        [event("created", 0, "sales", {"name": "Ada", "email": "ada@example.com"})],
        [event("updated", 20, "sales", {"name": "Ada L", "email": "ada@example.com"})],
        [event("deleted", 30, "sales")],
        [event("deleted", 10, "support")],  # late, and earlier than the update
        [event("updated", 25, "billing", {"name": "Ada K", "email": "ada@example.com"})],
    ]
    uninterrupted = Hub(stack.lake, stack.bus, stack.home / "hub", projection_interval_s=3600)
    for bodies in batches:
        stack.bus.publish(IDENTITY_TOPIC, bodies)
        uninterrupted.drain(settle=False)  # logged, one batch each, none merged yet
    log = stack.lake.table("identity_events").read().to_pylist()
    versions = [r["hub_version"] for r in sorted(log, key=lambda r: r["batch"])]

    Hub(stack.lake, stack.bus, stack.home / "hub").drain()  # recovers: re-projects the log
    [row] = stack.lake.table("customer_identity").read().to_pylist()
    assert row["version"] == max(v for v in versions if v is not None)
    assert versions == sorted(versions), "versions are given in the order events arrive"
