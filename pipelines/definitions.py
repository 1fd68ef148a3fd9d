"""Hubspoke's code location: assets, checks, jobs, sensor, schedule and the stack resource."""

import dagster as dg

from pipelines.assets import DOMAIN_ASSETS, ingest_identity_events
from pipelines.checks import CONVERGENCE_CHECKS, RECONCILIATION_CHECKS
from pipelines.jobs import DOMAIN_SYNC_JOBS, identity_ingestion_job
from pipelines.resources import HubspokeResource
from pipelines.schedules import build_nightly_syncs
from pipelines.sensors import identity_events_sensor

defs = dg.Definitions(
    assets=[ingest_identity_events, *DOMAIN_ASSETS],
    asset_checks=[*CONVERGENCE_CHECKS, *RECONCILIATION_CHECKS],
    jobs=[identity_ingestion_job, *DOMAIN_SYNC_JOBS],
    sensors=[identity_events_sensor],
    schedules=build_nightly_syncs(),
    resources={"hubspoke": HubspokeResource()},
)
