"""Materializing the assets in process moves data the way the CLI does, and the checks agree."""

from random import Random

import dagster as dg

from hubspoke.stack import Stack
from lake_schema import load_catalog
from pipelines.assets import DOMAIN_ASSETS, ingest_identity_events
from pipelines.checks import CONVERGENCE_CHECKS, RECONCILIATION_CHECKS
from pipelines.resources import HubspokeResource

catalog = load_catalog()
EVENT_COUNTS = ["received", "applied", "duplicate", "stale", "parked", "dead_lettered"]

NIGHT = "2026-11-28"
"""The nightly partition the tests run (each run syncs incrementally, whatever the night)."""


def _metadata(result: dg.ExecuteInProcessResult, key: str) -> dict[str, object]:
    [event] = [
        m for m in result.get_asset_materialization_events() if m.asset_key == dg.AssetKey(key)
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        f"{e.asset_key.to_user_string()}:{e.check_name}": e
        for e in result.get_asset_check_evaluations()
    }


def test_identity_ingestion_empties_the_backlog(
    resources: dict[str, HubspokeResource], stack: Stack
) -> None:
    waiting = stack.status()["events"]["pending"]
    log_rows = stack.lake.table("identity_events").count()
    log_version = stack.lake.table("identity_events").version()

    result = dg.materialize([ingest_identity_events, *CONVERGENCE_CHECKS], resources=resources)

    assert result.success
    status = stack.status()
    assert status["events"]["pending"] == 0
    log = _metadata(result, "identity_events")
    assert log["relayed"] > 0 and log["received"] >= waiting
    assert log["received"] == sum(log[k] for k in EVENT_COUNTS[1:])
    assert log["dagster/row_count"] == status["tables"]["identity_events"]["rows"] > log_rows
    assert log["delta_version"] == status["tables"]["identity_events"]["version"] > log_version
    assert isinstance(log["max_lag_s"], float)
    identity = _metadata(result, "customer_identity")
    assert identity["dagster/row_count"] == status["tables"]["customer_identity"]["rows"]
    assert identity["delta_version"] == status["tables"]["customer_identity"]["version"]
    assert all(e.passed for e in _checks(result).values())
    assert "customer_identity:spokes_converged" in _checks(result)


def test_domain_sync_loads_every_domain_and_reconciles(
    resources: dict[str, HubspokeResource], stack: Stack
) -> None:
    dg.materialize([ingest_identity_events], resources=resources)
    before = {c.table_name: stack.lake.table(c).count() for c in catalog.extensions()}
    assert set(before.values()) == {0}  # seeding propagates identities, never the nightly sync

    result = dg.materialize(
        [*DOMAIN_ASSETS, *RECONCILIATION_CHECKS], resources=resources, partition_key=NIGHT
    )

    assert result.success
    checks = _checks(result)
    for contract in catalog.extensions():
        meta = _metadata(result, contract.table_name)
        table = stack.lake.table(contract)
        assert meta["dagster/row_count"] == table.count() > 0
        assert meta["delta_version"] == table.version()
        assert meta["upserted"] == table.count()
        assert meta["extracted"] >= meta["upserted"] + meta["quarantined"]
        assert meta["watermark"] is not None
        # Where the night's time went, plotted per phase in the UI.
        phases = [meta[f"{p}_s"] for p in ("waiting", "extract", "checks", "merge", "finish")]
        assert all(isinstance(t, float) and t >= 0 for t in phases)
        assert meta["merge_s"] > 0
        assert abs(sum(phases) - meta["total_s"]) < 0.01  # every moment in one phase, rounded
        check = checks[f"{contract.table_name}:reconciles_with_spoke"]
        assert check.passed, check.metadata
        assert check.metadata["lake_rows"].value == table.count()


def test_second_sync_with_nothing_changed_commits_nothing(
    resources: dict[str, HubspokeResource], stack: Stack
) -> None:
    dg.materialize([ingest_identity_events], resources=resources)
    dg.materialize(DOMAIN_ASSETS, resources=resources, partition_key=NIGHT)

    result = dg.materialize(
        [*DOMAIN_ASSETS, *RECONCILIATION_CHECKS], resources=resources, partition_key=NIGHT
    )

    for contract in catalog.extensions():
        # Only the overlap window is re-read, and the lake already holds it as it is.
        meta = _metadata(result, contract.table_name)
        assert meta["upserted"] == 0 and meta["committed"] is False
    assert all(e.passed for e in _checks(result).values())


def test_reconciliation_fails_with_the_keys_that_differ(
    resources: dict[str, HubspokeResource], stack: Stack
) -> None:
    dg.materialize([ingest_identity_events], resources=resources)
    dg.materialize(DOMAIN_ASSETS, resources=resources, partition_key=NIGHT)
    sales = stack.spokes["sales"]
    changed = sorted(sales.domain_versions())[:3]
    for customer_id in changed:  # changes the nightly sync has not copied yet
        sales.save_domain(customer_id, sales.fake_domain(Random(1)))

    result = dg.materialize(
        [*DOMAIN_ASSETS, *RECONCILIATION_CHECKS],
        resources=resources,
        selection=dg.AssetSelection.checks_for_assets("customer_sales_domain"),
    )

    check = _checks(result)["customer_sales_domain:reconciles_with_spoke"]
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["differing"].value == changed


def test_a_delete_behind_the_triggers_back_is_propagated_with_compare_keys(
    resources: dict[str, HubspokeResource], stack: Stack
) -> None:
    dg.materialize([ingest_identity_events], resources=resources)
    dg.materialize(DOMAIN_ASSETS, resources=resources, partition_key=NIGHT)
    sales = stack.spokes["sales"]
    gone = sorted(sales.domain_versions())[0]
    s = sales.schema
    with sales.transaction() as db:  # as with the trigger disabled: no tombstone
        db.execute(f"DELETE FROM {s.domain_table} WHERE {s.domain_key} = ?", (gone,))
        db.execute("DELETE FROM hubspoke_tombstone WHERE deleted_key = ?", (gone,))
    sales_only = [a for a in DOMAIN_ASSETS if a.key == dg.AssetKey("customer_sales_domain")]
    with_check = dg.AssetSelection.assets("customer_sales_domain") | (
        dg.AssetSelection.checks_for_assets("customer_sales_domain")
    )

    nightly = dg.materialize(
        [*sales_only, *RECONCILIATION_CHECKS],
        resources=resources,
        partition_key=NIGHT,
        selection=with_check,
    )
    check = _checks(nightly)["customer_sales_domain:reconciles_with_spoke"]
    assert not check.passed and check.metadata["extra_in_lake"].value == [gone]
    assert "compare_keys" in (check.description or "")

    repaired = dg.materialize(
        [*sales_only, *RECONCILIATION_CHECKS],
        resources=resources,
        partition_key=NIGHT,
        selection=with_check,
        run_config={"ops": {"customer_sales_domain": {"config": {"compare_keys": True}}}},
    )
    meta = _metadata(repaired, "customer_sales_domain")
    assert meta["keys_compared"] is True and meta["deleted"] == 1
    assert _checks(repaired)["customer_sales_domain:reconciles_with_spoke"].passed
