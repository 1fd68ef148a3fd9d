"""The two ways data reaches the lake: identity ingestion in real time, domain syncs nightly."""

import dagster as dg

from pipelines.assets import DOMAIN_ASSETS, ingest_identity_events
from pipelines.checks import CONVERGENCE_CHECKS

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

domain_sync_job = dg.define_asset_job(
    name="domain_sync_job",
    selection=dg.AssetSelection.assets(*DOMAIN_ASSETS),
    description="Sync every domain's changes since its watermark into the lake, then reconcile.",
    tags={WRITER_TAG: "sync"},
)
