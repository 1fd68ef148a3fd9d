"""Concurrency pools: every lake table has one writer pool, shared by its writer and its upkeep."""

from lake_schema import Contract

AUDIT_LOG = "api_audit_log"

HUB_POOL = "hub"
"""The hub's micro-batch writes the event log, dead letters, parked events and the identity
tables in one step, so they share one pool."""


def writer_pool(contract: Contract) -> str:
    """The Dagster pool of the step that writes `contract`'s table (dagster.yaml: one slot each)."""
    if contract.kind == "extension" or contract.table_name == "sync_quarantine":
        # Domain syncs run in parallel, each the one writer of its own table. The quarantine
        # they share takes their commits one by one (Delta's optimistic concurrency, retried).
        return contract.table_name
    if contract.table_name == AUDIT_LOG:
        # The API server appends it, outside Dagster: its daily compaction in the hub's pool
        # would hold up identity ingestion. An erasure's rewrite of it and the compaction take
        # turns through Delta's optimistic concurrency (both retry a lost commit).
        return contract.table_name
    return HUB_POOL
