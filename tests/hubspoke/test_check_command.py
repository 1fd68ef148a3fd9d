"""`hubspoke check`: the lake's quality checks outside Dagster, with an exit code for scripts."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
from typer.testing import CliRunner

from hubspoke.cli import app
from hubspoke.config import Settings
from hubspoke.simulate import Simulator
from hubspoke.stack import Stack

runner = CliRunner()


def test_check_passes_on_a_synced_lake_and_fails_on_an_orphan(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Stack.create(Settings(home=home)) as stack:
        Simulator(stack).seed(15)
        stack.sync()

    result = runner.invoke(app, ["check", "--json", "--home", str(home)])

    assert result.exit_code == 0, result.output
    outcomes = json.loads(result.output)
    assert {(o["table"], o["check"]) for o in outcomes} >= {
        ("customer_identity", "key_is_unique"),
        ("customer_sales_domain", "references_live_rows"),
        ("customer_billing_domain", "fresh"),
        ("customer_sales_domain", "reconciles_with_spoke"),
        ("customer_support_domain", "reconciles_with_spoke"),
    }
    assert all(o["passed"] for o in outcomes)

    with Stack.open(Settings(home=home)) as stack:
        sales = stack.lake.table("customer_sales_domain")
        row = sales.read().slice(0, 1).to_pylist()[0] | {"customer_id": "cust-nobody"}
        sales.append(pa.Table.from_pylist([row], schema=sales.contract.arrow_schema()))

    result = runner.invoke(app, ["check", "--home", str(home)])

    assert result.exit_code == 1
    assert "FAIL" in result.output and "cust-nobody" in result.output


def test_check_without_a_home_says_how_to_make_one(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", "--home", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "no Hubspoke home" in result.output


def test_check_reconciles_each_domain_table_with_its_spoke(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Stack.create(Settings(home=home)) as stack:
        Simulator(stack).seed(15)
        stack.sync()
        synced = stack.lake.table("customer_sales_domain").read(columns=["customer_id"])
        gone = synced["customer_id"][0].as_py()
        sales = stack.spokes["sales"]
        sales.db.execute("DELETE FROM account WHERE customer_id = ?", [gone])  # not synced yet

    result = runner.invoke(app, ["check", "--json", "--home", str(home)])

    assert result.exit_code == 1
    [failed] = [o for o in json.loads(result.output) if not o["passed"]]
    assert (failed["table"], failed["check"]) == ("customer_sales_domain", "reconciles_with_spoke")
    assert failed["failing_keys"] == [gone] and "1 only in the lake" in failed["summary"]
