"""Every request lands in the append-only api_audit_log: who, what, whom, never a value read."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from hubspoke_graphql.audit import AUDIT_TABLE, reads_of
from starlette.applications import Starlette
from typer.testing import CliRunner

from hubspoke.cli import app as cli
from hubspoke.stack import Stack

Query = Callable[..., dict[str, Any]]


def test_a_read_is_audited_without_pii_or_key(
    query: Query,
    http: Callable[..., Any],
    app: Starlette,
    stack: Stack,
    live_ids: list[str],
    identities: dict[str, Any],
    api_keys: dict[str, str],
) -> None:
    cid = live_ids[0]
    text = "query Lookup($id: ID!) { customer(id: $id) { name email sales { accountValue } } }"
    query(text, role="sales", id=cid)
    query(text, role="sales", id=cid)  # the second answer comes from the answer cache
    http("POST", "/graphql", role=None, json={"query": "{ __typename }"})
    assert app.state.audit.flush() == 3

    mine = [r for r in reads_of(stack.lake, cid) if r["operation"] == "Lookup"]
    assert len(mine) >= 2
    record = mine[-1]
    assert record["role"] == "sales"
    assert record["customer_count"] == 1
    assert record["outcome"] == "ok"
    assert {
        "Query.customer",
        "Customer.name",
        "Customer.email",
        "CustomerSalesDomain.accountValue",
    } <= set(record["fields"])
    rows = stack.lake.table(AUDIT_TABLE).read().to_pylist()
    assert any(r["role"] == "none" and r["outcome"] == "refused" for r in rows)

    # Neither the values read nor any key are in the audit table's files.
    person = identities[cid]
    for path in Path(stack.lake.table(AUDIT_TABLE).path).rglob("*.parquet"):
        text_of_file = str(pq.read_table(path).to_pylist()) + path.read_bytes().decode("latin-1")
        for secret in (person["name"], person["email"], *api_keys.values()):
            assert secret not in text_of_file


def test_a_page_records_every_id_it_returned(query: Query, app: Starlette, stack: Stack) -> None:
    nodes = query("query Page { customers(first: 5) { nodes { id } } }", role="analyst")
    ids = [n["id"] for n in nodes["data"]["customers"]["nodes"]]
    app.state.audit.flush()
    records = [
        r for r in stack.lake.table(AUDIT_TABLE).read().to_pylist() if r["operation"] == "Page"
    ]
    assert records[-1]["customer_ids"] == ids
    assert records[-1]["customer_count"] == 5


def test_audit_command_answers_who_read_a_person(
    query: Query, app: Starlette, stack: Stack, live_ids: list[str]
) -> None:
    cid = live_ids[-1]
    query("query WhoIs($id: ID!) { customer(id: $id) { id } }", role="billing", id=cid)
    app.state.audit.flush()
    result = CliRunner().invoke(cli, ["audit", "--customer", cid, "--home", str(stack.home)])
    assert result.exit_code == 0, result.output
    assert "billing" in result.output and "WhoIs" in result.output
    nobody = CliRunner().invoke(
        cli, ["audit", "--customer", "no-such-id", "--home", str(stack.home), "--json"]
    )
    assert nobody.exit_code == 0 and nobody.output.strip() == "[]"
