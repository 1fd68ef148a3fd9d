"""Data contracts: the one source of shape for lake tables, events and the GraphQL API."""

from lake_schema.catalog import Catalog, load_catalog
from lake_schema.contract import Contract, ContractError, Field, Privacy

__all__ = ["Catalog", "Contract", "ContractError", "Field", "Privacy", "load_catalog"]
