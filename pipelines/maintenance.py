"""Lake upkeep from Dagster: weekly compaction, checkpoints and vacuum; daily payload retention;
the API's audit log compacted daily (it gains a file every 10 s, and each file makes its writer's
next flush costlier, see `hubspoke_graphql.audit`).

Every step runs in the writer pool of its table (`pipelines.pools`), so upkeep never rewrites a
table while its writer commits to it; a run tag keeps one upkeep run of each kind at a time.
"""

from datetime import UTC, datetime

import dagster as dg
from hubspoke_graphql.audit import AUDIT_TABLE

from hubspoke.config import Settings
from hubspoke.lake import FileStats, MaintenanceReport
from lake_schema import Contract, load_catalog
from lake_schema.contract import format_duration
from pipelines.jobs import WRITER_TAG
from pipelines.pools import writer_pool
from pipelines.resources import HubspokeResource

WEEKLY_CRON = "0 4 * * 0"
"""Sunday 04:00: after the nightly sync, before the business week."""
DAILY_CRON = "0 3 * * *"
"""03:00: after the nightly sync at 02:00."""
AUDIT_LOG_CRON = "30 3 * * *"
"""03:30: the audit log, daily."""


def _stats(prefix: str, stats: FileStats) -> dict[str, dg.MetadataValue]:
    return {
        f"{prefix}_files": dg.MetadataValue.int(stats.active_files),
        f"{prefix}_bytes": dg.MetadataValue.int(stats.active_bytes),
        f"{prefix}_stored_files": dg.MetadataValue.int(stats.stored_files),
        f"{prefix}_stored_bytes": dg.MetadataValue.int(stats.stored_bytes),
    }


def maintenance_metadata(report: MaintenanceReport) -> dict[str, dg.MetadataValue]:
    """Files and bytes before and after, and what compaction and vacuum did, for the UI's plots."""
    return {
        **_stats("before", report.before),
        **_stats("after", report.after),
        "files_compacted": dg.MetadataValue.int(report.files_compacted),
        "files_written": dg.MetadataValue.int(report.files_written),
        "files_vacuumed": dg.MetadataValue.int(report.files_vacuumed),
        "z_order": dg.MetadataValue.text(", ".join(report.z_order) or "none"),
        "delta_version": dg.MetadataValue.int(report.version),
    }


def build_maintenance_op(contract: Contract) -> dg.OpDefinition:
    """The step that compacts, checkpoints and vacuums one table, in its writer's pool."""

    @dg.op(
        name=f"maintain_{contract.table_name}",
        description=(
            f"Compact {contract.table_name}"
            + (f" Z-ordered by {', '.join(contract.z_order)}" if contract.z_order else "")
            + ", checkpoint, vacuum files removed more than"
            + f" {format_duration(contract.retention.history)} ago."
        ),
        pool=writer_pool(contract),
    )
    def maintain(context: dg.OpExecutionContext, hubspoke: HubspokeResource) -> None:
        with hubspoke.stack() as stack:
            report = stack.lake.table(contract).maintain()
        context.log.info(
            f"{contract.table_name}: {report.before.active_files} -> {report.after.active_files}"
            f" files, {report.files_vacuumed} vacuumed"
        )
        context.log_event(
            dg.AssetObservation(
                asset_key=contract.table_name, metadata=maintenance_metadata(report)
            )
        )

    return maintain


def build_retention_op(contract: Contract) -> dg.OpDefinition:
    """The step that expires one table's payloads past the contract's retention."""
    expiry = contract.retention.expire
    assert expiry is not None

    @dg.op(
        name=f"expire_{contract.table_name}",
        description=(
            f"Replace {', '.join(expiry.set)} of {contract.table_name} rows whose {expiry.by} is"
            f" more than {format_duration(expiry.after)} ago; keys and the rest of each row stay."
        ),
        pool=writer_pool(contract),
    )
    def expire(context: dg.OpExecutionContext, hubspoke: HubspokeResource) -> None:
        with hubspoke.stack() as stack:
            table = stack.lake.table(contract)
            expired = table.expire(expiry, datetime.now(UTC))
            version = table.version()
        context.log.info(
            f"{contract.table_name}: expired {', '.join(expiry.set)} of {expired} rows"
        )
        context.log_event(
            dg.AssetObservation(
                asset_key=contract.table_name,
                metadata={
                    "rows_expired": dg.MetadataValue.int(expired),
                    "retention_days": dg.MetadataValue.int(expiry.after.days),
                    "delta_version": dg.MetadataValue.int(version),
                },
            )
        )

    return expire


def _upkeep_job(name: str, description: str, ops: list[dg.OpDefinition]) -> dg.JobDefinition:
    # dagster.yaml allows one run per value of the writer tag at a time.
    return dg.GraphDefinition(name=name, description=description, node_defs=ops).to_job(
        tags={WRITER_TAG: name}
    )


_tables = load_catalog().tables()
_maintain = {c.table_name: build_maintenance_op(c) for c in _tables}

lake_maintenance_job = _upkeep_job(
    "lake_maintenance_job",
    "Compact small files (Z-ordered where the contract says), checkpoint and vacuum every lake"
    " table, each in its writer's pool.",
    list(_maintain.values()),
)

audit_log_compaction_job = _upkeep_job(
    "audit_log_compaction_job",
    f"Compact, checkpoint and vacuum {AUDIT_TABLE}, which the API appends a file to every 10 s.",
    [_maintain[AUDIT_TABLE]],  # the same step: Dagster names each op once
)

retention_job = _upkeep_job(
    "retention_job",
    "Expire payloads past the retention each contract states (identity_events: 90 days).",
    [build_retention_op(c) for c in _tables if c.retention.expire is not None],
)


def build_upkeep_schedules(settings: Settings) -> list[dg.ScheduleDefinition]:
    """Weekly maintenance, daily retention and audit log compaction, in
    `settings.schedule_timezone`."""
    upkeep = [
        (
            "weekly_lake_maintenance",
            lake_maintenance_job,
            WEEKLY_CRON,
            "Compact, checkpoint and vacuum every lake table, Sundays at 04:00.",
        ),
        (
            "daily_retention",
            retention_job,
            DAILY_CRON,
            "Expire payloads past their contract's retention, daily at 03:00.",
        ),
        (
            "daily_audit_log_compaction",
            audit_log_compaction_job,
            AUDIT_LOG_CRON,
            f"Compact, checkpoint and vacuum {AUDIT_TABLE}, daily at 03:30.",
        ),
    ]
    return [
        dg.ScheduleDefinition(
            name=name,
            job=job,
            cron_schedule=cron,
            execution_timezone=settings.schedule_timezone,
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description=description,
        )
        for name, job, cron, description in upkeep
    ]
