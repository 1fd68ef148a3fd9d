"""Spokes: the domain services, their anti-corruption layers, outbox relay and subscribers."""

from spokes.base import DomainChanges, LocalSchema, OutboxMessage, Spoke
from spokes.billing import BillingSpoke
from spokes.sales import SalesSpoke
from spokes.support import SupportSpoke

SPOKE_KINDS: dict[str, type[Spoke]] = {
    "sales": SalesSpoke,
    "support": SupportSpoke,
    "billing": BillingSpoke,
}
"""The demo spokes by name; each owns the domain contract whose `owner` is that name."""

__all__ = [
    "SPOKE_KINDS",
    "BillingSpoke",
    "DomainChanges",
    "LocalSchema",
    "OutboxMessage",
    "SalesSpoke",
    "Spoke",
    "SupportSpoke",
]
