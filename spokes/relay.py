"""Moving events between a spoke's database and the bus: the outbox relay and the broadcast subscriber."""

from __future__ import annotations

from hubspoke.bus import BROADCAST_TOPIC, ERASURE_TOPIC, IDENTITY_TOPIC, BusUnavailable, EventBus
from hubspoke.erasure import decode_erasure
from hubspoke.events import decode_broadcast
from spokes.base import Spoke


def relay_outbox(spoke: Spoke, bus: EventBus, batch_size: int = 1000) -> int:
    """Publish the spoke's unpublished outbox events in commit order; returns how many.

    An event is marked published only after the bus confirmed it, so a crash in between
    publishes it again; the hub drops the copy by event id. When the bus is unavailable the
    relay stops at the batch that failed and raises BusUnavailable saying how far it got: that
    batch and everything after it stay in the outbox, in order, for the next call. The spoke's
    own writes never wait for the bus (the outbox is local).
    """
    relayed = 0
    while messages := spoke.outbox(batch_size):
        try:
            bus.publish(IDENTITY_TOPIC, [m.body for m in messages])
        except BusUnavailable as exc:
            raise BusUnavailable(
                f"{spoke.name} outbox: relayed {relayed} events, the rest wait for the next"
                f" relay: {exc}"
            ) from exc
        spoke.mark_published(messages)
        relayed += len(messages)
    return relayed


def apply_broadcasts(spoke: Spoke, bus: EventBus, batch_size: int = 1000) -> int:
    """Apply every pending hub broadcast, then every erasure, to the spoke's copy.

    Returns how many states changed it. Erasures come last so that a state broadcast before
    an erasure cannot bring the person back.
    """
    applied = 0
    while deliveries := bus.fetch(BROADCAST_TOPIC, spoke.name, batch_size):
        states = [
            state
            for d in deliveries
            for entity, state in decode_broadcast(d.body)
            if entity == spoke.entity
        ]
        applied += spoke.apply_broadcast(states)
        bus.ack(BROADCAST_TOPIC, spoke.name, deliveries)
    apply_erasures(spoke, bus, batch_size)
    return applied


def apply_erasures(spoke: Spoke, bus: EventBus, batch_size: int = 1000) -> int:
    """Delete the local rows of every customer the hub asked to erase; returns rows deleted."""
    deleted = 0
    while deliveries := bus.fetch(ERASURE_TOPIC, spoke.name, batch_size):
        ids = [
            i for d in deliveries for entity, i in decode_erasure(d.body) if entity == spoke.entity
        ]
        if ids:
            deleted += spoke.erase(ids)
        bus.ack(ERASURE_TOPIC, spoke.name, deliveries)
    return deleted
