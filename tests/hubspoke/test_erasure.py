"""Right to erasure: no byte of the person anywhere afterwards, on the embedded and the local stack."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from random import Random
from typing import Any

import httpx
import psycopg
import pyarrow.parquet as pq
import pymysql
import pytest
from hubspoke_graphql.access import key_of_role
from hubspoke_graphql.app import create_app
from hubspoke_graphql.limits import REFRESH_INTERVAL_S
from typer.testing import CliRunner

from hubspoke.bus import ERASURE_TOPIC
from hubspoke.cli import app as cli
from hubspoke.config import Settings
from hubspoke.erasure import ErasureRequest, UnknownSubject, certificates, erase, subject_hash
from hubspoke.simulate import Simulator
from hubspoke.stack import Stack

NAME, EMAIL, NEW_EMAIL = "Zelda Quixotic-Vanterpool", "zelda.qv@example.org", "zqv@example.net"
VAT, NEW_VAT = "DE999888777", "DE111222333"
NEEDLES = [NAME, EMAIL, NEW_EMAIL, VAT, NEW_VAT]


def seed_person(stack: Stack) -> str:
    """Other customers, and one person spread over every table, spoke and message kind."""
    Simulator(stack).seed(40)
    rng = Random(3)
    sales, support, billing = (stack.spokes[n] for n in ("sales", "support", "billing"))
    person = sales.create_customer(NAME, EMAIL, sales.fake_domain(rng))
    stack.propagate()
    support.save_domain(person, support.fake_domain(rng))
    billing.save_domain(person, {"vat_id": VAT, "terms_days": 30, "removed": 0})
    sales.update_customer(person, email=NEW_EMAIL)  # the old e-mail stays in the event log
    stack.propagate()
    stack.sync()
    # A row that breaks the contract waits in quarantine with the new VAT number ...
    billing.save_domain(person, {"vat_id": NEW_VAT, "terms_days": 7, "removed": 0})
    stack.sync()
    # ... and a malformed message naming the person lands in dead letters.
    stack.bus.publish("identity.events", [f'{{"broken": "{EMAIL}"'.encode()])
    stack.propagate()
    assert stack.lake.table("sync_quarantine").count() >= 1
    assert stack.lake.table("dead_letters").count() >= 1
    return person


def files_holding(root: Path, needles: list[str]) -> list[tuple[str, str]]:
    """(file, needle) for every file under `root` whose bytes, or decoded Parquet values, hold it."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        text = data.decode("utf-8", "replace")
        if path.suffix == ".parquet":
            # Parquet pages are compressed: search the decoded values as well as the raw bytes.
            text += json.dumps(pq.read_table(path).to_pylist(), default=str)
        found += [
            (str(path.relative_to(root)), n) for n in needles if n.encode() in data or n in text
        ]
    return found


def ask_graphql(stack: Stack, app: Any, text: str) -> dict[str, Any]:
    admin = key_of_role(stack.settings.keys_file, "admin")

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.post("/graphql", json={"query": text}, headers={"X-API-Key": admin})

    return asyncio.run(go()).json()


def test_erasure_leaves_no_byte_of_the_person_and_certifies_it(stack: Stack) -> None:
    person = seed_person(stack)
    api = create_app(stack.settings)
    by_id = f'{{ customer(id: "{person}") {{ name email billing {{ vatNumber }} }} }}'
    assert ask_graphql(stack, api, by_id)["data"]["customer"]["name"] == NAME
    assert {n for _, n in files_holding(stack.home, NEEDLES)} == set(NEEDLES)
    before = stack.status()
    others = {
        n: sorted(i["id"] for i in s.identities() if i["id"] != person)
        for n, s in stack.spokes.items()
    }

    certificate = erase(stack, ErasureRequest(person, "ticket DPO-17"))

    assert files_holding(stack.home, NEEDLES) == []
    assert all(i["id"] != person for s in stack.spokes.values() for i in s.identities())
    assert not any(s.knows(person) for s in stack.spokes.values())
    # The API that was serving before forgets the person at its next look at the lake, and time
    # travel cannot bring them back: the history before the erasure is gone.
    time.sleep(REFRESH_INTERVAL_S + 0.1)
    assert ask_graphql(stack, api, by_id)["data"]["customer"] is None
    assert stack.lake.table("customer_identity").delta().history()[-1]["version"] > 0

    tables = json.loads(certificate["tables"])
    assert tables["customer_identity"]["rows"] == 1
    assert tables["identity_events"] == tables["identity_events"] | {"action": "redact", "rows": 2}
    assert tables["dead_letters"]["rows"] == 1 and tables["sync_quarantine"]["rows"] == 1
    assert all(tables[t]["rows"] == 1 for t in ("customer_sales_domain", "customer_billing_domain"))
    assert all(v > 0 for v in json.loads(certificate["spokes"]).values())
    assert certificate["subject_hash"] == subject_hash("customer", person)
    assert certificate["requested_by"] == "ticket DPO-17"
    stored = certificates(stack.lake, "customer", person)
    assert [c["certificate_id"] for c in stored] == [certificate["certificate_id"]]
    assert person not in json.dumps(stored, default=str)  # the certificate holds a hash only

    # Nothing else was lost: the event log keeps every event (the person's payloads redacted),
    # so the accounting still adds up, and every other customer is still everywhere.
    after = stack.status()
    assert after["events"]["received"] == before["events"]["received"] - 1  # the dead letter
    assert after["live_customers"] == before["live_customers"] - 1
    for name, spoke in stack.spokes.items():
        assert sorted(i["id"] for i in spoke.identities()) == others[name]

    # The hub and the spokes carry on: new traffic converges as before.
    Simulator(stack, seed=9).run(30)
    stack.propagate()
    lake = {r["id"]: r["version"] for r in stack.lake.table("customer_identity").read().to_pylist()}
    for spoke in stack.spokes.values():
        assert {i["id"]: i["version"] for i in spoke.identities()} == lake
    with pytest.raises(KeyError):
        stack.spokes["sales"].update_customer(person, name="Back Again")


def test_erasure_interrupted_after_the_lake_is_finished_by_a_rerun(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    person = seed_person(stack)

    def crash(*args: Any) -> int:
        raise RuntimeError("killed before the spokes erased")

    monkeypatch.setattr("spokes.relay.apply_erasures", crash)
    with pytest.raises(RuntimeError):
        erase(stack, ErasureRequest(person, "ticket-1"))
    assert certificates(stack.lake, "customer", person) == []
    monkeypatch.undo()

    erase(stack, ErasureRequest(person, "ticket-1"))
    assert files_holding(stack.home, NEEDLES) == []
    assert len(certificates(stack.lake, "customer", person)) == 1
    # A third run has nothing left but is not refused: the person was erased before.
    again = erase(stack, ErasureRequest(person, "ticket-1"))
    assert sum(t["rows"] for t in json.loads(again["tables"]).values()) == 0


def test_bad_requests_are_refused_with_what_is_wrong(stack: Stack) -> None:
    with pytest.raises(UnknownSubject, match="no customer 'nobody'"):
        erase(stack, ErasureRequest("nobody", "ticket-2"))
    with pytest.raises(ValueError, match="1 to 64 characters"):
        ErasureRequest("x" * 65, "ticket-2")
    with pytest.raises(ValueError, match="--requested-by"):
        ErasureRequest("abc", " ")
    assert stack.lake.table("erasure_certificates").count() == 0
    stack.close()
    runner = CliRunner()
    home = str(stack.home)
    result = runner.invoke(cli, ["erase", "--customer", "nobody", "--home", home])
    assert result.exit_code == 2 and "nothing to erase" in result.output


def test_cli_prints_the_certificate_as_json(stack: Stack) -> None:
    person = stack.spokes["billing"].create_customer(NAME, EMAIL)
    stack.propagate()
    stack.close()
    result = CliRunner().invoke(
        cli,
        [
            "erase",
            "--customer",
            person,
            "--requested-by",
            "dpo",
            "--json",
            "--home",
            str(stack.home),
        ],
    )
    assert result.exit_code == 0, result.output
    certificate = json.loads(result.stdout)
    assert certificate["tables"]["customer_identity"]["rows"] == 1
    assert certificate["spokes"]["billing"] == 2  # the identity row and its outbox event
    assert files_holding(stack.home, [NAME, EMAIL]) == []


def server_rows_holding(settings: Settings, needles: list[str]) -> list[str]:
    """Rows of every table of the home's PostgreSQL and MariaDB databases that hold a needle."""
    found = []
    with psycopg.connect(settings.postgres_url, dbname=settings.namespace) as pg:
        tables = pg.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
        for (table,) in tables:
            for (row,) in pg.execute(f"SELECT t::text FROM {table} t").fetchall():
                found += [f"postgres {table}: {n}" for n in needles if n in row]
    maria = pymysql.connect(host="127.0.0.1", user="root", database=settings.namespace)
    try:
        with maria.cursor() as cursor:
            cursor.execute("SHOW TABLES")
            for (table,) in cursor.fetchall():
                cursor.execute(f"SELECT * FROM {table}")
                for row in cursor.fetchall():
                    found += [f"mariadb {table}: {n}" for n in needles if n in str(row)]
    finally:
        maria.close()
    return found


@pytest.mark.services
def test_erasure_on_the_local_stack_reaches_postgres_mariadb_and_rabbitmq(
    local_settings: Settings,
) -> None:
    with Stack.create(local_settings) as stack:
        person = seed_person(stack)
        assert server_rows_holding(local_settings, NEEDLES)
        certificate = erase(stack, ErasureRequest(person, "ticket-3"))
        assert server_rows_holding(local_settings, NEEDLES) == []
        assert files_holding(stack.home, NEEDLES) == []
        assert not any(s.knows(person) for s in stack.spokes.values())
        assert json.loads(certificate["spokes"])["sales"] > 0
        assert all(stack.bus.pending(ERASURE_TOPIC, s) == 0 for s in stack.spokes)
