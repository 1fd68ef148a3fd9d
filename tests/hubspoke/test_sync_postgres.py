"""The sync against the sales spoke on a real PostgreSQL: late commits, hard deletes, quarantine."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from hubspoke.stack import Stack
from hubspoke.sync import reconcile, sync_domain, watermark
from spokes.base import iso_stamp

pytestmark = pytest.mark.services

SALES = {"account_value": "100.00", "owner_rep": "Ada Byron", "credit_limit": "500.00"}


def test_row_committed_late_with_an_older_timestamp_is_not_missed(local: Stack) -> None:
    sales = local.spokes["sales"]
    contract = local.catalog.extension("sales")
    early, late = (sales.create_customer(n, f"{n}@example.com") for n in ("early", "late"))
    local.propagate()

    # A transaction that starts before the sync, stamps its row then, and commits after it.
    other = psycopg.connect(sales.db.conninfo)
    stamp = iso_stamp(sales.now())
    other.execute("INSERT INTO account VALUES (%s, '7.00', NULL, '0.00', %s, NULL)", (late, stamp))
    sales.save_domain(early, SALES)  # committed, with a later timestamp
    [first] = local.sync(["sales"])
    assert first.upserted == 1 and watermark(local.lake, contract) > sales.stamp_from_local(stamp)
    other.commit()
    other.close()

    # A plain "updated_at > last watermark" cursor misses it for good ...
    no_overlap = sync_domain(local.lake, sales, contract, overlap=timedelta(0))
    assert no_overlap.upserted == 0
    # ... the overlap window finds it.
    [second] = local.sync(["sales"])
    assert second.upserted == 1
    assert reconcile(local.lake, sales, contract).ok


def test_hard_and_soft_deletes_and_quarantine_on_postgres(local: Stack) -> None:
    sales = local.spokes["sales"]
    contract = local.catalog.extension("sales")
    ids = [sales.create_customer(f"c{i}", f"c{i}@example.com") for i in range(40)]
    local.propagate()
    for c in ids:
        sales.save_domain(c, SALES)
    orphan = "00000000-0000-4000-8000-000000000000"  # no identity in the hub
    sales.db.execute(
        "INSERT INTO account VALUES (?, '1.00', NULL, '0.00', ?, NULL)",
        (orphan, iso_stamp(sales.now())),
    )
    [first] = local.sync(["sales"])
    assert first.upserted == 40 and first.quarantined == 1

    hard, soft = ids[:5], ids[5:8]
    sales.db.execute(f"DELETE FROM account WHERE customer_id IN ({','.join('?' * 5)})", hard)
    for c in soft:
        sales.delete_customer(c)
    [second] = local.sync(["sales"])
    assert second.hard_deleted == 5 and second.deleted == 8
    lake = set(local.lake.table(contract).read(columns=["customer_id"])["customer_id"].to_pylist())
    assert lake == set(ids[8:])
    check = reconcile(local.lake, sales, contract)
    assert check.ok and check.quarantined == 1


def test_held_rows_are_retried_from_postgres_and_mariadb(local: Stack) -> None:
    """The retry reads the spokes' own rows back (not through the overlap) on both servers."""
    domains = {
        "sales": SALES,
        "support": {"TIER_CD": "G", "TKT_CNT": "3", "DEL_FLG": "N"},
    }
    orphans = {
        name: local.spokes[name].create_customer(f"{name} orphan", f"{name}@example.com", values)
        for name, values in domains.items()
    }
    for name in domains:  # the hub does not know them yet
        contract = local.catalog.extension(name)
        first = sync_domain(local.lake, local.spokes[name], contract, overlap=timedelta(0))
        assert first.quarantined == 1

    local.propagate()
    for name, orphan in orphans.items():
        contract = local.catalog.extension(name)
        later = sync_domain(local.lake, local.spokes[name], contract, overlap=timedelta(0))
        assert later.extracted == 0 and later.released == 1 and later.quarantined == 0
        loaded = local.lake.table(contract).read(columns=["customer_id"])["customer_id"]
        assert loaded.to_pylist() == [orphan]
        assert reconcile(local.lake, local.spokes[name], contract).ok
