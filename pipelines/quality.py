"""Asset checks on every lake table, built from the contracts by `hubspoke.quality`.

Structural checks (schema, keys, required fields, references) on the tables consumers read are
blocking: a failure stops downstream materializations in the same run. Freshness is a warning:
rerunning downstream assets cannot make an upstream table fresher.
"""

from collections.abc import Callable
from datetime import UTC, datetime

import dagster as dg

from hubspoke import quality
from hubspoke.quality import CheckOutcome
from hubspoke.stack import Stack
from lake_schema import Contract, load_catalog
from pipelines.metadata import first_keys
from pipelines.resources import HubspokeResource

Evaluate = Callable[[Stack, Contract, dg.AssetCheckExecutionContext], CheckOutcome]


def _protects_consumers(contract: Contract) -> bool:
    return contract.kind in ("identity", "extension")


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


def build_check(
    contract: Contract,
    name: str,
    description: str,
    evaluate: Evaluate,
    *,
    blocking: bool,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetChecksDefinition:
    """One asset check on `contract`'s table, evaluated by a function of `hubspoke.quality`."""

    @dg.asset_check(
        asset=contract.table_name, name=name, description=description, blocking=blocking
    )
    def check(
        context: dg.AssetCheckExecutionContext, hubspoke: HubspokeResource
    ) -> dg.AssetCheckResult:
        with hubspoke.stack() as stack:
            return _result(evaluate(stack, contract, context), severity)

    return check


def _last_sync(context: dg.AssetCheckExecutionContext, contract: Contract) -> datetime | None:
    # The sync asset materializes every night, also when nothing changed and no Delta commit
    # was written; Dagster's record of that is the better witness of the last sync.
    event = context.instance.get_latest_materialization_event(dg.AssetKey(contract.table_name))
    return datetime.fromtimestamp(event.timestamp, UTC) if event else None


def _synced_at(
    stack: Stack, contract: Contract, context: dg.AssetCheckExecutionContext
) -> datetime | None:
    committed = quality.last_data_commit(stack.lake.table(contract))
    return max(filter(None, [committed, _last_sync(context, contract)]), default=None)


def _fresh(
    stack: Stack, contract: Contract, context: dg.AssetCheckExecutionContext
) -> CheckOutcome:
    if contract.kind == "identity":
        return quality.identity_freshness(stack.lake, contract, stack.identity_lag_s())
    return quality.domain_freshness(
        stack.lake.table(contract),
        quality.spoke_timezone(stack.settings, contract),
        synced_at=_synced_at(stack, contract, context),
    )


def _references(
    stack: Stack, contract: Contract, context: dg.AssetCheckExecutionContext
) -> CheckOutcome:
    return quality.referential_integrity(
        stack.lake, stack.lake.table(contract), synced_at=_synced_at(stack, contract, context)
    )


def build_quality_checks(contract: Contract) -> list[dg.AssetChecksDefinition]:
    """Every check the contract implies for its table."""
    blocking = _protects_consumers(contract)
    checks = [
        build_check(
            contract,
            "conforms_to_contract",
            f"The Delta schema is {contract.name} v{contract.version}'s, and values keep its"
            " allowed values, minimums and lengths.",
            lambda stack, c, _: quality.schema_conformance(stack.lake.table(c)),
            blocking=blocking,
        ),
        build_check(
            contract,
            "key_is_unique",
            f"No two rows share {', '.join(contract.key_fields)}.",
            lambda stack, c, _: quality.key_uniqueness(stack.lake.table(c)),
            blocking=blocking,
        ),
        build_check(
            contract,
            "required_fields_filled",
            "Every field the contract declares non-nullable holds a value.",
            lambda stack, c, _: quality.required_fields(stack.lake.table(c)),
            blocking=blocking,
        ),
    ]
    references = [f"{f.name} -> {f.references}" for f in contract.fields if f.references]
    if references:
        checks.append(
            build_check(
                contract,
                "references_live_rows",
                f"Every row names a live row where it refers ({'; '.join(references)}); rows"
                " whose identity was deleted after the last sync wait for the next one.",
                _references,
                blocking=blocking,
            )
        )
    if contract.freshness is not None:
        checks.append(
            build_check(
                contract,
                "fresh",
                f"The table is at most {contract.freshness.max_age} behind its source"
                + (
                    " (events waiting on the bus or logged but not merged)."
                    if contract.kind == "identity"
                    else ", counted on the owning spoke's clock."
                ),
                _fresh,
                blocking=False,
                severity=dg.AssetCheckSeverity.WARN,
            )
        )
    return checks


QUALITY_CHECKS = [check for c in load_catalog().tables() for check in build_quality_checks(c)]
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
    # Freshness only fails while nothing runs: a check that ran only after a sync would never see it.
    description="Run every lake check hourly, so a table that stopped being fed shows up.",
)
