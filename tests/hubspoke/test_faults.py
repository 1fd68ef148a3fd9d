"""Kill -9 of the consumer process mid-work: nothing is lost and nothing is applied twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubspoke.config import Settings
from hubspoke.events import IdentityEvent, parse_event
from hubspoke.resolve import fold
from hubspoke.simulate import Simulator
from hubspoke.stack import Stack
from spokes.databases import drop_local_databases

FIELDS = ("name", "email", "created_at", "updated_at", "deleted", "deleted_at")


def log_commits(home: Path) -> int:
    """Commits in the identity_events log so far."""
    return len(list((home / "lake" / "identity_events" / "_delta_log").glob("*.json")))


@pytest.fixture(params=["embedded", pytest.param("local", marks=pytest.mark.services)])
def home(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A home on the embedded stack, or on PostgreSQL, MariaDB and RabbitMQ (cleaned up after)."""
    settings = Settings(home=tmp_path / "home", stack=request.param)
    if request.param == "local":
        request.getfixturevalue("services")
    Stack.create(settings).close()
    yield settings.home
    if request.param == "local":
        with Stack.open(settings) as stack:
            stack.bus.delete_namespace()  # type: ignore[attr-defined]
        drop_local_databases(settings)


def test_consumer_killed_repeatedly_converges_without_loss_or_double_apply(home: Path) -> None:
    with Stack.open(Settings(home=home)) as stack:
        sim = Simulator(stack, seed=21)
        sim.seed(30)
        sim.run(1500)
        stack.relay()
        published = [
            parse_event(body) for s in stack.spokes.values() for body in s.published_events()
        ]

    env = os.environ | {"HUBSPOKE_HOME": str(home), "HUBSPOKE_BATCH_SIZE": "40"}
    rng = random.Random(5)
    kills = 0
    for _ in range(4):
        consumer = subprocess.Popen(
            [sys.executable, "-m", "hubspoke.cli", "consume"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Kill once the consumer has committed something, at a random moment of its next batches.
        commits = log_commits(home)
        deadline = time.monotonic() + 60
        while log_commits(home) == commits and consumer.poll() is None:
            assert time.monotonic() < deadline, "the consumer never committed"
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.3))
        if consumer.poll() is None:
            consumer.send_signal(signal.SIGKILL)
            kills += 1
        consumer.wait()
    consume_to_the_end(env)
    assert kills >= 1, "the consumer finished before any kill: make the backlog larger"

    assert_converged(home, published)


def consume_to_the_end(env: dict[str, str]) -> None:
    """Run `hubspoke consume` once, uninterrupted, to the end of the backlog."""
    subprocess.run(
        [sys.executable, "-m", "hubspoke.cli", "consume"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=300,
    )


def assert_converged(home: Path, published: list[IdentityEvent]) -> dict[str, int]:
    """Assert nothing was lost or applied twice and every copy agrees; return the event counts."""
    with Stack.open(Settings(home=home)) as stack:
        log = stack.lake.table("identity_events").read().to_pylist()
        final = Counter(r["event_id"] for r in log if r["disposition"] != "duplicate")
        assert set(final) == {e.event_id for e in published}, "an event was lost"
        assert max(final.values()) == 1, "an event got two final dispositions"
        status = stack.status()["events"]
        assert status["pending"] == 0 and status["parked"] == 0
        assert status["received"] == sum(
            status[k] for k in ("applied", "duplicate", "stale", "parked", "dead_lettered")
        )

        by_id = defaultdict(list)
        for e in published:
            by_id[e.entity_id].append(e)
        lake = {r["id"]: r for r in stack.lake.table("customer_identity").read().to_pylist()}
        for entity_id, events in by_id.items():
            reference, _ = fold(None, events)
            assert {k: lake[entity_id][k] for k in FIELDS} == {k: reference[k] for k in FIELDS}
        stack.deliver_broadcasts()
        for spoke in stack.spokes.values():
            for copy in spoke.identities():
                assert {k: copy[k] for k in ("name", "email", "deleted", "updated_at")} == {
                    k: lake[copy["id"]][k] for k in ("name", "email", "deleted", "updated_at")
                }
        return status


KILLER = """
import os, signal, sys
import pyarrow.parquet as pq
from hubspoke import cli, lake
from hubspoke.bus import BROADCAST_TOPIC, SqliteBus
from hubspoke.bus.rabbitmq import RabbitBus

point, at_call = sys.argv[1], int(sys.argv[2])
calls = 0


def due():
    global calls
    calls += 1
    return calls == at_call


def die():
    os.kill(os.getpid(), signal.SIGKILL)


real_append = lake.LakeTable.append


def append(self, rows, progress=None, **metadata):
    if self.name != "identity_events":
        return real_append(self, rows, progress, **metadata)
    if point == "during-log-commit" and due():
        # What a crash inside the commit leaves: data files that no log entry names.
        pq.write_table(rows, self.path / "part-00000-killed-mid-commit.parquet")
        die()
    version = real_append(self, rows, progress, **metadata)
    if point == "after-commit-before-ack" and due():
        die()
    return version


def wrap_publish(cls):
    real = cls.publish

    def publish(self, topic, bodies):
        if point == "during-broadcast" and topic == BROADCAST_TOPIC and due():
            real(self, topic, bodies[:1])  # one message of the batch's broadcast went out
            die()
        return real(self, topic, bodies)

    cls.publish = publish


lake.LakeTable.append = append
wrap_publish(SqliteBus)
wrap_publish(RabbitBus)
cli.app(["consume"])
"""


@pytest.mark.parametrize(
    "point", ["during-log-commit", "after-commit-before-ack", "during-broadcast"]
)
def test_consumer_killed_at_each_commit_point_loses_nothing_and_applies_nothing_twice(
    home: Path, point: str
) -> None:
    with Stack.open(Settings(home=home)) as stack:
        sim = Simulator(stack, seed=8)
        sim.seed(20)
        spokes = list(stack.spokes.values())
        for i in range(1100):  # two batches; the first broadcasts 1000 states in two messages
            spokes[i % 3].create_customer(f"Customer {i}", f"c{i}@example.com")
        sim.run(300)
        stack.relay()
        published = [
            parse_event(body) for s in stack.spokes.values() for body in s.published_events()
        ]
    env = os.environ | {"HUBSPOKE_HOME": str(home), "HUBSPOKE_BATCH_SIZE": "1000"}
    at_call = "1" if point == "during-broadcast" else "2"  # the 2nd batch's log commit
    killed = subprocess.run([sys.executable, "-c", KILLER, point, at_call], env=env, timeout=300)
    assert killed.returncode == -signal.SIGKILL, f"the consumer was not killed at {point}"

    consume_to_the_end(env)
    counts = assert_converged(home, published)
    if point == "after-commit-before-ack":
        assert counts["duplicate"] > 0, "the redelivered batch was not recorded as duplicates"
    else:
        assert counts["duplicate"] == 0
