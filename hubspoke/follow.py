"""`hubspoke consume --follow`: the hub's loop and the spokes' loop, side by side until stopped."""

from __future__ import annotations

import threading
from collections.abc import Callable

from hubspoke.bus import BusUnavailable
from hubspoke.config import Settings
from hubspoke.ingest import BatchReport
from hubspoke.stack import Stack

BUS_RETRY_FIRST_S = 0.5
BUS_RETRY_MAX_S = 10.0
"""A loop that finds the bus unavailable retries after 0.5 s, doubling up to 10 s."""


class Follower:
    """Keeps the lake and the spokes current: hub micro-batches and spoke-side work in parallel.

    The hub loop ingests one micro-batch a round and sleeps only when it is caught up. The spoke
    loop publishes the spokes' outboxes and applies the hub's broadcasts to them: in production
    each spoke does that itself, and applying a broadcast to three databases costs about as much
    as ingesting the event, so doing both in one loop made every event wait for the spokes of
    the batch before it. Each loop opens a stack of its own (database connections belong to one
    thread) and reopens it after the bus was unavailable, rebuilding its state from the lake.
    """

    def __init__(
        self,
        settings: Settings,
        interval: float,
        on_batch: Callable[[BatchReport], None],
        on_retry: Callable[[str, BusUnavailable, float], None],
    ) -> None:
        self.settings = settings
        self.interval = interval
        self.on_batch = on_batch
        self.on_retry = on_retry
        self._stop = threading.Event()
        self._failure: BaseException | None = None

    def run(self) -> None:
        """Follow until interrupted (Ctrl-C) or until either loop fails."""
        spoke_side = threading.Thread(target=self._spoke_side, name="spoke-side", daemon=True)
        spoke_side.start()
        try:
            self._loop("hub", self._hub_round)
        finally:
            self._stop.set()
            spoke_side.join()
        if self._failure is not None:
            raise self._failure

    def _spoke_side(self) -> None:
        try:
            self._loop("spokes", self._spoke_round)
        except BaseException as exc:  # surfaces in run(), in the main thread
            self._failure = exc
            self._stop.set()

    def _loop(self, name: str, round_: Callable[[Stack], bool]) -> None:
        backoff = BUS_RETRY_FIRST_S
        while not self._stop.is_set():
            try:
                with Stack.open(self.settings) as stack:
                    while not self._stop.is_set():
                        busy = round_(stack)
                        backoff = BUS_RETRY_FIRST_S
                        if not busy:
                            self._pause(name, self.interval)
            except BusUnavailable as exc:
                self.on_retry(name, exc, backoff)
                self._pause(name, backoff)
                backoff = min(backoff * 2, BUS_RETRY_MAX_S)

    def _pause(self, loop: str, seconds: float) -> None:
        """Wait between rounds of `loop`, waking at once when the follower stops."""
        self._stop.wait(seconds)

    def _hub_round(self, stack: Stack) -> bool:
        batch_size = self.settings.batch_size
        report = stack.hub.drain(batch_size, max_batches=1, settle=False)
        if report.received:
            self.on_batch(report)
        return report.received >= batch_size  # a backlog: take the next batch at once

    def _spoke_round(self, stack: Stack) -> bool:
        stack.relay()
        stack.deliver_broadcasts()
        return False  # both drained what was there
