"""The identity sensor asks for an ingestion run exactly when identity events wait."""

from pathlib import Path

import dagster as dg
import pytest

from hubspoke.config import Settings
from hubspoke.stack import Stack
from pipelines.assets import ingest_identity_events
from pipelines.definitions import defs
from pipelines.jobs import identity_ingestion_job
from pipelines.resources import HubspokeResource
from pipelines.sensors import identity_events_sensor


@pytest.fixture
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


def _tick(instance: dg.DagsterInstance, home: Path) -> dg.RunRequest | dg.SkipReason:
    context = dg.build_sensor_context(
        instance=instance, resources={"hubspoke": HubspokeResource(home=str(home))}
    )
    return identity_events_sensor(context)


def test_requests_a_run_while_events_wait(instance: dg.DagsterInstance, home: Path) -> None:
    request = _tick(instance, home)
    assert isinstance(request, dg.RunRequest)
    assert request.run_key
    assert identity_events_sensor.job_name == identity_ingestion_job.name


def test_requests_a_run_for_events_relayed_but_not_ingested(
    instance: dg.DagsterInstance, home: Path
) -> None:
    with Stack.open(Settings(home=home)) as stack:
        assert stack.relay() > 0
        assert stack.hub.pending() > 0
    request = _tick(instance, home)
    assert isinstance(request, dg.RunRequest)
    assert "bus:" in (request.run_key or "")


def test_skips_when_nothing_waits(
    instance: dg.DagsterInstance, home: Path, resources: dict[str, HubspokeResource]
) -> None:
    dg.materialize([ingest_identity_events], resources=resources)
    skip = _tick(instance, home)
    assert isinstance(skip, dg.SkipReason)
    assert "no identity events" in (skip.skip_message or "")


def test_skips_without_creating_a_missing_home(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    skip = _tick(instance, tmp_path / "nowhere")
    assert isinstance(skip, dg.SkipReason)
    assert not (tmp_path / "nowhere").exists()


def test_new_events_get_a_new_run_key(instance: dg.DagsterInstance, home: Path) -> None:
    first = _tick(instance, home)
    assert _tick(instance, home).run_key == first.run_key  # same backlog, same key
    with Stack.open(Settings(home=home)) as stack:
        stack.spokes["support"].create_customer("Ada Lovelace", "ada@example.com")
    assert _tick(instance, home).run_key != first.run_key


def test_skips_while_an_ingestion_run_waits_to_start(
    instance: dg.DagsterInstance, home: Path
) -> None:
    job = defs.resolve_job_def(identity_ingestion_job.name)
    instance.create_run_for_job(job, status=dg.DagsterRunStatus.NOT_STARTED)
    skip = _tick(instance, home)
    assert isinstance(skip, dg.SkipReason)
    assert "not started yet" in (skip.skip_message or "")
