"""The event bus between spokes and hub: at-least-once topics with per-subscriber acknowledgement."""

from hubspoke.bus.base import BROADCAST_TOPIC, IDENTITY_TOPIC, Delivery, EventBus
from hubspoke.bus.sqlite import SqliteBus

__all__ = ["BROADCAST_TOPIC", "IDENTITY_TOPIC", "Delivery", "EventBus", "SqliteBus"]
