"""The nightly domain syncs: each spoke at its own window, in its own time zone."""

import dagster as dg

from pipelines.jobs import DOMAIN_SYNC_JOBS


def build_nightly_syncs() -> list[dg.ScheduleDefinition]:
    """A schedule per domain job: at the end of each night's partition, that night runs.

    The window and zone come from the partitions (`Settings.sync_window`, from
    HUBSPOKE_SYNC_WINDOWS and HUBSPOKE_SCHEDULE_TZ).
    """
    return [
        dg.build_schedule_from_partitioned_job(
            job,
            name=job.name.removeprefix("sync_").removesuffix("_job") + "_nightly",
            description="Copy what the domain changed since its last sync into the lake.",
            default_status=dg.DefaultScheduleStatus.RUNNING,
        )
        for job in DOMAIN_SYNC_JOBS
    ]
