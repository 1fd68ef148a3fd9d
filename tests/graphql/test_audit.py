"""Every request lands in the append-only api_audit_log: who, what, whom, never a value read."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hubspoke_graphql.audit as audit_module
import pyarrow.parquet as pq
import pytest
from hubspoke_graphql.audit import AUDIT_TABLE, AuditLog, reads_of
from starlette.applications import Starlette
from typer.testing import CliRunner

from hubspoke.cli import app as cli
from hubspoke.lake import Lake
from hubspoke.stack import Stack
from lake_schema import load_catalog

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
    told = CliRunner().invoke(cli, ["audit", "--customer", "no-such-id", "--home", str(stack.home)])
    assert told.exit_code == 0 and "no API read of this customer is recorded" in told.output


def _record(audit: AuditLog, n: int) -> None:
    for i in range(n):
        audit.record(
            role="analyst",
            operation=f"Op{i}",
            fields=["Query.customer"],
            customer_ids=[f"c{i}"],
            customer_count=1,
            outcome="ok",
        )


def test_records_are_flushed_in_the_background_and_on_close(tmp_path: Path) -> None:
    lake = Lake(tmp_path, load_catalog())
    table = lake.table(AUDIT_TABLE)
    table.create_if_missing()
    audit = AuditLog(table, interval=0.1)
    _record(audit, 3)
    deadline = time.monotonic() + 5
    while table.count() < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert table.count() == 3
    versions = table.version()
    _record(audit, 2)
    audit.close()
    assert table.count() == 5
    assert table.version() <= versions + 1  # one commit for the records of a flush


def test_records_holding_many_ids_are_flushed_before_the_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_module, "FLUSH_IDS", 250)
    lake = Lake(tmp_path, load_catalog())
    table = lake.table(AUDIT_TABLE)
    table.create_if_missing()
    audit = AuditLog(table, interval=3600)
    page = [f"c{i}" for i in range(100)]

    def read_page() -> None:
        audit.record(
            role="analyst",
            operation="Page",
            fields=["Query.customers"],
            customer_ids=page,
            customer_count=len(page),
            outcome="ok",
        )

    read_page()
    read_page()
    time.sleep(0.3)
    assert table.count() == 0  # 200 ids wait for the interval
    read_page()  # 300 ids: written now, not in an hour
    deadline = time.monotonic() + 10
    while table.count() < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert table.count() == 3
    assert audit.pending() == []
    audit.close()


def test_a_worker_hands_its_records_over_and_the_writer_keeps_their_order(
    tmp_path: Path,
) -> None:
    lake = Lake(tmp_path, load_catalog())
    table = lake.table(AUDIT_TABLE)
    table.create_if_missing()
    received, sent = multiprocessing.Pipe(duplex=False)
    worker = AuditLog(table, outbox=sent)
    writer = AuditLog(table, interval=3600)
    _record(worker, 3)
    assert worker.flush() == 3
    _record(worker, 2)
    worker.close()  # what it still held is sent before close returns
    sent.close()
    assert table.count() == 0  # a worker never writes the table itself
    with pytest.raises(EOFError):  # every batch, then the end of the worker's pipe
        while True:
            writer.take(received.recv())
    writer.close()
    rows = table.read().to_pylist()
    assert [r["operation"] for r in rows] == ["Op0", "Op1", "Op2", "Op0", "Op1"]
    assert [r["customer_ids"] for r in rows] == [["c0"], ["c1"], ["c2"], ["c0"], ["c1"]]
    assert all(r["fields"] == ["Query.customer"] for r in rows)


def test_a_failed_flush_keeps_its_records_for_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = Lake(tmp_path, load_catalog())
    table = lake.table(AUDIT_TABLE)
    table.create_if_missing()
    audit = AuditLog(table, interval=3600)
    real = table.append
    calls = []

    def flaky(*args: Any, **kwargs: Any) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(table, "append", flaky)
    _record(audit, 4)
    with pytest.raises(OSError, match="disk full"):
        audit.flush()
    _record(audit, 1)
    audit.close()
    assert sorted(r["operation"] for r in table.read().to_pylist()) == [
        "Op0",
        "Op0",
        "Op1",
        "Op2",
        "Op3",
    ]
