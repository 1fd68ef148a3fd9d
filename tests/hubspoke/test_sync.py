"""Nightly sync: only changes, deletes propagated, watermark atomic with data, quarantine."""

from __future__ import annotations

import pytest

from hubspoke.lake import LakeTable
from hubspoke.stack import Stack
from hubspoke.sync import reconcile, watermark

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


def test_reconciliation_catches_a_row_changed_behind_the_syncs_back(stack: Stack) -> None:
    customer = known_customer(stack)
    sales = stack.spokes["sales"]
    sales.save_domain(customer, SALES)
    stack.sync(["sales"])
    sales.save_domain(customer, SALES | {"credit_limit": "1.00"})
    result = reconcile(stack.lake, sales, stack.catalog.extension("sales"))
    assert not result.ok and result.differing == [customer]
    assert result.spoke_hash != result.lake_hash
