"""Hubspoke's code location: assets, checks, jobs, sensor, schedules and the stack resource."""

import dagster as dg

from hubspoke.config import Settings
from pipelines.assets import DOMAIN_ASSETS, SIDE_TABLE_SPECS, ingest_identity_events
from pipelines.checks import CONVERGENCE_CHECKS, RECONCILIATION_CHECKS
from pipelines.erasure import erasure_job
from pipelines.jobs import DOMAIN_SYNC_JOBS, identity_ingestion_job
from pipelines.maintenance import (
    audit_log_compaction_job,
    build_upkeep_schedules,
    lake_maintenance_job,
    retention_job,
)
from pipelines.quality import QUALITY_CHECKS, hourly_lake_checks, lake_checks_job
from pipelines.resources import HubspokeResource
from pipelines.schedules import build_nightly_syncs
from pipelines.sensors import identity_events_sensor

defs = dg.Definitions(
    assets=[ingest_identity_events, *DOMAIN_ASSETS, *SIDE_TABLE_SPECS],
    asset_checks=[*CONVERGENCE_CHECKS, *RECONCILIATION_CHECKS, *QUALITY_CHECKS],
    jobs=[
        identity_ingestion_job,
        *DOMAIN_SYNC_JOBS,
        lake_checks_job,
        lake_maintenance_job,
        retention_job,
        audit_log_compaction_job,
        erasure_job,
    ],
    sensors=[identity_events_sensor],
    schedules=[
        *build_nightly_syncs(),
        hourly_lake_checks,
        *build_upkeep_schedules(Settings.from_env()),
    ],
    resources={"hubspoke": HubspokeResource()},
)
