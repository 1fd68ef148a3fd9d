"""Property: any delivery (reordered, duplicated, in random batches, with the hub crashing at
random points and restarting) leaves the lake equal to a simple reference model."""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubspoke.bus import IDENTITY_TOPIC, EventBus, SqliteBus
from hubspoke.bus.rabbitmq import RabbitBus
from hubspoke.config import Settings
from hubspoke.events import IdentityEvent
from hubspoke.ingest import Hub
from hubspoke.resolve import fold
from hubspoke.stack import Stack

T0 = datetime(2026, 5, 1, tzinfo=UTC)
FIELDS = (
    "name",
    "email",
    "created_at",
    "created_by",
    "updated_at",
    "updated_by",
    "deleted",
    "deleted_at",
)
CRASH_POINTS = [None, "log", "merge", "ack", "broadcast"]


@st.composite
def histories(draw: st.DrawFn) -> list[IdentityEvent]:
    """Creates of a few customers in several spokes, then updates and deletes from any spoke."""
    customers = [str(uuid.UUID(int=i + 1)) for i in range(draw(st.integers(1, 4)))]
    sources = ["sales", "support", "billing"]
    events = [
        IdentityEvent(
            str(uuid.uuid4()),
            "created",
            "customer",
            c,
            draw(st.sampled_from(sources)),
            T0,
            {"name": "First", "email": "first@example.com"},
        )
        for c in customers
    ]
    for kind, customer, source, second, name in draw(
        st.lists(
            st.tuples(
                st.sampled_from(["updated", "updated", "updated", "deleted"]),
                st.sampled_from(customers),
                st.sampled_from(sources),
                st.integers(-5, 60),
                st.sampled_from(["Ada", "Bo", "Cy"]),
            ),
            max_size=14,
        )
    ):
        data = None if kind == "deleted" else {"name": name, "email": f"{name}@example.com"}
        events.append(
            IdentityEvent(
                str(uuid.uuid4()),
                kind,
                "customer",
                customer,
                source,
                T0 + timedelta(seconds=second),
                data,
            )
        )
    return events


class Crash(Exception):
    """The hub process dies here."""


BusFactory = Callable[[Path], EventBus]


def _sqlite(home: Path) -> EventBus:
    return SqliteBus(home / "bus" / "events.sqlite")


@pytest.fixture(params=["sqlite", pytest.param("rabbitmq", marks=pytest.mark.services)])
def open_bus(request: pytest.FixtureRequest) -> Iterator[BusFactory]:
    """Opens the bus of a home as a new process would (unacknowledged deliveries come back)."""
    if request.param == "sqlite":
        yield _sqlite
        return
    request.getfixturevalue("services")
    opened: list[RabbitBus] = []

    def rabbit(home: Path) -> EventBus:
        settings = Settings(home=home)
        opened.append(RabbitBus(settings.rabbitmq_url, settings.namespace))
        return opened[-1]

    yield rabbit
    for bus in opened:
        bus.delete_namespace()


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(events=histories(), data=st.data())
def test_lake_converges_to_the_reference_whatever_the_delivery(
    open_bus: BusFactory, events: list[IdentityEvent], data: st.DataObject
) -> None:
    delivery = data.draw(
        st.permutations(events + data.draw(st.lists(st.sampled_from(events), max_size=6)))
    )
    chunks = data.draw(st.lists(st.integers(1, 8), min_size=1, max_size=6))
    with (
        tempfile.TemporaryDirectory() as tmp,
        Stack.create(Settings(home=Path(tmp)), bus=open_bus(Path(tmp))) as stack,
    ):
        start = 0
        for size in [*chunks, len(delivery)]:
            part = delivery[start : start + size]
            start += size
            if not part:
                continue
            stack.bus.publish(IDENTITY_TOPIC, [e.to_json().encode() for e in part])
            # A new hub process: its own bus connection, closed when it dies or stops.
            bus = open_bus(stack.home)
            hub = Hub(stack.lake, bus, stack.home / "hub", projection_interval_s=0)
            crash_at = data.draw(st.sampled_from(CRASH_POINTS))
            if crash_at:
                _arm(hub, bus, crash_at)
            with contextlib.suppress(Crash):
                hub.drain(batch_size=data.draw(st.integers(1, 10)))
            bus.close()
        last = open_bus(stack.home)
        Hub(stack.lake, last, stack.home / "hub").drain()  # the last restart finishes
        last.close()
        stack.deliver_broadcasts()

        by_customer = defaultdict(list)
        for e in events:
            by_customer[e.entity_id].append(e)
        lake = {r["id"]: r for r in stack.lake.table("customer_identity").read().to_pylist()}
        assert set(lake) == set(by_customer)
        for customer, history in by_customer.items():
            reference, _ = fold(None, history)
            assert {k: lake[customer][k] for k in FIELDS} == {k: reference[k] for k in FIELDS}

        log = stack.lake.table("identity_events").read().to_pylist()
        final = [r["event_id"] for r in log if r["disposition"] != "duplicate"]
        assert sorted(final) == sorted(e.event_id for e in events), "lost or doubly applied"
        status = stack.status()["events"]
        assert status["received"] == sum(
            status[k] for k in ("applied", "duplicate", "stale", "parked", "dead_lettered")
        )
        assert status["parked"] == 0 and status["pending"] == 0
        for spoke in stack.spokes.values():  # broadcasts converge every spoke's copy too
            for copy in spoke.identities():
                assert (copy["name"], copy["deleted"]) == (
                    lake[copy["id"]]["name"],
                    lake[copy["id"]]["deleted"],
                )


def _arm(hub: Hub, bus: EventBus, point: str) -> None:
    """Make the hub die at `point` of its first batch."""

    def die(*args: object, **kwargs: object) -> None:
        raise Crash(point)

    if point == "log":
        hub.log.append = die  # type: ignore[method-assign]
    elif point == "merge":
        hub._merge = die  # type: ignore[method-assign]
    elif point == "ack":
        hub.bus = _DyingAck(bus, die)  # type: ignore[assignment]
    else:
        hub._broadcast = die  # type: ignore[method-assign]


class _DyingAck:
    """The bus, except that acknowledging kills the process."""

    def __init__(self, bus: object, die: object) -> None:
        self._bus, self.ack = bus, die

    def __getattr__(self, name: str) -> object:
        return getattr(self._bus, name)
