"""Concurrency pools: every lake table has one writer pool, shared by its writer and its upkeep."""

from hubspoke_graphql.audit import AUDIT_TABLE

from lake_schema import Contract

HUB_POOL = "hub"
"""The hub's micro-batch writes the event log, dead letters, parked events and the identity
tables in one step, so they share one pool."""

_OWN_POOL = frozenset({"sync_quarantine", AUDIT_TABLE})
"""Tables with a pool of their own beside the domain tables. The quarantine the domain syncs
share takes their commits one by one (Delta's optimistic concurrency, retried). The API server
appends the audit log, outside Dagster: its daily compaction in the hub's pool would hold up
identity ingestion, and an erasure's rewrite of it and the compaction take turns the same way."""


def writer_pool(contract: Contract) -> str:
    """The Dagster pool of the step that writes `contract`'s table (dagster.yaml: one slot each)."""
    if contract.kind == "extension" or contract.table_name in _OWN_POOL:
        # Domain syncs run in parallel, each the one writer of its own table.
        return contract.table_name
    return HUB_POOL
