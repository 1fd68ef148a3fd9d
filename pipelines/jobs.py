"""The two ways data reaches the lake: identity ingestion in real time, domain syncs nightly."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from lake_schema import Contract, load_catalog
from pipelines.assets import ingest_identity_events
from pipelines.checks import CONVERGENCE_CHECKS

if TYPE_CHECKING:  # what define_asset_job returns; dagster does not export it at the top level
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

WRITER_TAG = "hubspoke/writer"
"""Run tag naming the lake writer of a run; dagster.yaml allows one run per writer at a time."""

identity_ingestion_job = dg.define_asset_job(
    name="identity_ingestion_job",
    # Convergence only: full-table quality checks every few seconds would cost more than the
    # ingestion; lake_checks_job runs them hourly and the domain sync runs its own.
    selection=dg.AssetSelection.assets(ingest_identity_events).without_checks()
    | dg.AssetSelection.checks(*CONVERGENCE_CHECKS),
    description="Relay outboxes, ingest identity events into the lake, broadcast to the spokes.",
    tags={WRITER_TAG: "hub"},
    # One step and its check, back to back: a process per step would add seconds of latency.
    executor_def=dg.in_process_executor,
)


def build_domain_sync_job(contract: Contract) -> UnresolvedAssetJobDefinition:
    """One domain's nightly sync and its reconciliation, partitioned by the spoke's nights.

    A job per domain: spokes sync in their own windows and time zones, so their partitions
    differ and cannot share a job.
    """
    return dg.define_asset_job(
        name=f"sync_{contract.table_name}_job",
        selection=dg.AssetSelection.assets(contract.table_name),
        description=f"Sync what {contract.owner} changed since the watermark, then reconcile.",
        tags={WRITER_TAG: f"sync.{contract.table_name}"},
    )


DOMAIN_SYNC_JOBS = [build_domain_sync_job(c) for c in load_catalog().extensions()]
