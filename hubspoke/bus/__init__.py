"""The event bus between spokes and hub: at-least-once topics with per-subscriber acknowledgement."""

from hubspoke.bus.base import (
    BROADCAST_TOPIC,
    ERASURE_TOPIC,
    IDENTITY_TOPIC,
    BusError,
    BusUnavailable,
    Delivery,
    EventBus,
)
from hubspoke.bus.sqlite import SqliteBus
from hubspoke.config import Settings

__all__ = [
    "BROADCAST_TOPIC",
    "ERASURE_TOPIC",
    "IDENTITY_TOPIC",
    "BusError",
    "BusUnavailable",
    "Delivery",
    "EventBus",
    "SqliteBus",
    "open_bus",
]


def open_bus(settings: Settings) -> EventBus:
    """The bus of the configured stack: the embedded SQLite log, or RabbitMQ for `local`."""
    if settings.stack == "local":
        from hubspoke.bus.rabbitmq import RabbitBus

        return RabbitBus(settings.rabbitmq_url, namespace=settings.namespace)
    return SqliteBus(settings.home / "bus" / "events.sqlite")
