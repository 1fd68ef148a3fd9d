"""Hubspoke's assets, by area: the hub's identity tables and the domains' extension tables."""

from pipelines.assets.domains import DOMAIN_ASSETS
from pipelines.assets.identity import IDENTITY_SPECS, ingest_identity_events
from pipelines.assets.logs import SIDE_TABLE_SPECS

__all__ = ["DOMAIN_ASSETS", "IDENTITY_SPECS", "SIDE_TABLE_SPECS", "ingest_identity_events"]
