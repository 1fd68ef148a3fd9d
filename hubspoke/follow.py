"""`hubspoke consume --follow`: the hub's loop and the spokes' loop, side by side until stopped."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from multiprocessing.synchronize import Event

from hubspoke.bus import BusUnavailable
from hubspoke.config import Settings
from hubspoke.ingest import BatchReport
from hubspoke.stack import Stack

BUS_RETRY_FIRST_S = 0.5
BUS_RETRY_MAX_S = 10.0
"""A loop that finds the bus unavailable retries after 0.5 s, doubling up to 10 s."""
HUB_TURN_MAX_S = 30.0
"""The longest the hub holds its lock under steady load before letting a waiting writer (a
Dagster run) take a turn; as soon as a round finds nothing to ingest it lets go."""


class SpokeLoopFailed(RuntimeError):
    """The spokes' loop stopped with an error (printed above by its process)."""


def report_retry(loop: str, exc: BusUnavailable, pause: float) -> None:
    """Say on stderr that `loop` found the bus unavailable and when it tries again."""
    print(f"{loop}: {exc}; retrying in {pause:g}s", file=sys.stderr, flush=True)


class Follower:
    """Keeps the lake and the spokes current: hub micro-batches and spoke-side work in parallel.

    The hub loop ingests micro-batches and sleeps only when it is caught up. The spokes' loop
    publishes the spokes' outboxes and applies the hub's broadcasts to them, in a process of
    its own: in production each spoke does that itself, and applying a broadcast to three
    databases costs about as much as ingesting the event, so sharing one interpreter made
    every event wait for the spokes. Each loop opens a stack of its own and reopens it after
    the bus was unavailable, rebuilding its state from the lake.
    """

    def __init__(
        self,
        settings: Settings,
        interval: float,
        on_batch: Callable[[BatchReport], None],
        on_retry: Callable[[str, BusUnavailable, float], None] = report_retry,
    ) -> None:
        self.settings = settings
        self.interval = interval
        self.on_batch = on_batch
        self.on_retry = on_retry
        # Spawned, not forked: the parent runs delta-rs and database threads a fork would copy
        # mid-flight.
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._spokes = context.Process(
            target=follow_spokes,
            args=(settings, interval, self._stop, os.getpid()),
            name="hubspoke-spokes",
            daemon=True,
        )

    def run(self) -> None:
        """Follow until interrupted (Ctrl-C) or until either loop fails."""
        self._spokes.start()
        try:
            _follow(
                "hub",
                self._hub_turn,
                self.settings,
                self.interval,
                self._stopped,
                self._pause,
                self.on_retry,
            )
        finally:
            self._stop.set()
            self._spokes.join()
        if self._spokes.exitcode:
            raise SpokeLoopFailed(f"the spokes' loop exited with code {self._spokes.exitcode}")

    def _stopped(self) -> bool:
        return self._stop.is_set() or self._spokes.exitcode is not None

    def _pause(self, loop: str, seconds: float) -> None:
        """Wait between rounds of `loop`, waking at once when the follower stops."""
        self._stop.wait(seconds)

    def _hub_turn(self, stack: Stack) -> None:
        """Micro-batches under the hub's lock until caught up with no merge running."""
        batch_size = self.settings.batch_size
        hub = stack.hub
        with hub.turn():
            ends = time.monotonic() + HUB_TURN_MAX_S
            while not self._stopped() and time.monotonic() < ends:
                report = hub.step(batch_size)
                if report.received:
                    self.on_batch(report)
                if report.received >= batch_size:
                    continue  # a backlog: take the next batch at once
                if not report.received and not hub.merging:
                    return  # caught up: let a waiting writer have the lock between turns
                # Events keep coming: stay in the turn, as each new one recovers first and
                # reads the lake's progress again.
                self._pause("hub", self.interval)


def follow_spokes(settings: Settings, interval: float, stop: Event, parent: int) -> None:
    """The spokes' loop: relay their outboxes and apply the hub's broadcasts until `stop`.

    It also stops when its `parent` process is gone (killed without a chance to say so).
    """

    def stopped() -> bool:
        return stop.is_set() or os.getppid() != parent

    def spoke_round(stack: Stack) -> None:
        stack.relay()
        stack.deliver_broadcasts()

    def pause(loop: str, seconds: float) -> None:
        stop.wait(seconds)

    # Ctrl-C reaches the whole process group; the hub's side reports it.
    with contextlib.suppress(KeyboardInterrupt):
        _follow("spokes", spoke_round, settings, interval, stopped, pause, report_retry)


def _follow(
    loop: str,
    round_: Callable[[Stack], None],
    settings: Settings,
    interval: float,
    stopped: Callable[[], bool],
    pause: Callable[[str, float], None],
    on_retry: Callable[[str, BusUnavailable, float], None],
) -> None:
    """Run `round_` with `interval` pauses until stopped, backing off while the bus is down."""
    backoff = BUS_RETRY_FIRST_S
    while not stopped():
        try:
            with Stack.open(settings) as stack:
                while not stopped():
                    round_(stack)
                    backoff = BUS_RETRY_FIRST_S
                    pause(loop, interval)
        except BusUnavailable as exc:
            on_retry(loop, exc, backoff)
            pause(loop, backoff)
            backoff = min(backoff * 2, BUS_RETRY_MAX_S)
