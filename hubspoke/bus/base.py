"""The bus interface every transport (embedded SQLite log, RabbitMQ) implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

IDENTITY_TOPIC = "identity.events"
"""Spokes publish identity events here; the hub subscribes."""
BROADCAST_TOPIC = "identity.broadcast"
"""The hub publishes resolved identity states here; every spoke subscribes."""
ERASURE_TOPIC = "identity.erasure"
"""The hub publishes right-to-erasure requests here; every spoke deletes its copy."""


class BusUnavailable(ConnectionError):
    """The broker cannot be reached (down, wrong address, connection lost): retry later.

    Nothing acknowledged is lost: unconfirmed publishes were not acknowledged to the caller and
    unacknowledged deliveries are handed out again once the broker is back.
    """


class BusError(RuntimeError):
    """The broker answered but refused an operation (a message nacked or routed to no queue)."""


@dataclass(frozen=True)
class Delivery:
    """One message handed to one subscriber; acknowledge it once its effect is durable."""

    tag: int
    body: bytes
    published_at: float


class EventBus(ABC):
    """Durable topics; each subscriber sees every message at least once until it acknowledges."""

    @abstractmethod
    def publish(self, topic: str, bodies: Sequence[bytes]) -> None:
        """Publish messages durably, in order; returns once they are safe."""

    @abstractmethod
    def fetch(self, topic: str, subscriber: str, limit: int) -> list[Delivery]:
        """Up to `limit` unacknowledged messages for `subscriber`, oldest first."""

    @abstractmethod
    def ack(self, topic: str, subscriber: str, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge deliveries: they will not be handed to `subscriber` again."""

    @abstractmethod
    def pending(self, topic: str, subscriber: str) -> int:
        """How many messages `subscriber` has not acknowledged yet."""

    @abstractmethod
    def oldest_pending_at(self, topic: str, subscriber: str) -> float | None:
        """Publish time (epoch seconds) of the oldest unacknowledged message, if any."""

    def forget(self, needles: Sequence[bytes]) -> int:
        """Delete acknowledged messages containing any of `needles`; returns how many.

        A broker that drops messages once acknowledged (RabbitMQ) keeps nothing to forget.
        """
        return 0

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
