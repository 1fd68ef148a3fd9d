"""The embedded stack under one home folder: lake, bus, hub and the demo spokes, wired together."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from typing import Any

import polars as pl

from hubspoke.bus import IDENTITY_TOPIC, EventBus, open_bus
from hubspoke.config import Settings
from hubspoke.events import parse_event
from hubspoke.ingest import HUB_SUBSCRIBER, Hub
from hubspoke.lake import Lake
from hubspoke.sync import SyncReport, sync_domain, watermark
from lake_schema import load_catalog
from spokes import Spoke, open_spokes
from spokes.relay import apply_broadcasts, relay_outbox


class HomeNotFound(FileNotFoundError):
    """The home folder holds no Hubspoke stack."""


class Stack:
    """Everything a Hubspoke installation is made of, opened from its home folder."""

    def __init__(self, settings: Settings, bus: EventBus | None = None) -> None:
        """Open every part; `bus`, when given, replaces the stack's own (the stack closes it)."""
        self.settings = settings
        self.home = settings.home
        self.catalog = load_catalog()
        self.lake = Lake(self.home / "lake", self.catalog)
        self.bus: EventBus = bus if bus is not None else open_bus(settings)
        self.spokes: dict[str, Spoke] = open_spokes(settings)
        self.hub = Hub(self.lake, self.bus, self.home / "hub", settings.projection_interval_s)

    @classmethod
    def create(cls, settings: Settings, bus: EventBus | None = None) -> Stack:
        """Open the stack at `settings.home`, creating whatever is missing (`bus` as in __init__)."""
        if (settings.home / "lake").is_dir():
            settings = settings.recorded()  # an existing home keeps the stack it was made with
        settings.record()
        stack = cls(settings, bus)
        stack.lake.create_tables()
        return stack

    @classmethod
    def open(cls, settings: Settings) -> Stack:
        """Open an existing stack; raises HomeNotFound when the home was never created."""
        if not (settings.home / "lake" / "customer_identity" / "_delta_log").is_dir():
            raise HomeNotFound(
                f"no Hubspoke home at {settings.home.resolve()}; create one with"
                f" `hubspoke demo --no-serve --home {settings.home}` or `hubspoke init`"
            )
        stack = cls(settings.recorded())
        stack.lake.create_tables()  # tables of contracts added since the home was made
        return stack

    def close(self) -> None:
        """Close databases and connections."""
        for spoke in self.spokes.values():
            spoke.close()
        self.bus.close()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def relay(self) -> int:
        """Publish every spoke's pending outbox events."""
        return sum(relay_outbox(spoke, self.bus) for spoke in self.spokes.values())

    def deliver_broadcasts(self) -> dict[str, int]:
        """Apply pending hub broadcasts in every spoke; returns changes per spoke."""
        return {name: apply_broadcasts(spoke, self.bus) for name, spoke in self.spokes.items()}

    def propagate(self, settle: bool = True) -> dict[str, Any]:
        """One real-time round: outboxes -> bus -> hub -> lake -> broadcast -> spokes.

        `settle=False` (a follower) leaves merging into the identity tables to its interval.
        """
        relayed = self.relay()
        report = self.hub.drain(self.settings.batch_size, settle=settle)
        applied = self.deliver_broadcasts()
        return {"relayed": relayed, "ingest": report, "broadcast_applied": applied}

    def identity_lag_s(self) -> float:
        """Age in seconds of the oldest identity event not yet in the lake (0 when none waits)."""
        oldest = [self.bus.oldest_pending_at(IDENTITY_TOPIC, HUB_SUBSCRIBER)]
        for spoke in self.spokes.values():
            if waiting := spoke.outbox(1):
                oldest.append(parse_event(waiting[0].body, self.catalog).occurred_at.timestamp())
        known = [t for t in oldest if t is not None]
        return round(max(0.0, time.time() - min(known)), 3) if known else 0.0

    def sync(
        self, domains: list[str] | None = None, *, compare_keys: bool = False
    ) -> list[SyncReport]:
        """Run the nightly delta sync of the given domains (all when None)."""
        contracts = (
            [self.catalog.extension(d) for d in domains] if domains else self.catalog.extensions()
        )
        return [
            sync_domain(
                self.lake,
                self.spokes[c.owner],
                c,
                overlap=timedelta(minutes=self.settings.sync_overlap_min),
                batch_rows=self.settings.sync_batch_rows,
                compare_keys=compare_keys,
            )
            for c in contracts
        ]

    def status(self) -> dict[str, Any]:
        """Events by disposition, what is pending, and every table's version and row count."""
        log = self.lake.table("identity_events").read(columns=["disposition"])
        by_disposition = Counter(log["disposition"].to_pylist())
        parked = self.lake.table("parked_identity_events").count()
        dead = self.lake.table("dead_letters").count()
        pending_bus = self.hub.pending()
        outboxes = {name: s.outbox_backlog()[0] for name, s in self.spokes.items()}
        events = {
            "received": sum(by_disposition.values()) + parked + dead,
            "applied": by_disposition["applied"],
            "duplicate": by_disposition["duplicate"],
            "stale": by_disposition["stale"],
            "parked": parked,
            "dead_lettered": dead,
            "pending": pending_bus + sum(outboxes.values()),
        }
        tables = {}
        for t in self.lake.tables():
            tables[t.name] = {"version": t.version(), "rows": t.count()}
        identity = self.lake.table("customer_identity").read(
            columns=["id"],
            where=pl.col("deleted") == False,  # noqa: E712
        )
        return {
            "home": str(self.home.resolve()),
            "events": events,
            "pending_by_spoke_outbox": outboxes,
            "lag_s": self.identity_lag_s(),
            "live_customers": identity.num_rows,
            "tables": tables,
            "watermarks": {
                c.table_name: (w.isoformat() if (w := watermark(self.lake, c)) else None)
                for c in self.catalog.extensions()
            },
        }
