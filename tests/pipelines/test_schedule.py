"""The nightly domain sync runs at 02:00 in the time zone the settings name."""

import importlib

import pytest

import pipelines.definitions
from hubspoke.config import ConfigError, Settings
from lake_schema import load_catalog
from pipelines.schedules import build_nightly_domain_sync


def test_timezone_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBSPOKE_SCHEDULE_TZ", "Europe/Berlin")
    schedule = build_nightly_domain_sync(Settings.from_env())
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "Europe/Berlin"


def test_definitions_rebuilt_with_another_timezone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBSPOKE_SCHEDULE_TZ", "America/New_York")
    try:
        defs = importlib.reload(pipelines.definitions).defs
        schedule = defs.resolve_schedule_def("nightly_domain_sync")
        assert schedule.execution_timezone == "America/New_York"
        targets = defs.resolve_job_def(
            schedule.job_name
        ).asset_layer.asset_graph.get_all_asset_keys()
        assert {k.to_user_string() for k in targets} >= {
            c.table_name for c in load_catalog().extensions()
        }
    finally:
        monkeypatch.undo()
        importlib.reload(pipelines.definitions)


def test_unknown_timezone_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBSPOKE_SCHEDULE_TZ", "Mars/Olympus")
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        build_nightly_domain_sync(Settings.from_env())
