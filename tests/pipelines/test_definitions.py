"""The code location loads, and what it declares is derived from the contracts."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from lake_schema import load_catalog
from pipelines.definitions import defs

ROOT = Path(__file__).resolve().parents[2]
catalog = load_catalog()


def test_definitions_load() -> None:
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert {"identity_ingestion_job", "sync_customer_sales_domain_job"} <= set(repo.job_names)
    assert repo.get_sensor_def("identity_events_sensor").job_name == "identity_ingestion_job"
    assert (
        repo.get_schedule_def("customer_sales_domain_nightly").job_name
        == "sync_customer_sales_domain_job"
    )


def test_one_domain_asset_per_extension_contract() -> None:
    graph = defs.get_repository_def().asset_graph
    for contract in catalog.extensions():
        node = graph.get(dg.AssetKey(contract.table_name))
        identity = catalog.identity(str(contract.entity))
        assert node.group_name == contract.owner
        assert f"team:{contract.owner}" in node.owners
        assert dg.AssetKey(identity.table_name) in node.parent_keys
        assert {"delta", "sqlite"} <= set(node.kinds)
        schema = node.metadata["dagster/column_schema"].schema
        assert [c.name for c in schema.columns] == contract.field_names
        privacy = {c.name: c.tags["privacy"] for c in schema.columns}
        assert privacy == {f.name: f.privacy.value for f in contract.fields}


def test_hub_writes_the_log_and_every_identity_table_in_one_step() -> None:
    graph = defs.get_repository_def().asset_graph
    keys = {"identity_events", *(c.table_name for c in catalog.identities())}
    for key in keys:
        node = graph.get(dg.AssetKey(key))
        assert node.group_name == "hub"
        assert node.owners[0] == "team:hub"
    assert len({graph.get(dg.AssetKey(k)).assets_def.node_def.name for k in keys}) == 1


def test_jobs_carry_checks_and_writer_tags() -> None:
    repo = defs.get_repository_def()
    assert repo.get_job("identity_ingestion_job").tags["hubspoke/writer"] == "hub"
    for contract in catalog.extensions():
        sync_job = repo.get_job(f"sync_{contract.table_name}_job")
        assert sync_job.tags["hubspoke/writer"] == f"sync.{contract.table_name}"
        checks = sync_job.asset_layer.asset_graph.asset_check_keys
        assert {k.asset_key.to_user_string() for k in checks} == {contract.table_name}


def test_dagster_cli_validates_the_code_location(tmp_path: Path) -> None:
    env = os.environ | {"HUBSPOKE_HOME": str(tmp_path / "home")}
    env.pop("DAGSTER_HOME", None)
    done = subprocess.run(
        [
            Path(sys.executable).parent / "dagster",
            "definitions",
            "validate",
            "-m",
            "pipelines.definitions",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (tmp_path / "home").exists()  # loading definitions creates no stack
