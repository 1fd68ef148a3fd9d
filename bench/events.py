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
import socket
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
from hubspoke_graphql.access import create_keys_file, key_of_role
from hubspoke_graphql.limits import MAX_ALIASES
from rich.console import Console
from rich.table import Table

from bench.report import write_json
from hubspoke.bus import BROADCAST_TOPIC, IDENTITY_TOPIC, EventBus, SqliteBus
from hubspoke.config import Settings
from hubspoke.events import IdentityEvent
from hubspoke.ingest import INGEST_APP, Hub
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
    """Steady background load, the consumer and the API in their own processes, and probes.

    Probes change customers the background load never touches, so "visible" means exactly
    "this event's state is served". Visibility is polled over HTTP; when each probe was logged
    and merged is read afterwards from the commit timestamps of the two Delta tables, so
    measuring costs the system under test nothing.
    """
    result = Freshness()
    rng = random.Random(2)
    probe_ids = ids[: len(ids) // 100 or 1]
    background_ids = ids[len(probe_ids) :] or ids
    stop = threading.Event()
    markers: dict[str, tuple[str, float]] = {}  # event id -> (customer id, source commit time)
    lock = threading.Lock()

    def produce() -> None:
        bus = SqliteBus(stack.home / "bus" / "events.sqlite")
        started, sent = time.monotonic(), 0
        probe_every = max(1, int(rate // 4))  # about four probes a second
        while not stop.is_set():
            due = int((time.monotonic() - started) * rate) - sent
            if due > 0:
                events = update_events(background_ids, due, rng)
                probes = update_events(
                    probe_ids, (sent + due) // probe_every - sent // probe_every, rng
                )
                bus.publish(IDENTITY_TOPIC, [e.to_json().encode() for e in events + probes])
                with lock:
                    markers.update(
                        {e.event_id: (e.entity_id, e.occurred_at.timestamp()) for e in probes}
                    )
                sent += due
            time.sleep(0.01)

    port = _free_port()
    hubspoke = [sys.executable, "-m", "hubspoke.cli"]
    home = ["--home", str(stack.home)]
    create_keys_file(stack.settings.keys_file)
    # Both run as in production: `hubspoke consume --follow` and `hubspoke serve`.
    processes = [
        subprocess.Popen(
            [*hubspoke, "serve", "--port", str(port), *home],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [*hubspoke, "consume", "--follow", "--interval", "0.05", *home],
            stdout=subprocess.DEVNULL,
        ),
    ]
    identity = stack.lake.table("customer_identity")
    visible_at: dict[str, float] = {}

    async def probes(client: httpx.AsyncClient) -> None:
        deadline = time.monotonic() + seconds
        files_checked = 0.0
        while time.monotonic() < deadline + 15:
            with lock:
                waiting = {k: v for k, v in markers.items() if k not in visible_at}
            # One request asks for every waiting probe (aliased, within the alias limit), so
            # polling costs the API a few requests a round, not one per probe.
            rounds = [
                list(waiting.items())[i : i + MAX_ALIASES]
                for i in range(0, len(waiting), MAX_ALIASES)
            ]
            answers = await asyncio.gather(
                *(client.post("/graphql", json={"query": _probe_query(chunk)}) for chunk in rounds)
            )
            now = time.time()
            for chunk, answer in zip(rounds, answers, strict=True):
                data = answer.json().get("data") or {}
                for n, (event_id, _) in enumerate(chunk):
                    if (data.get(f"p{n}") or {}).get("lastEventId") == event_id:
                        visible_at[event_id] = now
            if time.monotonic() - files_checked > 1:
                files_checked = time.monotonic()
                result.identity_files_max = max(
                    result.identity_files_max, len(identity.delta().file_uris())
                )
            if time.monotonic() > deadline:
                stop.set()
                if not waiting:
                    break
            await asyncio.sleep(0.02)

    async def run() -> None:
        headers = {"X-API-Key": key_of_role(stack.settings.keys_file, "admin")}
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=30, headers=headers
        ) as client:
            await _wait_until_serving(client, processes[0])
            await _wait_until_settled(stack, processes[1])
            producer = threading.Thread(target=produce, daemon=True)
            producer.start()
            try:
                await probes(client)
            finally:
                stop.set()
                producer.join(timeout=60)

    try:
        asyncio.run(run())
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=60)
    logged_at, merged_at = _commit_times(stack, list(markers))
    for event_id, (_, at) in markers.items():
        if event_id in logged_at:
            result.logged.append(logged_at[event_id] - at)
        if event_id in merged_at:
            result.merged.append(merged_at[event_id] - at)
        if event_id in visible_at:
            result.graphql.append(visible_at[event_id] - at)
    return result


def _probe_query(probes: list[tuple[str, tuple[str, float]]]) -> str:
    """One query reading the last event id of each probed customer, aliased p0, p1, ..."""
    fields = (
        f'p{n}: customer(id: "{customer}") {{ lastEventId }}'
        for n, (_, (customer, _)) in enumerate(probes)
    )
    return "{ " + " ".join(fields) + " }"


def _commit_times(stack: Stack, event_ids: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    """When each event's batch was committed to the log, and first merged into the identity table."""
    log = stack.lake.table("identity_events")
    rows = log.read(columns=["event_id", "batch"], where=pl.col("event_id").is_in(event_ids))
    batch_of = dict(zip(rows["event_id"].to_pylist(), rows["batch"].to_pylist(), strict=True))

    def times(table: str, step: str) -> list[tuple[int, float]]:
        commits = stack.lake.table(table).history()
        return sorted(
            (int(c["batch"]), c["timestamp"] / 1000)
            for c in commits
            if c.get("step") == step and "batch" in c
        )

    logged = dict(times("identity_events", "ingest"))
    merges = times("customer_identity", "project")
    merged: dict[str, float] = {}
    for event_id, batch in batch_of.items():
        later = [at for b, at in merges if b >= batch]
        if later:
            merged[event_id] = min(later)
    return {e: logged[b] for e, b in batch_of.items() if b in logged}, merged


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait_until_serving(client: httpx.AsyncClient, server: subprocess.Popen[bytes]) -> None:
    """Wait for the API's first answer (it loads the lake into memory before serving)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"hubspoke serve exited with {server.returncode}")
        try:
            answer = await client.post(
                "/graphql", json={"query": "{ customers(first: 1) { totalCount } }"}
            )
            if answer.status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.5)
    raise RuntimeError("hubspoke serve did not answer within 300 s")


async def _wait_until_settled(stack: Stack, consumer: subprocess.Popen[bytes]) -> None:
    """Wait until the consumer has broadcast everything logged and the spokes applied it.

    The throughput runs logged their events through hubs of their own, so the consumer's first
    turn broadcasts all of them again to this stack's spokes (as recovery must); the freshness
    run measures the steady state after that, not the catch-up.
    """
    logged = stack.lake.table("identity_events").progress(INGEST_APP) or 0
    checkpoint = stack.home / "hub" / "checkpoint.json"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if consumer.poll() is not None:
            raise RuntimeError(f"hubspoke consume exited with {consumer.returncode}")
        broadcast = (
            json.loads(checkpoint.read_text()).get("broadcast_batch", 0)
            if checkpoint.exists()
            else 0
        )
        if broadcast >= logged and not any(
            stack.bus.pending(BROADCAST_TOPIC, spoke) for spoke in stack.spokes
        ):
            return
        await asyncio.sleep(0.5)
    raise RuntimeError("the consumer did not catch up within 600 s")


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
    write_json(out, args.json, console)
    return out


if __name__ == "__main__":
    main()
