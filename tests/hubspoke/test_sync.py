"""Nightly sync: only changes, deletes propagated, watermark atomic with data, quarantine."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubspoke.config import Settings
from hubspoke.lake import LakeTable
from hubspoke.stack import Stack
from hubspoke.sync import SyncReport, reconcile, sync_domain, watermark
from spokes.base import iso_stamp

SALES = {"account_value": "100.00", "owner_rep": "Ada Byron", "credit_limit": "500.00"}


def rows(stack: Stack, domain: str) -> dict[str, dict]:
    table = stack.lake.table(stack.catalog.extension(domain))
    return {r["customer_id"]: r for r in table.read().to_pylist()}


def known_customer(stack: Stack, name: str = "Ada") -> str:
    customer = stack.spokes["sales"].create_customer(name, f"{name}@example.com".lower())
    stack.propagate()
    return customer


def test_only_changed_rows_are_merged_and_deletes_propagate(stack: Stack) -> None:
    sales = stack.spokes["sales"]
    a, b = known_customer(stack, "Ada"), known_customer(stack, "Bo")
    sales.save_domain(a, SALES)
    sales.save_domain(b, SALES)
    [first] = stack.sync(["sales"])
    assert (first.extracted, first.upserted) == (2, 2)

    sales.save_domain(a, SALES | {"account_value": "250.00"})
    sales.delete_customer(b)
    [second] = stack.sync(["sales"])
    assert second.extracted == 2 and second.upserted == 1 and second.deleted == 1
    assert str(rows(stack, "sales")[a]["account_value"]) == "250.00"
    assert b not in rows(stack, "sales")
    assert reconcile(stack.lake, sales, stack.catalog.extension("sales")).ok


def test_rerun_with_nothing_changed_writes_no_new_version(stack: Stack) -> None:
    a = known_customer(stack)
    stack.spokes["sales"].save_domain(a, SALES)
    [first] = stack.sync(["sales"])
    [again] = stack.sync(["sales"])
    # The overlap window re-reads the row; the lake holds it as it is, so nothing is written.
    assert again.extracted == 1 and not again.committed and again.version == first.version


def test_crash_before_commit_leaves_lake_and_watermark_and_rerun_loads_the_rows(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = known_customer(stack)
    stack.spokes["sales"].save_domain(a, SALES)
    contract = stack.catalog.extension("sales")
    version, mark = stack.lake.table(contract).version(), watermark(stack.lake, contract)

    def die(self: LakeTable, *args: object, **kwargs: object) -> None:
        raise SystemExit("killed during the commit")

    monkeypatch.setattr(LakeTable, "upsert", die)
    with pytest.raises(SystemExit):
        stack.sync(["sales"])
    monkeypatch.undo()
    assert stack.lake.table(contract).version() == version
    assert watermark(stack.lake, contract) == mark

    [rerun] = stack.sync(["sales"])
    assert rerun.upserted == 1 and a in rows(stack, "sales")
    assert watermark(stack.lake, contract) == rerun.watermark_after != mark


def test_orphan_row_waits_in_quarantine_until_its_identity_arrives(stack: Stack) -> None:
    support = stack.spokes["support"]
    orphan = support.create_customer(
        "Grace", "grace@example.com", {"TIER_CD": "S", "TKT_CNT": "3", "DEL_FLG": "N"}
    )
    # The identity event is still in the support spoke's outbox: the hub does not know Grace.
    [report] = stack.sync(["support"])
    assert report.quarantined == 1 and orphan not in rows(stack, "support")
    [held] = stack.lake.table("sync_quarantine").read().to_pylist()
    assert held["customer_id"] == orphan and "no live customer identity" in held["reason"]

    stack.propagate()
    [later] = stack.sync(["support"])
    assert later.released == 1 and later.quarantined == 0
    assert rows(stack, "support")[orphan]["support_tier"] == "silver"
    assert stack.lake.table("sync_quarantine").count() == 0


def test_row_breaking_the_contract_is_quarantined_with_the_reason_and_retried(stack: Stack) -> None:
    support = stack.spokes["support"]
    customer = known_customer(stack)
    support.save_domain(customer, {"TIER_CD": "X", "TKT_CNT": "many", "DEL_FLG": "N"})
    [report] = stack.sync(["support"])
    assert report.quarantined == 1
    [held] = stack.lake.table("sync_quarantine").read().to_pylist()
    assert "support_tier must be one of basic, silver, gold, platinum, got 'X'" in held["reason"]
    assert "lifetime_tickets must be int64" in held["reason"]
    assert reconcile(stack.lake, support, stack.catalog.extension("support")).ok

    support.save_domain(customer, {"TIER_CD": "P", "TKT_CNT": "4", "DEL_FLG": "N"})
    [fixed] = stack.sync(["support"])
    assert fixed.released == 1 and rows(stack, "support")[customer]["support_tier"] == "platinum"


def test_a_row_whose_stamp_cannot_be_read_is_held_and_the_rest_still_syncs(stack: Stack) -> None:
    billing = stack.spokes["billing"]
    broken, fine = known_customer(stack, "Ada"), known_customer(stack, "Bo")
    for customer in (broken, fine):
        billing.save_domain(customer, {"vat_id": None, "terms_days": 30})
    billing.db.execute(
        "UPDATE billing_accounts SET modified = 'not a time' WHERE customer_id = ?", [broken]
    )
    [report] = stack.sync(["billing"])
    assert report.upserted == 1 and report.quarantined == 1
    assert fine in rows(stack, "billing") and broken not in rows(stack, "billing")
    [held] = stack.lake.table("sync_quarantine").read().to_pylist()
    assert held["customer_id"] == broken and "'not a time'" in held["reason"]
    assert report.watermark_after == rows(stack, "billing")[fine]["updated_at"]
    result = reconcile(stack.lake, billing, stack.catalog.extension("billing"))
    assert result.ok and result.quarantined == 1

    billing.save_domain(broken, {"vat_id": None, "terms_days": 60})  # fixed at the spoke
    [fixed] = stack.sync(["billing"])
    assert fixed.released == 1 and rows(stack, "billing")[broken]["payment_terms"] == "NET60"


def test_a_row_that_does_not_map_is_held_under_the_key_its_spoke_names(stack: Stack) -> None:
    support = stack.spokes["support"]  # legacy names: the key is CLNT_NO, the stamp LAST_CHG
    customer = known_customer(stack)
    support.save_domain(customer, {"TIER_CD": "G", "TKT_CNT": "2", "DEL_FLG": "N"})
    support.db.execute("UPDATE SUPP_PROF SET LAST_CHG = 'yesterday' WHERE CLNT_NO = ?", [customer])
    [report] = stack.sync(["support"])
    assert report.quarantined == 1
    [held] = stack.lake.table("sync_quarantine").read().to_pylist()
    assert held["customer_id"] == customer
    assert held["reason"].startswith("cannot be mapped into CustomerSupportDomain")


def test_held_rows_are_retried_once_the_overlap_no_longer_reads_them(stack: Stack) -> None:
    billing = stack.spokes["billing"]
    contract = stack.catalog.extension("billing")

    def night() -> SyncReport:  # no overlap: held rows come back only through the retry
        return sync_domain(stack.lake, billing, contract, overlap=timedelta(0))

    broken, unreadable = known_customer(stack, "Ada"), known_customer(stack, "Bo")
    billing.save_domain(broken, {"vat_id": None, "terms_days": 45})  # NET45 is no term
    billing.save_domain(unreadable, {"vat_id": None, "terms_days": 30})
    billing.db.execute(
        "UPDATE billing_accounts SET modified = 'not a time' WHERE customer_id = ?", [unreadable]
    )
    orphan = billing.create_customer(
        "Grace", "grace@example.com", {"vat_id": None, "terms_days": 15}
    )
    assert night().quarantined == 3  # the hub does not know Grace yet

    stack.propagate()  # Grace's identity arrives; her row is not changed again
    later = night()
    assert later.released == 1 and later.quarantined == 2
    assert rows(stack, "billing")[orphan]["payment_terms"] == "NET15"
    held = {r["customer_id"] for r in stack.lake.table("sync_quarantine").read().to_pylist()}
    assert held == {broken, unreadable}


def test_rows_without_a_key_are_held_together_until_the_spoke_fixes_them(stack: Stack) -> None:
    billing = stack.spokes["billing"]
    contract = stack.catalog.extension("billing")
    for vat in ("DE1", "DE2"):  # SQLite admits a null TEXT PRIMARY KEY
        billing.db.execute(
            "INSERT INTO billing_accounts VALUES (NULL, ?, 30, ?, 0)",
            [vat, iso_stamp(billing.now())],
        )
    [first] = stack.sync(["billing"])
    assert first.quarantined == 2
    [held] = stack.lake.table("sync_quarantine").read().to_pylist()
    assert held["customer_id"] == "" and "customer_id is null" in held["reason"]
    [again] = stack.sync(["billing"])  # read again with the changes: held once more, no clash
    assert again.quarantined == 2 and again.released == 0
    later = sync_domain(stack.lake, billing, contract, overlap=timedelta(0))
    assert later.extracted == 0 and later.quarantined == 2 and later.released == 0

    billing.db.execute("DELETE FROM billing_accounts WHERE customer_id IS NULL")
    fixed = sync_domain(stack.lake, billing, contract, overlap=timedelta(0))
    assert fixed.released == 1 and stack.lake.table("sync_quarantine").count() == 0


def test_reconciliation_reports_a_stamp_broken_after_the_sync(stack: Stack) -> None:
    billing = stack.spokes["billing"]
    customer = known_customer(stack)
    billing.save_domain(customer, {"vat_id": None, "terms_days": 30})
    stack.sync(["billing"])
    billing.db.execute(
        "UPDATE billing_accounts SET modified = 'not a time' WHERE customer_id = ?", [customer]
    )
    result = reconcile(stack.lake, billing, stack.catalog.extension("billing"))
    assert not result.ok and result.differing == [customer]


def test_reconciliation_catches_a_row_changed_behind_the_syncs_back(stack: Stack) -> None:
    customer = known_customer(stack)
    sales = stack.spokes["sales"]
    sales.save_domain(customer, SALES)
    stack.sync(["sales"])
    sales.save_domain(customer, SALES | {"credit_limit": "1.00"})
    result = reconcile(stack.lake, sales, stack.catalog.extension("sales"))
    assert not result.ok and result.differing == [customer]
    assert result.spoke_hash != result.lake_hash


def test_hard_delete_at_the_spoke_is_propagated(stack: Stack) -> None:
    sales = stack.spokes["sales"]
    kept, gone = known_customer(stack, "Ada"), known_customer(stack, "Bo")
    sales.save_domain(kept, SALES)
    sales.save_domain(gone, SALES)
    stack.sync(["sales"])
    sales.db.execute("DELETE FROM account WHERE customer_id = ?", (gone,))  # no trace left

    [report] = stack.sync(["sales"])
    assert report.hard_deleted == 1 and report.deleted == 1
    assert set(rows(stack, "sales")) == {kept}
    assert reconcile(stack.lake, sales, stack.catalog.extension("sales")).ok


def test_two_concurrent_syncs_of_one_table_end_as_one_serial_sync(stack: Stack) -> None:
    sales = stack.spokes["sales"]
    customers = [known_customer(stack, f"C{i}") for i in range(30)]
    for c in customers:
        sales.save_domain(c, SALES)
    barrier = threading.Barrier(2)
    reports: list[SyncReport] = []

    def sync() -> None:
        # Each writer has its own connections, as a backfill run and the nightly run would.
        with Stack.open(stack.settings) as own:
            barrier.wait()
            reports.extend(own.sync(["sales"]))

    threads = [threading.Thread(target=sync) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    contract = stack.catalog.extension("sales")
    table = stack.lake.table(contract)
    assert table.count() == len(customers)  # no key twice
    assert sorted(r.committed for r in reports) == [False, True]  # the second found it done
    assert watermark(stack.lake, contract) == max(r.watermark_after for r in reports)
    assert reconcile(stack.lake, sales, contract).ok


SPOKE_OPS = st.lists(
    st.tuples(
        st.sampled_from(["save", "soft_delete", "hard_delete", "sync"]),
        st.integers(min_value=0, max_value=5),
    ),
    max_size=14,
)


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=SPOKE_OPS)
def test_any_interleaving_of_changes_and_syncs_converges(tmp_path: Path, ops: list) -> None:
    home = tmp_path / f"h{uuid.uuid4().hex[:8]}"
    with Stack.create(Settings(home=home)) as stack:
        sales = stack.spokes["sales"]
        customers = [known_customer(stack, f"P{i}") for i in range(6)]
        for op, i in ops:
            c = customers[i]
            if op == "save":
                sales.save_domain(c, SALES | {"account_value": f"{i}.00"})
            elif op == "soft_delete":
                sales.db.execute(
                    "UPDATE account SET deleted_at = ?, updated_at = ? WHERE customer_id = ?",
                    (iso_stamp(sales.now()), iso_stamp(sales.now()), c),
                )
            elif op == "hard_delete":
                sales.db.execute("DELETE FROM account WHERE customer_id = ?", (c,))
            else:
                stack.sync(["sales"])
        stack.sync(["sales"])
        contract = stack.catalog.extension("sales")
        live = {
            r["customer_id"]: r["account_value"]
            for r in sales.db.fetchall("SELECT * FROM account WHERE deleted_at IS NULL")
        }
        lake = {k: str(v["account_value"]) for k, v in rows(stack, "sales").items()}
        assert lake == live
        assert reconcile(stack.lake, sales, contract).ok
        version = stack.lake.table(contract).version()
        [again] = stack.sync(["sales"])
        assert not again.committed and stack.lake.table(contract).version() == version
