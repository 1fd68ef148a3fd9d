"""The command line as a user runs it: demo, status, sync, consume, and clear errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from hubspoke.cli import app

runner = CliRunner()


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.output


def test_demo_twice_on_one_home_continues_without_duplicating(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    code, out = run("demo", "--no-serve", "--customers", "60", "--home", home)
    assert code == 0, out
    assert "nightly delta sync" in out and f"{Path(home).resolve()}/lake" in out.replace("\n", "")
    extracted = re.search(r"│ sales +│ +(\d+) │", out)
    took = re.search(r"sales (\d+\.\d\d) s", out.replace("\n", " "))
    assert extracted and int(extracted[1]) > 0 and took and float(took[1]) > 0
    first = json.loads(run("status", "--json", "--home", home)[1])
    assert first["tables"]["customer_identity"]["rows"] == 60
    assert first["events"]["pending"] == 0

    code, out = run("demo", "--no-serve", "--customers", "60", "--home", home)
    assert code == 0 and "not reseeding" in out
    second = json.loads(run("status", "--json", "--home", home)[1])
    assert second["events"] == first["events"]
    assert second["tables"]["customer_identity"] == first["tables"]["customer_identity"]


def test_sync_lists_the_rows_it_holds_back_and_why(tmp_path: Path) -> None:
    from hubspoke.config import Settings
    from hubspoke.stack import Stack

    home = tmp_path / "home"
    assert run("init", "--home", str(home))[0] == 0
    with Stack.open(Settings(home=home)) as stack:
        customer = stack.spokes["billing"].create_customer("Ada", "ada@example.com")
        stack.propagate()
        stack.spokes["billing"].save_domain(customer, {"vat_id": None, "terms_days": 45})
        # A value that reads as rich markup is printed as it is.
        stack.spokes["support"].save_domain(
            customer, {"TIER_CD": "[/x]", "TKT_CNT": "1", "DEL_FLG": "N"}
        )
    code, out = run("sync", "--home", str(home))
    assert code == 0, out
    assert "[/x]" in out
    # The table folds long cells over several lines: look for pieces short enough to stay whole.
    assert "held in sync_quarantine" in out and customer[:8] in out and "'NET45'" in out


def test_status_json_has_the_accounting(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    run("init", "--home", home)
    code, out = run("simulate", "--events", "40", "--home", home)
    assert code == 0, out
    assert run("consume", "--home", home)[0] == 0
    state = json.loads(run("status", "--json", "--home", home)[1])
    events = state["events"]
    assert set(events) == {
        "received",
        "applied",
        "duplicate",
        "stale",
        "parked",
        "dead_lettered",
        "pending",
    }
    assert events["received"] == sum(
        events[k] for k in ("applied", "duplicate", "stale", "parked", "dead_lettered")
    )
    assert events["received"] > 0 and events["pending"] == 0
    assert isinstance(state["lag_s"], float)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["status"], {}, "no Hubspoke home at"),
        (["sync", "--domain", "marketing"], {}, "known domains: billing, sales, support"),
        (["status"], {"HUBSPOKE_SCHEDULE_TZ": "Mars/Olympus"}, "is not an IANA time zone"),
        (["status"], {"HUBSPOKE_BATCH_SIZE": "lots"}, "must be a whole number"),
        (["simulate", "--events", "0"], {}, "--events"),
    ],
    ids=["missing-home", "unknown-domain", "bad-timezone", "bad-batch-size", "bad-argument"],
)
def test_bad_input_gets_one_clear_error_and_exit_2(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    home = tmp_path / "home"
    if args[0] == "sync":
        run("init", "--home", str(home))
    code, out = run(*args, "--home", str(home), env=env)
    assert code == 2
    assert message in out
    if args[0] != "simulate":  # usage errors are click's multi-line box
        assert len(out.strip().splitlines()) == 1


def test_dead_letter_is_listed_replayed_and_counted_once(tmp_path: Path) -> None:
    from hubspoke.bus import IDENTITY_TOPIC
    from hubspoke.config import Settings
    from hubspoke.stack import Stack

    home = tmp_path / "home"
    run("init", "--home", str(home))
    event = {
        "event_id": "e-1",
        "event_type": "created",
        "entity": "customer",
        "entity_id": "c-1",
        "source": "sales",
        "occurred_at": "2026-01-01T00:00:00",
        "data": {"name": "Ada", "email": "ada@example.com"},
    }
    with Stack.open(Settings(home=home)) as stack:
        stack.bus.publish(IDENTITY_TOPIC, [json.dumps(event).encode()])  # naive timestamp
    run("consume", "--home", str(home))
    [dead] = json.loads(run("dead-letters", "list", "--json", "--home", str(home))[1])
    assert "occurred_at must carry a UTC offset" in dead["reason"]
    code, out = run("dead-letters", "replay", "not-an-id", "--home", str(home))
    assert code == 2 and "is not a dead letter id" in out

    # Replaying unchanged fails again (and comes back as a new dead letter): nothing is lost.
    assert run("dead-letters", "replay", dead["dead_letter_id"], "--home", str(home))[0] == 0
    run("consume", "--home", str(home))
    [again] = json.loads(run("dead-letters", "list", "--json", "--home", str(home))[1])
    assert again["reason"] == dead["reason"] and again["dead_letter_id"] != dead["dead_letter_id"]
    events = json.loads(run("status", "--json", "--home", str(home))[1])["events"]
    assert (events["received"], events["dead_lettered"], events["applied"]) == (1, 1, 0)
    code, out = run("dead-letters", "replay", dead["dead_letter_id"], "--home", str(home))
    assert code == 2 and "no dead letter" in out


def test_python_dash_m_knows_every_command() -> None:
    # The module runs `app()` as a script: every command must be registered by then.
    shown = subprocess.run(
        [sys.executable, "-m", "hubspoke.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    names = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    assert "contracts" in names and all(f" {name} " in shown for name in names), shown
