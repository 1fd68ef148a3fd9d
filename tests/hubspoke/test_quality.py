"""Each quality check passes on a healthy lake and fails, naming the rows, on purpose-made bad data."""

from __future__ import annotations

import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
from deltalake import write_deltalake
from hypothesis import given, settings
from hypothesis import strategies as st

from hubspoke import quality
from hubspoke.ingest import PROJECTION_APP
from hubspoke.lake import LakeTable
from hubspoke.simulate import Simulator
from hubspoke.stack import Stack
from lake_schema import load_catalog


@pytest.fixture
def lake_stack(stack: Stack) -> Stack:
    """25 customers propagated and every domain synced: a lake every check passes on."""
    Simulator(stack).seed(25)
    stack.sync()
    return stack


def _first_row(table: LakeTable) -> dict[str, object]:
    return table.read().slice(0, 1).to_pylist()[0]


def _loose_table(table: LakeTable, tmp_path: Path, rows: list[dict[str, object]]) -> LakeTable:
    """A Delta table with the contract's columns but no NOT NULL constraints, holding `rows`."""
    schema = pa.schema([f.with_nullable(True) for f in table.contract.arrow_schema()])
    path = tmp_path / f"loose_{table.name}"
    write_deltalake(str(path), pa.Table.from_pylist(rows, schema=schema))
    return LakeTable(table.contract, path)


def test_every_check_passes_on_a_healthy_lake(lake_stack: Stack) -> None:
    lake = lake_stack.lake
    for table in lake.tables():
        for outcome in (
            quality.schema_conformance(table),
            quality.key_uniqueness(table),
            quality.required_fields(table),
            quality.referential_integrity(lake, table),
        ):
            assert outcome.passed, (table.name, outcome)
    identity = lake.catalog.get("customer_identity")
    assert quality.identity_freshness(lake, identity, lake_stack.identity_lag_s()).passed
    sales = lake.table("customer_sales_domain")
    assert quality.domain_freshness(sales, ZoneInfo("UTC")).passed


def test_duplicate_keys_fail_uniqueness_with_the_key(lake_stack: Stack) -> None:
    identity = lake_stack.lake.table("customer_identity")
    row = _first_row(identity)
    identity.append(pa.Table.from_pylist([row, row], schema=identity.contract.arrow_schema()))

    outcome = quality.key_uniqueness(identity)

    assert not outcome.passed
    assert outcome.failing_keys == [row["id"]]
    assert outcome.counts["duplicated_keys"] == 1


def test_nulls_in_required_fields_fail_with_the_field_and_the_key(
    lake_stack: Stack, tmp_path: Path
) -> None:
    sales = lake_stack.lake.table("customer_sales_domain")
    good, bad = sales.read().slice(0, 2).to_pylist()
    bad["account_value"] = None
    loose = _loose_table(sales, tmp_path, [good, bad])

    outcome = quality.required_fields(loose)

    assert not outcome.passed
    assert outcome.counts["null_account_value"] == 1
    assert outcome.counts["null_credit_limit"] == 0
    assert outcome.failing_keys == [bad["customer_id"]]
    assert "account_value: 1 nulls" in outcome.summary


def test_values_outside_the_contract_fail_conformance(lake_stack: Stack) -> None:
    billing = lake_stack.lake.table("customer_billing_domain")
    row = _first_row(billing) | {"customer_id": "cust-bad-terms", "payment_terms": "NET7"}
    billing.append(pa.Table.from_pylist([row], schema=billing.contract.arrow_schema()))

    outcome = quality.schema_conformance(billing)

    assert not outcome.passed
    assert outcome.failing_keys == ["cust-bad-terms"]
    assert outcome.counts["rows_breaking_limits"] == 1


def test_a_table_whose_schema_drifted_fails_conformance(lake_stack: Stack, tmp_path: Path) -> None:
    support = lake_stack.lake.table("customer_support_domain")
    path = tmp_path / "drifted"
    write_deltalake(
        str(path),
        pa.table({"customer_id": ["c1"], "support_tier": ["gold"], "lifetime_tickets": ["12"]}),
    )

    outcome = quality.schema_conformance(LakeTable(support.contract, path))

    assert not outcome.passed
    assert "missing column 'updated_at'" in outcome.summary
    assert "column 'lifetime_tickets' is string, the contract says int64" in outcome.summary


def test_domain_rows_without_a_live_identity_fail_referential_integrity(
    lake_stack: Stack,
) -> None:
    lake = lake_stack.lake
    sales = lake.table("customer_sales_domain")
    identity = lake.table("customer_identity")
    row = _first_row(sales)
    deleted = row | {"customer_id": "cust-deleted"}
    unknown = row | {"customer_id": "cust-unknown"}
    sales.append(pa.Table.from_pylist([deleted, unknown], schema=sales.contract.arrow_schema()))
    deleted_at = datetime.now(UTC)
    gone = _first_row(identity) | {"id": "cust-deleted", "deleted": True, "deleted_at": deleted_at}
    identity.append(pa.Table.from_pylist([gone], schema=identity.contract.arrow_schema()))

    outcome = quality.referential_integrity(lake, sales)

    assert not outcome.passed
    assert outcome.failing_keys == ["cust-deleted", "cust-unknown"]
    assert outcome.counts["orphans_customer_id"] == 2

    # Deleted after the last sync: the next sync removes the row, so it is not an orphan yet.
    synced_before = deleted_at - timedelta(hours=1)
    pending = quality.referential_integrity(lake, sales, synced_at=synced_before)
    assert pending.failing_keys == ["cust-unknown"]
    assert pending.counts == {"orphans_customer_id": 1, "awaiting_sync_customer_id": 1}
    synced_after = deleted_at + timedelta(hours=1)
    late = quality.referential_integrity(lake, sales, synced_at=synced_after)
    assert late.failing_keys == ["cust-deleted", "cust-unknown"]


def test_identity_lag_beyond_the_contract_fails_freshness(lake_stack: Stack) -> None:
    lake = lake_stack.lake
    contract = lake.catalog.get("customer_identity")
    assert not quality.identity_freshness(lake, contract, pending_lag_s=301).passed

    # A batch logged ten minutes ago and never merged into customer_identity.
    log = lake.table("identity_events")
    merged = lake.table(contract).progress(PROJECTION_APP) or 0
    ten_minutes_ago = datetime.now(UTC) - timedelta(minutes=10)
    row = _first_row(log) | {
        "event_id": "ev-unmerged",
        "disposition": "applied",
        "batch": merged + 1,
        "received_at": ten_minutes_ago,
    }
    log.append(pa.Table.from_pylist([row], schema=log.contract.arrow_schema()))

    outcome = quality.identity_freshness(lake, contract, pending_lag_s=0)

    assert not outcome.passed
    assert outcome.counts["unmerged_events"] == 1
    assert 595 < outcome.counts["lag_s"] < 700
    assert outcome.counts["max_lag_s"] == 300


def test_a_domain_synced_more_than_26_hours_ago_fails_freshness(lake_stack: Stack) -> None:
    sales = lake_stack.lake.table("customer_sales_domain")
    now = datetime.now(UTC)
    utc = ZoneInfo("UTC")

    late = quality.domain_freshness(sales, utc, synced_at=now - timedelta(hours=27), now=now)
    on_time = quality.domain_freshness(sales, utc, synced_at=now - timedelta(hours=25), now=now)

    assert not late.passed and late.counts["age_h"] == 27
    assert "overdue since" in late.summary
    assert on_time.passed


def test_domain_freshness_counts_on_the_spokes_wall_clock_across_daylight_saving() -> None:
    table = LakeTable(load_catalog().get("customer_sales_domain"), Path("unused"))
    berlin = ZoneInfo("Europe/Berlin")
    synced = datetime(2026, 10, 24, 2, 0, tzinfo=berlin)  # the night before clocks go back
    # 26 wall-clock hours later is 04:00 CET on the 25th, 27 hours later in absolute time.
    just_in = datetime(2026, 10, 25, 3, 30, tzinfo=berlin)
    too_late = datetime(2026, 10, 25, 4, 30, tzinfo=berlin)

    assert quality.domain_freshness(table, berlin, synced_at=synced, now=just_in).passed
    assert not quality.domain_freshness(table, berlin, synced_at=synced, now=too_late).passed


def test_freshness_of_a_domain_never_synced_fails(stack: Stack) -> None:
    sales = stack.lake.table("customer_sales_domain")
    outcome = quality.domain_freshness(sales, ZoneInfo("UTC"))
    assert not outcome.passed and outcome.summary == "never synced"


@settings(max_examples=15, deadline=None)
@given(keys=st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=40))
def test_uniqueness_reports_exactly_the_duplicated_keys_in_any_write_order(
    keys: list[int],
) -> None:
    contract = load_catalog().get("customer_sales_domain")
    with tempfile.TemporaryDirectory() as folder:
        table = LakeTable(contract, Path(folder) / "sales")
        table.create_if_missing()
        rows = [
            {
                "customer_id": f"c{k:02d}",
                "account_value": Decimal(1),
                "sales_rep": None,
                "credit_limit": Decimal(1),
                "updated_at": datetime(2026, 1, 1, tzinfo=UTC),
            }
            for k in keys
        ]
        for start in range(0, len(rows), 7):  # several commits: duplicates across files too
            table.append(contract.to_arrow(rows[start : start + 7]))

        outcome = quality.key_uniqueness(table)

    duplicated = sorted(f"c{k:02d}" for k, n in Counter(keys).items() if n > 1)
    assert outcome.passed == (not duplicated)
    assert outcome.failing_keys == duplicated
    assert outcome.counts == {"duplicated_keys": len(duplicated), "rows": len(keys)}
