"""Maintenance and retention jobs: each step in its table's writer pool, results as metadata."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pyarrow as pa
import yaml
from hubspoke_graphql.audit import AUDIT_TABLE, AuditLog

from hubspoke.stack import Stack
from lake_schema import load_catalog
from pipelines.definitions import defs
from pipelines.jobs import WRITER_TAG
from pipelines.pools import writer_pool
from pipelines.resources import HubspokeResource

ROOT = Path(__file__).resolve().parents[2]
catalog = load_catalog()


def _observations(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, object]]:
    return {
        e.asset_key.to_user_string(): {
            k: v.value for k, v in e.event_specific_data.asset_observation.metadata.items()
        }
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_OBSERVATION
    }


def test_upkeep_steps_share_the_pool_of_their_tables_writer() -> None:
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    maintenance = repo.get_job("lake_maintenance_job")
    for contract in catalog.tables():
        step = maintenance.graph.node_named(f"maintain_{contract.table_name}").definition
        assert step.pool == writer_pool(contract)
        key = dg.AssetKey(contract.table_name)
        if key in graph.materializable_asset_keys:  # the asset that writes the table
            assert graph.get(key).assets_def.node_def.pools == {step.pool}
    retention = repo.get_job("retention_job")
    assert retention.graph.node_named("expire_identity_events").definition.pool == "hub"
    assert maintenance.tags[WRITER_TAG] == "lake_maintenance_job"
    assert retention.tags[WRITER_TAG] == "retention_job"
    schedules = {s.name: s for s in repo.schedule_defs}
    assert schedules["weekly_lake_maintenance"].job_name == "lake_maintenance_job"
    assert schedules["daily_retention"].job_name == "retention_job"
    # The audit log gains a file every 10 s: compacted daily, in its own writer's pool.
    audit = repo.get_job("audit_log_compaction_job")
    step = audit.graph.node_named("maintain_api_audit_log").definition
    assert step.pool == writer_pool(catalog.get("api_audit_log"))
    assert [n.name for n in audit.graph.nodes] == ["maintain_api_audit_log"]
    assert schedules["daily_audit_log_compaction"].job_name == "audit_log_compaction_job"
    assert schedules["daily_audit_log_compaction"].cron_schedule == "30 3 * * *"


def test_maintenance_job_compacts_and_reports_files_before_and_after(
    resources: dict[str, HubspokeResource], stack: Stack
) -> None:
    stack.propagate()  # after seeding: identity_events in several small files
    stack.sync()
    log = stack.lake.table("identity_events")
    rows = log.count()
    files = log.file_stats().active_files

    result = defs.resolve_job_def("lake_maintenance_job").execute_in_process(resources=resources)

    assert result.success
    seen = _observations(result)
    assert set(seen) == {c.table_name for c in catalog.tables()}
    meta = seen["identity_events"]
    assert meta["before_files"] == files > meta["after_files"] == 1
    assert meta["files_compacted"] == files
    assert meta["before_bytes"] > 0 and meta["after_bytes"] > 0
    assert log.count() == rows
    assert seen["customer_sales_domain"]["z_order"] == "customer_id"


def test_audit_log_compaction_folds_the_api_s_flushes_into_one_file(
    resources: dict[str, HubspokeResource], stack: Stack
) -> None:
    table = stack.lake.table(AUDIT_TABLE)
    table.create_if_missing()
    audit = AuditLog(table, interval=3600)
    for n in range(3):  # one file per flush
        audit.record(
            role="analyst",
            operation="Who",
            fields=["Customer.id"],
            customer_ids=[f"c{n}"],
            customer_count=1,
            outcome="ok",
        )
        audit.flush()
    files, rows = table.file_stats().active_files, table.count()

    result = defs.resolve_job_def("audit_log_compaction_job").execute_in_process(
        resources=resources
    )

    assert result.success
    meta = _observations(result)[AUDIT_TABLE]
    assert meta["before_files"] == files >= 3
    assert meta["after_files"] == 1
    assert table.count() == rows


def test_retention_job_expires_old_payloads(
    resources: dict[str, HubspokeResource], stack: Stack
) -> None:
    stack.propagate()
    log = stack.lake.table("identity_events")
    row = log.read().slice(0, 1).to_pylist()[0] | {
        "event_id": "ev-ancient",
        "received_at": datetime.now(UTC) - timedelta(days=91),
    }
    log.append(pa.Table.from_pylist([row], schema=log.contract.arrow_schema()))

    result = defs.resolve_job_def("retention_job").execute_in_process(resources=resources)

    assert _observations(result)["identity_events"]["rows_expired"] == 1
    expired = log.read().to_pylist()
    assert [r["data"] for r in expired if r["event_id"] == "ev-ancient"] == ["null"]
    assert all(
        r["data"] != "null"
        for r in expired
        if r["event_type"] != "deleted" and r["event_id"] != "ev-ancient"
    )


def test_postgres_instance_config_is_the_default_one_plus_storage() -> None:
    default = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    postgres = yaml.safe_load((ROOT / "deploy" / "postgres" / "dagster.yaml").read_text())
    storage = postgres.pop("storage")
    assert postgres == default
    assert storage == {"postgres": {"postgres_url": {"env": "HUBSPOKE_DAGSTER_PG_URL"}}}


def test_every_lake_table_is_an_asset_with_owner_steward_tags_and_retention() -> None:
    graph = defs.get_repository_def().asset_graph
    for contract in catalog.tables():
        node = graph.get(dg.AssetKey(contract.table_name))
        assert node.owners[:2] == [f"team:{contract.owner}", contract.steward]
        assert node.tags["domain"] == contract.owner
        assert node.tags["table_kind"] == contract.kind
        has_pii = any(f.privacy == "pii" for f in contract.fields)
        assert node.tags["privacy"] == ("pii" if has_pii else "no-pii")
        assert node.metadata["retention_history"].value == "7 days"
        schema = node.metadata["dagster/column_schema"].schema
        assert [c.name for c in schema.columns] == contract.field_names
    log = graph.get(dg.AssetKey("identity_events")).metadata
    assert log["retention_expires"].value == "data after 90 days (by received_at)"
    sales = graph.get(dg.AssetKey("customer_sales_domain")).metadata
    assert sales["freshness"].value == "26 hours"
    assert sales["z_order"].value == "customer_id"
