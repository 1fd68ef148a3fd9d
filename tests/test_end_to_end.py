"""The whole loop through the public entry points: spoke write paths, the CLI, and GraphQL over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hubspoke_graphql.access import create_keys_file

from hubspoke.config import Settings
from hubspoke.stack import Stack

QUERY = """
query One($id: ID!, $deleted: Boolean) {
  customer(id: $id, includeDeleted: $deleted) {
    id name email createdBy updatedAt version deleted
    sales { accountValue salesRep creditLimit }
    support { supportTier lifetimeTickets }
    billing { vatNumber paymentTerms }
  }
}"""


def cli(home: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "hubspoke.cli", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[Path, str, dict[str, str]]]:
    """A fresh home and the GraphQL URL of a real `hubspoke serve` process over it."""
    home = tmp_path / "home"
    cli(home, "init")
    admin = create_keys_file(home / "api_keys.json")["admin"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "hubspoke.cli", "serve", "--home", str(home), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    headers = {"X-API-Key": admin}
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        for _ in range(100):
            try:
                httpx.post(url, json={"query": "{ __typename }"}, timeout=1, headers=headers)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield home, url, headers
    finally:
        server.terminate()
        server.wait(timeout=10)


def graphql(
    url: str,
    customer_id: str,
    headers: dict[str, str],
    *,
    include_deleted: bool = False,
    expect: Any = None,
) -> dict[str, Any] | None:
    """Query until the API's snapshot (refreshed within ~1 s of a lake commit) shows `expect`."""
    deadline = time.monotonic() + 10
    while True:
        body = httpx.post(
            url,
            json={"query": QUERY, "variables": {"id": customer_id, "deleted": include_deleted}},
            timeout=5,
            headers=headers,
        ).json()
        assert "errors" not in body, body
        found = body["data"]["customer"]
        if expect is None or expect(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_create_update_delete_travel_from_spoke_to_lake_to_spokes_to_graphql(
    api: tuple[Path, str, dict[str, str]],
) -> None:
    home, url, headers = api
    with Stack.open(Settings(home=home)) as stack:
        sales, support, billing = (stack.spokes[n] for n in ("sales", "support", "billing"))
        ada = sales.create_customer(
            "Ada Lovelace",
            "ada@example.com",
            {"account_value": "1200.50", "owner_rep": "Grace Hopper", "credit_limit": "5000.00"},
        )
    cli(home, "consume")

    with Stack.open(Settings(home=home)) as stack:
        [lake_row] = stack.lake.table("customer_identity").read().to_pylist()
        assert (lake_row["id"], lake_row["name"], lake_row["created_by"]) == (
            ada,
            "Ada Lovelace",
            "sales",
        )
        for spoke in stack.spokes.values():  # every spoke's own database holds the customer
            [copy] = spoke.identities()
            assert (copy["name"], copy["email"], copy["version"]) == (
                "Ada Lovelace",
                "ada@example.com",
                1,
            )
            assert copy["updated_at"] == lake_row["updated_at"]
        support, billing = stack.spokes["support"], stack.spokes["billing"]
        support.save_domain(ada, {"TIER_CD": "G", "TKT_CNT": "7", "DEL_FLG": "N"})
        billing.save_domain(ada, {"vat_id": "GB123456789", "terms_days": 60, "removed": 0})
        held = {
            n: stack.spokes[n].domain_to_contract(stack.spokes[n].local_domain_rows([ada])[0])
            for n in ("sales", "support", "billing")
        }
    cli(home, "sync")

    # The sync commits one domain table after another; wait until the API shows all three.
    found = graphql(
        url, ada, headers, expect=lambda c: c and c["sales"] and c["support"] and c["billing"]
    )
    assert found["name"] == "Ada Lovelace" and found["createdBy"] == "sales"
    assert found["sales"] == {
        "accountValue": str(held["sales"]["account_value"]),
        "salesRep": held["sales"]["sales_rep"],
        "creditLimit": str(held["sales"]["credit_limit"]),
    }
    assert found["support"] == {
        "supportTier": held["support"]["support_tier"],
        "lifetimeTickets": held["support"]["lifetime_tickets"],
    }
    assert found["billing"] == {"vatNumber": "GB123456789", "paymentTerms": "NET60"}

    # An identity update from the support spoke propagates the same way.
    with Stack.open(Settings(home=home)) as stack:
        stack.spokes["support"].update_customer(ada, email="ada.king@example.com")
    cli(home, "consume")
    with Stack.open(Settings(home=home)) as stack:
        for spoke in stack.spokes.values():
            [copy] = spoke.identities()
            assert (copy["email"], copy["version"]) == ("ada.king@example.com", 2)
    found = graphql(url, ada, headers, expect=lambda c: c["email"] == "ada.king@example.com")
    assert found["email"] == "ada.king@example.com" and found["version"] == 2

    # A delete from billing removes the customer everywhere, extensions included after the sync.
    with Stack.open(Settings(home=home)) as stack:
        stack.spokes["billing"].delete_customer(ada)
    cli(home, "consume")
    cli(home, "sync")
    with Stack.open(Settings(home=home)) as stack:
        assert all(s.identities()[0]["deleted"] for s in stack.spokes.values())
        for contract in stack.catalog.extensions():
            assert stack.lake.table(contract).count() == 0
    assert graphql(url, ada, headers, expect=lambda c: c is None) is None
    gone = graphql(url, ada, headers, include_deleted=True)
    assert gone["deleted"] and gone["sales"] is None and gone["billing"] is None


def test_consume_follow_keeps_lake_and_every_spoke_current_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    cli(home, "init")
    follower = subprocess.Popen(
        [sys.executable, "-m", "hubspoke.cli", "consume", "--follow", "--home", str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with Stack.open(Settings(home=home)) as stack:
            created = {
                spoke.create_customer(f"Customer {i}", f"c{i}@example.com"): name
                for i, (name, spoke) in enumerate(
                    [(n, s) for n, s in stack.spokes.items() for _ in range(5)]
                )
            }
            renamed = next(iter(created))
            stack.spokes[created[renamed]].update_customer(renamed, name="Renamed Later")

            def current() -> bool:
                lake = stack.lake.table("customer_identity").read().to_pylist()
                names = {r["id"]: r["name"] for r in lake}
                spoke_names = [
                    {c["id"]: c["name"] for c in spoke.identities()}
                    for spoke in stack.spokes.values()
                ]
                return (
                    names.keys() == created.keys()
                    and all(copy == names for copy in spoke_names)
                    and names[renamed] == "Renamed Later"
                )

            deadline = time.monotonic() + 60
            while not current():
                assert follower.poll() is None, follower.communicate()
                assert time.monotonic() < deadline, "lake and spokes did not converge in 60 s"
                time.sleep(0.2)
    finally:
        follower.send_signal(signal.SIGINT)
        out, err = follower.communicate(timeout=60)
    assert out.startswith("received "), out  # one summary line per micro-batch
    assert "Traceback" not in err, err


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_the_spokes_loop_of_a_killed_follower_does_not_outlive_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cli(home, "init")
    follower = subprocess.Popen(
        [sys.executable, "-m", "hubspoke.cli", "consume", "--follow", "--home", str(home)],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (children := _children(follower.pid)):
        assert time.monotonic() < deadline, "the follower started no spokes' loop"
        time.sleep(0.1)
    follower.kill()  # SIGKILL: no cleanup runs in the follower
    follower.wait()
    deadline = time.monotonic() + 20
    while any(Path(f"/proc/{pid}").exists() for pid in children):
        assert time.monotonic() < deadline, f"spokes' loop {children} still running"
        time.sleep(0.1)
