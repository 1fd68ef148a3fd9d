"""The contract-derived checks in Dagster: all green on a healthy lake, and blocking when not."""

import dagster as dg
import pyarrow as pa

from hubspoke.stack import Stack
from lake_schema import load_catalog
from pipelines.assets import DOMAIN_ASSETS, ingest_identity_events
from pipelines.definitions import defs
from pipelines.quality import QUALITY_CHECKS
from pipelines.resources import HubspokeResource

catalog = load_catalog()


def _evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        f"{e.asset_key.to_user_string()}:{e.check_name}": e
        for e in result.get_asset_check_evaluations()
    }


def _identity_checks() -> list[dg.AssetChecksDefinition]:
    return [
        c
        for c in QUALITY_CHECKS
        if {k.asset_key.to_user_string() for k in c.check_keys} == {"customer_identity"}
    ]


def test_every_lake_table_has_its_checks() -> None:
    graph = defs.get_repository_def().asset_graph
    names: dict[str, set[str]] = {}
    for key in graph.asset_check_keys:
        names.setdefault(key.asset_key.to_user_string(), set()).add(key.name)
    structural = {"conforms_to_contract", "key_is_unique", "required_fields_filled"}
    for contract in catalog.tables():
        assert structural <= names[contract.table_name], contract.table_name
    for contract in catalog.extensions():
        assert {"references_live_rows", "fresh", "reconciles_with_spoke"} <= names[
            contract.table_name
        ]
    assert "fresh" in names["customer_identity"]
    blocking = {
        f"{spec.asset_key.to_user_string()}:{spec.name}": spec.blocking
        for check in QUALITY_CHECKS
        for spec in check.check_specs
    }
    assert blocking["customer_identity:key_is_unique"]
    assert blocking["customer_sales_domain:references_live_rows"]
    assert not blocking["customer_sales_domain:fresh"]


def test_lake_checks_job_passes_on_a_synced_lake(
    resources: dict[str, HubspokeResource], stack: Stack
) -> None:
    stack.propagate()
    stack.sync()

    result = defs.resolve_job_def("lake_checks_job").execute_in_process(resources=resources)

    evaluations = _evaluations(result)
    assert len(evaluations) == sum(len(list(c.check_keys)) for c in QUALITY_CHECKS)
    failed = {k: e.description for k, e in evaluations.items() if not e.passed}
    assert not failed
    fresh = evaluations["customer_identity:fresh"].metadata
    assert fresh["lag_s"].value <= fresh["max_lag_s"].value == 300


def test_a_failing_blocking_check_stops_downstream_materializations(
    resources: dict[str, HubspokeResource], stack: Stack
) -> None:
    identity = stack.lake.table("customer_identity")
    row = identity.read().slice(0, 1).to_pylist()[0]
    identity.append(pa.Table.from_pylist([row], schema=identity.contract.arrow_schema()))

    result = dg.materialize(
        [ingest_identity_events, *DOMAIN_ASSETS, *_identity_checks()],
        resources=resources,
        raise_on_error=False,
    )

    check = _evaluations(result)["customer_identity:key_is_unique"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["first_failing_keys"].value == [row["id"]]
    assert check.metadata["duplicated_keys"].value == 1
    materialized = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}
    assert "customer_identity" in materialized
    assert not materialized & {c.table_name for c in catalog.extensions()}


def test_orphaned_domain_rows_fail_with_their_keys(
    resources: dict[str, HubspokeResource], stack: Stack
) -> None:
    stack.propagate()
    stack.sync()
    sales = stack.lake.table("customer_sales_domain")
    row = sales.read().slice(0, 1).to_pylist()[0] | {"customer_id": "cust-nobody"}
    sales.append(pa.Table.from_pylist([row], schema=sales.contract.arrow_schema()))

    result = defs.resolve_job_def("lake_checks_job").execute_in_process(
        resources=resources, raise_on_error=False
    )

    check = _evaluations(result)["customer_sales_domain:references_live_rows"]
    assert not check.passed
    assert check.metadata["first_failing_keys"].value == ["cust-nobody"]
    assert check.metadata["orphans_customer_id"].value == 1
    assert _evaluations(result)["customer_billing_domain:references_live_rows"].passed
