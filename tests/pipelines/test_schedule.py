"""Each domain syncs nightly at its spoke's own window and time zone, one partition per night."""

import importlib
from datetime import time

import dagster as dg
import pytest

import pipelines.assets.domains
import pipelines.definitions
import pipelines.jobs
import pipelines.schedules
import pipelines.sensors
from hubspoke.config import ConfigError, Settings
from lake_schema import load_catalog


def _reload() -> dg.Definitions:
    # Every module that holds a job or an asset, so the definitions see one object each.
    for module in (
        pipelines.assets.domains,
        pipelines.assets,
        pipelines.jobs,
        pipelines.sensors,
        pipelines.schedules,
    ):
        importlib.reload(module)
    return importlib.reload(pipelines.definitions).defs


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(
        "HUBSPOKE_SYNC_WINDOWS",
        "sales=02:00@America/New_York, support=03:30@Europe/Berlin,billing=01:00@Asia/Tokyo",
    )
    try:
        yield _reload()
    finally:
        monkeypatch.undo()
        _reload()


def test_settings_give_each_spoke_its_window() -> None:
    settings = Settings(sync_windows={"support": "03:30@Europe/Berlin"})
    at, zone = settings.sync_window("support")
    assert (at, zone.key) == (time(3, 30), "Europe/Berlin")
    assert settings.sync_window("sales")[0] == time(2, 0)  # default: 02:00 in the schedule zone


def test_schedules_honour_each_spokes_window_and_zone(windows: dg.Definitions) -> None:
    repo = windows.get_repository_def()
    expected = {
        "customer_sales_domain": ("0 2 * * *", "America/New_York"),
        "customer_support_domain": ("30 3 * * *", "Europe/Berlin"),
        "customer_billing_domain": ("0 1 * * *", "Asia/Tokyo"),
    }
    for table, (cron, zone) in expected.items():
        schedule = repo.get_schedule_def(f"customer_{table.split('_')[1]}_domain_nightly")
        assert (schedule.cron_schedule, schedule.execution_timezone) == (cron, zone)
        assert schedule.job_name == f"sync_{table}_job"
        job = repo.get_job(schedule.job_name)
        partitions = job.partitions_def
        assert isinstance(partitions, dg.DailyPartitionsDefinition)
        assert partitions.get_first_partition_key() == "2026-01-01"


def test_every_domain_has_a_partitioned_job() -> None:
    repo = pipelines.definitions.defs.get_repository_def()
    for contract in load_catalog().extensions():
        job = repo.get_job(f"sync_{contract.table_name}_job")
        assert job.partitions_def is not None
        assert job.tags["hubspoke/writer"] == f"sync.{contract.table_name}"


@pytest.mark.parametrize(
    "raw", ["sales=2am@UTC", "sales=02:00@Mars/Olympus", "sales", "=02:00@UTC", "sales=25:00@UTC"]
)
def test_bad_sync_window_is_refused_with_the_accepted_form(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("HUBSPOKE_SYNC_WINDOWS", raw)
    with pytest.raises(ConfigError, match="HH:MM@Area/City"):
        Settings.from_env()


def test_unknown_timezone_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBSPOKE_SCHEDULE_TZ", "Mars/Olympus")
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        Settings.from_env()


def test_bad_overlap_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBSPOKE_SYNC_OVERLAP_MIN", "soon")
    with pytest.raises(ConfigError, match="HUBSPOKE_SYNC_OVERLAP_MIN"):
        Settings.from_env()
