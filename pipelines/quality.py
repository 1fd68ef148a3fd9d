"""Asset checks on every lake table: the checks `hubspoke.quality` derives from each contract.

Structural checks (schema, keys, required fields, references) on the tables consumers read are
blocking: a failure stops downstream materializations in the same run (and fails the run).
Freshness is a warning.
"""

from datetime import UTC, datetime

import dagster as dg

from hubspoke import quality
from hubspoke.quality import Check, CheckOutcome
from lake_schema import Contract, load_catalog
from pipelines.metadata import first_keys
from pipelines.resources import HubspokeResource


def _result(outcome: CheckOutcome, severity: dg.AssetCheckSeverity) -> dg.AssetCheckResult:
    metadata: dict[str, dg.MetadataValue] = {
        name: dg.MetadataValue.float(float(v)) if isinstance(v, float) else dg.MetadataValue.int(v)
        for name, v in outcome.counts.items()
    }
    if outcome.failing_keys or not outcome.passed:
        metadata["first_failing_keys"] = first_keys(outcome.failing_keys)
    return dg.AssetCheckResult(
        passed=outcome.passed, severity=severity, description=outcome.summary, metadata=metadata
    )


def _last_sync(context: dg.AssetCheckExecutionContext, contract: Contract) -> datetime | None:
    # The sync asset materializes every night, also when nothing changed and no Delta commit
    # was written; Dagster's record of that is the better witness of the last sync.
    event = context.instance.get_latest_materialization_event(dg.AssetKey(contract.table_name))
    return datetime.fromtimestamp(event.timestamp, UTC) if event else None


def build_asset_check(contract: Contract, check: Check) -> dg.AssetChecksDefinition:
    """One Dagster asset check on `contract`'s table."""
    severity = dg.AssetCheckSeverity.WARN if check.warn_only else dg.AssetCheckSeverity.ERROR

    @dg.asset_check(
        asset=contract.table_name,
        name=check.name,
        description=check.description,
        blocking=check.blocking,
    )
    def evaluate(
        context: dg.AssetCheckExecutionContext, hubspoke: HubspokeResource
    ) -> dg.AssetCheckResult:
        with hubspoke.stack() as stack:
            committed = quality.last_data_commit(stack.lake.table(contract))
            synced = max(filter(None, [committed, _last_sync(context, contract)]), default=None)
            return _result(check.evaluate(stack, contract, synced), severity)

    return evaluate


QUALITY_CHECKS = [
    build_asset_check(contract, check)
    for contract in load_catalog().tables()
    for check in quality.checks_for(contract)
]
"""Checks on every lake table; a new contract file brings its checks, no code."""

lake_checks_job = dg.define_asset_job(
    name="lake_checks_job",
    selection=dg.AssetSelection.checks(*QUALITY_CHECKS),
    description="Every quality check on every lake table, without materializing anything.",
)

hourly_lake_checks = dg.ScheduleDefinition(
    name="hourly_lake_checks",
    job=lake_checks_job,
    cron_schedule="15 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    # Freshness only fails while nothing runs: a check run only after a sync would never see it.
    description="Run every lake check hourly, so a table that stopped being fed shows up.",
)
