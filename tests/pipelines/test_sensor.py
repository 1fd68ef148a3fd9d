"""The identity sensor observes freshness and launches a catch-up run only for a stalled backlog."""

import json
from pathlib import Path

import dagster as dg
import pytest

from hubspoke.config import Settings
from hubspoke.stack import Stack
from pipelines.assets import ingest_identity_events
from pipelines.jobs import identity_ingestion_job
from pipelines.resources import HubspokeResource
from pipelines.sensors import identity_events_sensor


@pytest.fixture
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


def _tick(instance: dg.DagsterInstance, home: Path, cursor: str | None = None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"hubspoke": HubspokeResource(home=str(home))},
    )
    return identity_events_sensor(context)


def test_stalled_backlog_launches_a_catch_up_run(
    instance: dg.DagsterInstance, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUBSPOKE_CATCH_UP_AFTER_S", "0")
    result = _tick(instance, home)
    [request] = result.run_requests
    assert request.run_key and request.run_key.startswith("identity-backlog")
    assert identity_events_sensor.job_name == identity_ingestion_job.name


def test_events_relayed_but_not_ingested_count_as_backlog(
    instance: dg.DagsterInstance, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUBSPOKE_CATCH_UP_AFTER_S", "0")
    with Stack.open(Settings(home=home)) as stack:
        assert stack.relay() > 0
        assert stack.hub.pending() > 0
    [request] = _tick(instance, home).run_requests
    assert "bus:" in (request.run_key or "")


def test_fresh_backlog_is_left_to_the_running_consumer(
    instance: dg.DagsterInstance, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUBSPOKE_CATCH_UP_AFTER_S", "3600")
    result = _tick(instance, home)
    assert not result.run_requests
    assert "the consumer has them" in str(result.skip_reason)


def test_observes_each_new_identity_version_once(
    instance: dg.DagsterInstance, home: Path, resources: dict[str, HubspokeResource]
) -> None:
    first = _tick(instance, home)
    [observation] = first.asset_events
    assert observation.asset_key == dg.AssetKey("customer_identity")
    assert observation.metadata["lag_s"].value > 0
    assert observation.metadata["pending"].value == 0  # still in the spokes' outboxes

    again = _tick(instance, home, first.cursor)
    assert not again.asset_events, "same version, no new observation"

    dg.materialize([ingest_identity_events], resources=resources)
    after = _tick(instance, home, again.cursor)
    [fresh] = after.asset_events
    assert fresh.metadata["delta_version"].value > observation.metadata["delta_version"].value
    assert fresh.metadata["lag_s"].value == 0
    assert json.loads(after.cursor)["customer_identity"] == fresh.metadata["delta_version"].value
    assert "no identity events" in str(after.skip_reason)


def test_skips_without_creating_a_missing_home(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    skip = _tick(instance, tmp_path / "nowhere")
    assert isinstance(skip, dg.SkipReason)
    assert not (tmp_path / "nowhere").exists()
