"""A Dagster instance on PostgreSQL (deploy/postgres/dagster.yaml) records what the assets did."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from dagster._core.instance.ref import InstanceRef  # how DAGSTER_HOME's dagster.yaml is read

from hubspoke.config import DAGSTER_PG_SCHEME, ConfigError, Settings
from hubspoke.stack import Stack
from pipelines.assets import DOMAIN_ASSETS, ingest_identity_events
from pipelines.resources import HubspokeResource

pytestmark = pytest.mark.services
ROOT = Path(__file__).resolve().parents[2]
SERVER = "postgresql://postgres@127.0.0.1:5432"


@pytest.fixture
def dagster_pg_url(services: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A database of its own for the Dagster instance, dropped afterwards."""
    name = f"hubspoke_dagster_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{SERVER.replace('postgresql://', DAGSTER_PG_SCHEME)}/{name}"
    monkeypatch.setenv("HUBSPOKE_DAGSTER_PG_URL", url)
    yield url
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_assets_materialize_on_a_postgres_backed_instance(
    dagster_pg_url: str, resources: dict[str, HubspokeResource], stack: Stack, tmp_path: Path
) -> None:
    assert Settings.from_env().dagster_pg_url == dagster_pg_url
    ref = InstanceRef.from_dir(str(tmp_path), config_dir=str(ROOT / "deploy" / "postgres"))
    with dg.DagsterInstance.from_ref(ref) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"

        first = dg.materialize([ingest_identity_events], resources=resources, instance=instance)
        # Each domain is partitioned by its own spoke's nights: one run per domain.
        night = "2026-11-28"
        syncs = [
            dg.materialize([a], resources=resources, instance=instance, partition_key=night)
            for a in DOMAIN_ASSETS
        ]

        assert first.success and all(s.success for s in syncs)
        recorded = instance.get_latest_materialization_event(dg.AssetKey("customer_sales_domain"))
        assert recorded is not None
        meta = recorded.asset_materialization.metadata
        assert meta["dagster/row_count"].value == stack.lake.table("customer_sales_domain").count()
    with psycopg.connect(dagster_pg_url.replace(DAGSTER_PG_SCHEME, "postgresql://")) as db:
        [(runs,)] = db.execute("SELECT count(*) FROM runs").fetchall()
        [(materializations,)] = db.execute(
            "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
        ).fetchall()
    assert runs == 1 + len(DOMAIN_ASSETS)
    assert materializations == 2 + len(DOMAIN_ASSETS)


def test_a_dagster_pg_url_that_is_not_postgres_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    for url in ("mysql://root@127.0.0.1/dagster", "postgresql://postgres@127.0.0.1/dagster"):
        monkeypatch.setenv("HUBSPOKE_DAGSTER_PG_URL", url)
        with pytest.raises(ConfigError, match="must be a PostgreSQL URL for psycopg2"):
            Settings.from_env()
