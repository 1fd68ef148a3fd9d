"""Spokes: the domain services, their anti-corruption layers, outbox relay and subscribers."""

from hubspoke.config import Settings
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


def open_spokes(settings: Settings) -> dict[str, Spoke]:
    """The demo spokes of the configured stack, by name."""
    if settings.stack == "local":
        from spokes.databases import open_local_spokes

        return open_local_spokes(settings)
    return {
        name: kind(settings.home / "spokes" / f"{name}.sqlite")
        for name, kind in SPOKE_KINDS.items()
    }


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
