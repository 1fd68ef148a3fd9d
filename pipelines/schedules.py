"""The nightly domain sync, at 02:00 in the configured time zone."""

import dagster as dg

from hubspoke.config import Settings
from pipelines.jobs import domain_sync_job

NIGHTLY_CRON = "0 2 * * *"


def build_nightly_domain_sync(settings: Settings) -> dg.ScheduleDefinition:
    """The nightly sync of every domain, in `settings.schedule_timezone` (HUBSPOKE_SCHEDULE_TZ)."""
    return dg.ScheduleDefinition(
        name="nightly_domain_sync",
        job=domain_sync_job,
        cron_schedule=NIGHTLY_CRON,
        execution_timezone=settings.schedule_timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Copy what every domain changed since its last sync into the lake, nightly.",
    )
