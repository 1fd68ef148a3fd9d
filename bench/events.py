"""Identity event ingestion at scale: throughput, freshness, and a naive baseline, in one run.

    python -m bench.events [--scale 1000000] [--events 60000] [--json bench/results/events.json]

On `--scale` existing customers: hub throughput through the embedded bus and through RabbitMQ;
a baseline hub that commits every event on its own; freshness under a steady background load
(spoke commit -> recorded in the lake log, -> merged into customer_identity, -> visible through
GraphQL) with p50/p95/p99; the most files customer_identity held meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from hubspoke.bus import IDENTITY_TOPIC, EventBus, SqliteBus
from hubspoke.config import Settings
from hubspoke.events import IdentityEvent
from hubspoke.ingest import Hub
from hubspoke.stack import Stack

console = Console()


def build_home(home: Path, scale: int) -> tuple[Stack, list[str]]:
    """A stack whose customer_identity already holds `scale` customers (written in bulk)."""
    stack = Stack.create(Settings(home=home))
    ids = [str(uuid.uuid4()) for _ in range(scale)]
    at = datetime(2026, 1, 1, tzinfo=UTC)
    contract = stack.catalog.identity("customer")
    n = len(ids)
    rows = pa.table(
        {
            "id": ids,
            "name": ["Seed"] * n,
            "email": ["seed@example.com"] * n,
            "created_at": [at] * n,
            "created_by": ["sales"] * n,
            "updated_at": [at] * n,
            "updated_by": ["sales"] * n,
            "last_event_id": ids,
            "version": [1] * n,
            "deleted": [False] * n,
            "deleted_at": pa.nulls(n, pa.timestamp("us", tz="UTC")),
        }
    )
    stack.lake.table(contract).append(rows)
    return stack, ids


def update_events(ids: list[str], count: int, rng: random.Random) -> list[IdentityEvent]:
    """Identity updates of random existing customers, stamped now (their source commit time)."""
    return [
        IdentityEvent(
            str(uuid.uuid4()),
            "updated",
            "customer",
            rng.choice(ids),
            rng.choice(["sales", "support", "billing"]),
            datetime.now(UTC),
            {"name": f"Name {i}", "email": f"n{i}@example.com"},
        )
        for i in range(count)
    ]


def throughput(stack: Stack, bus: EventBus, ids: list[str], count: int, batch: int) -> float:
    """Events per second the hub ingests (log, merge, broadcast) from a published backlog."""
    bus.publish(
        IDENTITY_TOPIC, [e.to_json().encode() for e in update_events(ids, count, random.Random(1))]
    )
    hub = Hub(stack.lake, bus, stack.home / f"hub-{uuid.uuid4().hex[:6]}", projection_interval_s=5)
    started = time.perf_counter()
    report = hub.drain(batch)
    elapsed = time.perf_counter() - started
    assert report.received == count, report
    return count / elapsed


@dataclass
class Freshness:
    """Seconds from a change's source commit to each point where it can be seen."""

    logged: list[float] = field(default_factory=list)
    merged: list[float] = field(default_factory=list)
    graphql: list[float] = field(default_factory=list)
    identity_files_max: int = 0


def freshness(stack: Stack, ids: list[str], rate: float, seconds: float) -> Freshness:
    """Steady background load through the embedded bus, a running consumer, and probes."""
    result = Freshness()
    stop = threading.Event()
    markers: dict[str, tuple[str, float]] = {}  # event id -> (customer id, source commit time)
    lock = threading.Lock()
    rng = random.Random(2)

    def produce() -> None:
        bus = SqliteBus(stack.home / "bus" / "events.sqlite")
        started, sent = time.monotonic(), 0
        while not stop.is_set():
            due = int((time.monotonic() - started) * rate) - sent
            if due > 0:
                events = update_events(ids, due, rng)
                bus.publish(IDENTITY_TOPIC, [e.to_json().encode() for e in events])
                with lock:
                    for e in events[:: max(1, int(rate // 4))]:  # about four probes a second
                        markers[e.event_id] = (e.entity_id, e.occurred_at.timestamp())
                sent += due
            time.sleep(0.01)

    # The consumer runs as it does in production: `hubspoke consume --follow`, its own process.
    consumer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hubspoke.cli",
            "consume",
            "--follow",
            "--interval",
            "0.05",
            "--home",
            str(stack.home),
        ],
        stdout=subprocess.DEVNULL,
    )
    threads = [threading.Thread(target=produce, daemon=True)]
    for t in threads:
        t.start()
    log = stack.lake.table("identity_events")
    identity = stack.lake.table("customer_identity")
    from hubspoke_graphql.app import create_app

    app = create_app(stack.settings)
    seen_logged: set[str] = set()
    seen_merged: set[str] = set()
    seen_graphql: set[str] = set()
    deadline = time.monotonic() + seconds
    query = "query($id: ID!) { customer(id: $id) { lastEventId } }"

    async def probe_graphql(
        client: httpx.AsyncClient, waiting: dict[str, tuple[str, float]]
    ) -> None:
        for event_id, (customer, at) in waiting.items():
            answer = await client.post(
                "/graphql", json={"query": query, "variables": {"id": customer}}
            )
            found = (answer.json().get("data") or {}).get("customer") or {}
            if found.get("lastEventId") == event_id:
                seen_graphql.add(event_id)
                result.graphql.append(time.time() - at)

    async def probes() -> None:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench"
        ) as client:
            while time.monotonic() < deadline + 15:
                with lock:
                    pending = dict(markers)
                now = time.time()
                waiting = {k: v for k, v in pending.items() if k not in seen_logged}
                if waiting:
                    hits = log.read(
                        columns=["event_id"], where=pl.col("event_id").is_in(list(waiting))
                    )
                    for event_id in hits["event_id"].to_pylist():
                        seen_logged.add(event_id)
                        result.logged.append(now - waiting[event_id][1])
                waiting = {k: v for k, v in pending.items() if k not in seen_merged}
                if waiting:
                    hits = identity.read(
                        columns=["last_event_id"],
                        where=pl.col("last_event_id").is_in(list(waiting)),
                    )
                    for event_id in hits["last_event_id"].to_pylist():
                        seen_merged.add(event_id)
                        result.merged.append(now - waiting[event_id][1])
                await probe_graphql(
                    client, {k: v for k, v in pending.items() if k not in seen_graphql}
                )
                result.identity_files_max = max(
                    result.identity_files_max, len(identity.delta().file_uris())
                )
                if time.monotonic() > deadline:
                    stop.set()
                    if len(seen_merged) == len(pending) and len(seen_graphql) == len(pending):
                        break
                await asyncio.sleep(0.1)

    try:
        asyncio.run(probes())
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        consumer.terminate()
        consumer.wait(timeout=60)
    return result


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of `values`; NaN when empty."""
    if not values:
        return float("nan")
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]
        if len(values) > 1
        else values[0]
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print a table, write JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.events", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--scale", type=int, default=1_000_000, help="existing customers (default 1000000)"
    )
    parser.add_argument(
        "--events", type=int, default=60_000, help="backlog for the throughput runs"
    )
    parser.add_argument("--rate", type=float, default=3000, help="background load, events/s")
    parser.add_argument("--seconds", type=float, default=20, help="duration of the freshness run")
    parser.add_argument(
        "--rabbitmq",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure through RabbitMQ on 127.0.0.1:5672",
    )
    parser.add_argument("--json", type=Path, default=Path("bench/results/events.json"))
    args = parser.parse_args(argv)
    if args.scale < 1 or args.events < 1:
        parser.error("--scale and --events must be positive")

    out: dict[str, Any] = {"scale": args.scale}
    with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp:
        with console.status(f"building {args.scale:,} customers"):
            stack, ids = build_home(Path(tmp) / "home", args.scale)
        batch = stack.settings.batch_size
        with console.status("embedded bus throughput"):
            out["embedded_events_per_s"] = throughput(
                stack, SqliteBus(Path(tmp) / "throughput.sqlite"), ids, args.events, batch
            )
        if args.rabbitmq:
            from hubspoke.bus.rabbitmq import RabbitBus

            bus = RabbitBus(stack.settings.rabbitmq_url, namespace=f"bench_{uuid.uuid4().hex[:8]}")
            try:
                with console.status("RabbitMQ throughput"):
                    out["rabbitmq_events_per_s"] = throughput(stack, bus, ids, args.events, batch)
            finally:
                bus.delete_namespace()
                bus.close()
        with console.status("naive baseline (one commit per event)"):
            out["baseline_events_per_s"] = throughput(
                stack, SqliteBus(Path(tmp) / "baseline.sqlite"), ids, 10, batch=1
            )
        with console.status(f"freshness under {args.rate:g} events/s for {args.seconds:g}s"):
            fresh = freshness(stack, ids, args.rate, args.seconds)
        stack.close()
    for name, values in (
        ("lake_logged", fresh.logged),
        ("lake_merged", fresh.merged),
        ("graphql_visible", fresh.graphql),
    ):
        for q in (50, 95, 99):
            out[f"{name}_p{q}_s"] = round(percentile(values, q), 3)
        out[f"{name}_samples"] = len(values)
    out["identity_files_max"] = fresh.identity_files_max
    out["embedded_vs_baseline"] = round(
        out["embedded_events_per_s"] / out["baseline_events_per_s"], 1
    )
    for key in ("embedded_events_per_s", "rabbitmq_events_per_s", "baseline_events_per_s"):
        if key in out:
            out[key] = round(out[key], 1)

    table = Table(title=f"identity events on {args.scale:,} customers")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    targets = {
        "embedded_events_per_s": ">= 10000",
        "rabbitmq_events_per_s": ">= 5000",
        "graphql_visible_p95_s": "<= 1",
        "lake_merged_p95_s": "<= 10",
        "identity_files_max": "bounded",
    }
    for key, value in out.items():
        table.add_row(key, str(value), targets.get(key, ""))
    console.print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2))
    console.print(f"wrote {args.json}")
    return out


if __name__ == "__main__":
    main()
