"""The repository's dagster.yaml is a valid instance with one run per lake writer."""

from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef  # how `dagster dev` reads ./dagster.yaml

from pipelines.definitions import defs

ROOT = Path(__file__).resolve().parents[2]


def test_dagster_yaml_limits_each_writer_to_one_run(tmp_path: Path) -> None:
    with dg.DagsterInstance.from_ref(
        InstanceRef.from_dir(str(tmp_path), config_dir=str(ROOT))
    ) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None
        [limit] = queue.tag_concurrency_limits
        assert limit == {
            "key": "hubspoke/writer",
            "value": {"applyLimitPerUniqueValue": True},
            "limit": 1,
        }
        assert instance.global_op_concurrency_default_limit == 1
        assert instance.run_monitoring_enabled


def test_every_lake_writer_has_a_pool() -> None:
    graph = defs.get_repository_def().asset_graph
    pools = {
        key.to_user_string(): graph.get(key).assets_def.node_def.pools
        for key in graph.materializable_asset_keys
    }
    assert pools["customer_identity"] == pools["identity_events"] == {"hub"}
    assert pools["customer_sales_domain"] == {"customer_sales_domain"}
