"""Data quality checks derived from the contracts: pure functions over the lake's Delta tables.

Each check reads a table (scans with pushdown, no copies in Python loops) and returns a
`CheckOutcome`; Dagster turns them into asset checks (`pipelines/quality.py`), and anything else
(a notebook, a CLI) can call them as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import polars as pl
import pyarrow as pa

from hubspoke.config import Settings
from hubspoke.ingest import PROJECTION_APP
from hubspoke.lake import Lake, LakeTable
from hubspoke.sync import Reconciliation, reconcile
from lake_schema import Contract
from lake_schema.contract import format_duration

if TYPE_CHECKING:
    from hubspoke.stack import Stack

FIRST_KEYS = 20
"""How many failing keys an outcome carries: enough to start looking, small enough to show."""

_DATA_OPERATIONS = {"WRITE", "MERGE", "DELETE"}
"""Delta operations that change rows; OPTIMIZE, VACUUM and retention's UPDATE do not count."""


@dataclass(frozen=True)
class CheckOutcome:
    """The result of one check on one table: verdict, one-line summary, counts, failing keys."""

    passed: bool
    summary: str
    counts: dict[str, int | float] = field(default_factory=dict)
    failing_keys: list[str] = field(default_factory=list)


def schema_conformance(table: LakeTable) -> CheckOutcome:
    """The Delta schema is the contract's, and every value keeps the contract's constraints."""
    contract = table.contract
    actual = table.stored_schema()
    expected = contract.arrow_schema()
    problems = [f"missing column {n!r}" for n in expected.names if n not in actual.names]
    problems += [
        f"column {n!r} is not in the contract" for n in actual.names if n not in expected.names
    ]
    for f in expected:
        if f.name not in actual.names:
            continue
        got = actual.field(f.name)
        if not _same_type(got.type, f.type):
            problems.append(f"column {f.name!r} is {got.type}, the contract says {f.type}")
        if got.nullable and not f.nullable:
            problems.append(f"column {f.name!r} allows nulls, the contract requires a value")
    # Values are checked where the column has the contract's type; other columns failed above.
    present = [
        f
        for f in contract.fields
        if f.name in actual.names and _same_type(actual.field(f.name).type, f.arrow_type)
    ]
    broken = pl.lit(False)
    for f in present:
        column = pl.col(f.name)
        if f.allowed is not None:
            broken = broken | ~column.is_in(list(f.allowed))
        if f.minimum is not None:
            broken = broken | (column < f.minimum)
        if f.max_length is not None:
            broken = broken | (column.str.len_chars() > f.max_length)
    broken = broken.fill_null(False)
    bad_rows = table.scan().filter(broken).select(pl.len()).collect().item() if present else 0
    if bad_rows:
        problems.append(f"{bad_rows} rows break the contract's allowed values or limits")
    return CheckOutcome(
        passed=not problems,
        summary="; ".join(problems) or "schema and values match the contract",
        counts={
            "schema_problems": len(problems) - bool(bad_rows),
            "rows_breaking_limits": bad_rows,
        },
        failing_keys=_keys(table, broken) if bad_rows else [],
    )


def key_uniqueness(table: LakeTable) -> CheckOutcome:
    """No two rows share a primary key."""
    key = list(table.contract.key_fields)
    duplicated = (
        table.scan()
        .group_by(key)
        .agg(pl.len().alias("copies"))
        .filter(pl.col("copies") > 1)
        .sort(key)
        .collect()
    )
    keys = [_key_text(row, key) for row in duplicated.head(FIRST_KEYS).iter_rows(named=True)]
    return CheckOutcome(
        passed=duplicated.height == 0,
        summary=f"{duplicated.height} keys appear more than once" if keys else "keys are unique",
        counts={"duplicated_keys": duplicated.height, "rows": table.count()},
        failing_keys=keys,
    )


def required_fields(table: LakeTable) -> CheckOutcome:
    """Every field the contract declares non-nullable holds a value in every row."""
    required = [f.name for f in table.contract.fields if not f.nullable]
    nulls = table.scan().select([pl.col(n).null_count() for n in required]).collect().row(0)
    by_field = {n: c for n, c in zip(required, nulls, strict=True) if c}
    missing = pl.any_horizontal([pl.col(n).is_null() for n in required])
    keys = _keys(table, missing) if by_field else []
    return CheckOutcome(
        passed=not by_field,
        summary=", ".join(f"{n}: {c} nulls" for n, c in by_field.items())
        or "required fields are filled",
        counts={f"null_{n}": by_field.get(n, 0) for n in required},
        failing_keys=keys,
    )


def referential_integrity(
    lake: Lake, table: LakeTable, synced_at: datetime | None = None
) -> CheckOutcome:
    """Every value of a field that `references` another table names a live row there.

    With `synced_at` (when the table was last synced), a row whose identity was deleted after
    that sync is not an orphan yet: the next sync removes it. It is counted as awaiting sync.
    """
    orphans: set[str] = set()
    counts: dict[str, int | float] = {}
    for f in table.contract.fields:
        if f.references is None:
            continue
        target_name, target_field = f.references.split(".")
        target = lake.table(target_name)
        fields = target.contract.field_names
        targets = target.scan().select(
            pl.col(target_field).alias(f.name),
            (pl.col("deleted") if "deleted" in fields else pl.lit(False)).alias("deleted"),
            (pl.col("deleted_at") if "deleted_at" in fields else pl.lit(None, pl.Datetime)).alias(
                "deleted_at"
            ),
        )
        later = pl.lit(False)
        if synced_at is not None:
            later = pl.col("deleted") & (pl.col("deleted_at") > synced_at).fill_null(False)
        values = table.scan().select(pl.col(f.name)).unique()
        found = values.join(targets, on=f.name, how="left").collect()
        dead = found.filter(pl.col("deleted").is_null() | (pl.col("deleted") & ~later))
        awaiting = found.filter(later)
        counts[f"orphans_{f.name}"] = dead.height
        counts[f"awaiting_sync_{f.name}"] = awaiting.height
        orphans |= set(dead[f.name].to_list())
    first = sorted(orphans)[:FIRST_KEYS]
    return CheckOutcome(
        passed=not orphans,
        summary=f"{len(orphans)} rows name no live row of the table they reference"
        if orphans
        else "every reference names a live row",
        counts=counts,
        failing_keys=first,
    )


def identity_freshness(
    lake: Lake, contract: Contract, pending_lag_s: float, now: datetime | None = None
) -> CheckOutcome:
    """The identity table trails the spokes by at most the contract's freshness.

    The lag is the older of two waits: events not yet in the lake (`pending_lag_s`, from the
    bus and the outboxes) and events logged in `identity_events` but not merged yet.
    """
    now = now or datetime.now(UTC)
    merged_batch = lake.table(contract).progress(PROJECTION_APP) or -1
    unmerged = (
        lake.table("identity_events")
        .scan()
        .filter(
            (pl.col("entity") == contract.entity)
            & (pl.col("disposition") == "applied")
            & (pl.col("batch") > merged_batch)
        )
        .select(pl.col("received_at").min(), pl.len())
        .collect()
    )
    oldest, waiting = unmerged.row(0)
    unmerged_lag_s = (now - oldest).total_seconds() if oldest is not None else 0.0
    lag_s = round(max(pending_lag_s, unmerged_lag_s, 0.0), 3)
    limit_s = _max_age(contract).total_seconds()
    return CheckOutcome(
        passed=lag_s <= limit_s,
        summary=f"identity lag {lag_s:.0f} s, limit {limit_s:.0f} s",
        counts={
            "lag_s": lag_s,
            "pending_lag_s": round(pending_lag_s, 3),
            "unmerged_lag_s": round(unmerged_lag_s, 3),
            "unmerged_events": waiting,
            "max_lag_s": limit_s,
        },
    )


def domain_freshness(
    table: LakeTable,
    timezone: ZoneInfo,
    synced_at: datetime | None = None,
    now: datetime | None = None,
) -> CheckOutcome:
    """The domain copy was synced within the contract's freshness, counted in the spoke's zone.

    The deadline is the last sync plus the allowed age on the spoke's wall clock, so a night
    that changes daylight-saving time does not make an on-time sync look late (or early).
    `synced_at` defaults to the newest commit that changed rows.
    """
    now = now or datetime.now(UTC)
    synced_at = synced_at or last_data_commit(table)
    limit = _max_age(table.contract)
    if synced_at is None:
        return CheckOutcome(
            passed=False, summary="never synced", counts={"max_age_h": _hours(limit)}
        )
    local = synced_at.astimezone(timezone)
    deadline = local + limit  # aware datetime + timedelta is wall-clock arithmetic in its zone
    age = now - synced_at
    passed = now <= deadline.astimezone(UTC)
    return CheckOutcome(
        passed=passed,
        summary=f"synced {local.isoformat(timespec='minutes')} ({timezone.key}),"
        f" {'due again by' if passed else 'overdue since'} {deadline.isoformat(timespec='minutes')}",
        counts={"age_h": _hours(age), "max_age_h": _hours(limit)},
    )


def last_data_commit(table: LakeTable) -> datetime | None:
    """When rows of the table last changed (maintenance and retention commits aside)."""
    for commit in table.history():
        if commit.get("operation") in _DATA_OPERATIONS:
            return datetime.fromtimestamp(commit["timestamp"] / 1000, UTC)
    return None


@dataclass(frozen=True)
class Check:
    """One check the contract implies for its table, and how to evaluate it on a stack."""

    name: str
    description: str
    blocking: bool
    """Protects consumers: a failure should stop what is built downstream of the table."""
    warn_only: bool
    evaluate: Callable[[Stack, Contract, datetime | None], CheckOutcome]
    """(stack, contract, when the table was last synced, if known) -> outcome."""


def checks_for(contract: Contract) -> list[Check]:
    """Every check `contract` implies for its table: structure always, then what it declares."""
    consumers_read = contract.kind in ("identity", "extension")
    checks = [
        Check(
            "conforms_to_contract",
            f"The Delta schema is {contract.name} v{contract.version}'s, and values keep its"
            " allowed values, minimums and lengths.",
            consumers_read,
            False,
            lambda stack, c, _: schema_conformance(stack.lake.table(c)),
        ),
        Check(
            "key_is_unique",
            f"No two rows share {', '.join(contract.key_fields)}.",
            consumers_read,
            False,
            lambda stack, c, _: key_uniqueness(stack.lake.table(c)),
        ),
        Check(
            "required_fields_filled",
            "Every field the contract declares non-nullable holds a value.",
            consumers_read,
            False,
            lambda stack, c, _: required_fields(stack.lake.table(c)),
        ),
    ]
    references = [f"{f.name} -> {f.references}" for f in contract.fields if f.references]
    if references:
        checks.append(
            Check(
                "references_live_rows",
                f"Every row names a live row where it refers ({'; '.join(references)}); rows"
                " whose identity was deleted after the last sync wait for the next one.",
                consumers_read,
                False,
                lambda stack, c, synced: referential_integrity(
                    stack.lake, stack.lake.table(c), synced_at=synced
                ),
            )
        )
    if contract.freshness is not None:
        # A warning: rebuilding downstream tables cannot make this one fresher.
        checks.append(
            Check(
                "fresh",
                f"The table is at most {format_duration(contract.freshness.max_age)} behind its source"
                + (
                    " (events waiting on the bus or logged but not merged)."
                    if contract.kind == "identity"
                    else ", counted on the owning spoke's clock."
                ),
                False,
                True,
                _freshness,
            )
        )
    return checks


def reconciliation_outcome(rec: Reconciliation) -> CheckOutcome:
    """Spoke against lake as a check: every live spoke row not in quarantine is in the lake
    with the same source updated_at, and the lake holds nothing else."""
    if rec.ok:
        summary = f"{rec.lake_rows} rows as the spoke holds them ({rec.quarantined} in quarantine)"
    else:
        summary = (
            f"{len(rec.missing_in_lake)} missing in the lake, {len(rec.extra_in_lake)} only in"
            f" the lake, {len(rec.differing)} differing"
        )
        if rec.extra_in_lake:
            summary += (
                "; rows only in the lake were deleted at the spoke since the last sync, or behind"
                " its triggers (then sync with --compare-keys, Dagster config compare_keys: true)"
            )
    return CheckOutcome(
        passed=rec.ok,
        summary=summary,
        counts={"spoke_rows": rec.spoke_rows, "lake_rows": rec.lake_rows},
        failing_keys=[*rec.missing_in_lake, *rec.extra_in_lake, *rec.differing][:FIRST_KEYS],
    )


def reconciles_with_spoke(stack: Stack, contract: Contract) -> CheckOutcome:
    """The reconciliation of a domain table with the spoke that owns it."""
    return reconciliation_outcome(reconcile(stack.lake, stack.spokes[contract.owner], contract))


RECONCILIATION = Check(
    "reconciles_with_spoke",
    "Every live row of the owning spoke not in quarantine is in the table with the same source"
    " updated_at, and the table holds nothing else.",
    True,
    False,
    lambda stack, c, _: reconciles_with_spoke(stack, c),
)
"""A domain table's check against its spoke (Dagster runs it as its own asset check)."""


def run_checks(stack: Stack) -> list[tuple[str, Check, CheckOutcome]]:
    """Every check of every lake table, outside Dagster, the domain tables' reconciliation with
    their spokes included: (table, check, outcome) in order."""
    results = []
    for contract in stack.catalog.tables():
        synced = last_data_commit(stack.lake.table(contract))
        checks = checks_for(contract) + ([RECONCILIATION] if contract.kind == "extension" else [])
        for check in checks:
            results.append((contract.table_name, check, check.evaluate(stack, contract, synced)))
    return results


def _freshness(stack: Stack, contract: Contract, synced_at: datetime | None) -> CheckOutcome:
    if contract.kind == "identity":
        return identity_freshness(stack.lake, contract, stack.identity_lag_s())
    return domain_freshness(
        stack.lake.table(contract), spoke_timezone(stack.settings, contract), synced_at=synced_at
    )


def spoke_timezone(settings: Settings, contract: Contract) -> ZoneInfo:
    """The time zone the spoke owning `contract` syncs in (its night, its business day)."""
    return settings.sync_window(contract.owner)[1]


def _max_age(contract: Contract) -> timedelta:
    if contract.freshness is None:
        raise ValueError(f"{contract.name} states no freshness; add `freshness: {{max_age: 26h}}`")
    return contract.freshness.max_age


def _hours(span: timedelta) -> float:
    return round(span.total_seconds() / 3600, 3)


def _keys(table: LakeTable, where: pl.Expr) -> list[str]:
    key = list(table.contract.key_fields)
    rows = table.scan().filter(where).select(key).sort(key).head(FIRST_KEYS).collect()
    return [_key_text(row, key) for row in rows.iter_rows(named=True)]


def _key_text(row: dict[str, object], key: list[str]) -> str:
    return "/".join(str(row[k]) for k in key)


def _same_type(actual: pa.DataType, expected: pa.DataType) -> bool:
    # Delta has one string type; readers may see it as large_string or string_view.
    strings = {pa.string(), pa.large_string(), pa.string_view()}
    return actual == expected or (actual in strings and expected in strings)
