"""LakeTable.commit_times: read once in full, then only the versions committed since; a point in
time resolves to the version the table held then, or says the table had not begun or its history
before was forgotten."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from hubspoke.lake import HistoryGone, LakeTable
from lake_schema import load_catalog

contract = load_catalog().get("customer_sales_domain")


def _commit(table: LakeTable, customer: str) -> None:
    row = {
        "customer_id": customer,
        "account_value": Decimal(1),
        "sales_rep": None,
        "credit_limit": Decimal(0),
        "updated_at": datetime.now(UTC),
    }
    table.upsert(contract.to_arrow([row]))
    time.sleep(0.01)  # distinct commit milliseconds


def test_commit_times_read_incrementally_match_a_full_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = LakeTable(contract, tmp_path / contract.table_name)
    table.create_if_missing()
    time.sleep(0.01)
    known = table.commit_times()
    assert (known.oldest, known.latest) == (0, 0)
    for customer in ("c1", "c2", "c3"):
        _commit(table, customer)
    limits: list[int | None] = []
    history = DeltaTable.history

    def recorded(self: DeltaTable, limit: int | None = None) -> list[dict[str, Any]]:
        limits.append(limit)
        return history(self, limit)

    monkeypatch.setattr(DeltaTable, "history", recorded)
    grown = table.commit_times(known)
    assert limits == [3]  # only the three commits since
    assert table.commit_times(grown) is grown and limits == [3]  # nothing new: nothing read
    assert grown == table.commit_times()
    assert (grown.oldest, grown.latest) == (0, table.version()) == (0, 3)

    assert grown.version_at(grown.at(2)) == 2
    assert grown.version_at(grown.at(2) - timedelta(milliseconds=1)) == 1
    assert grown.version_at(datetime.now(UTC) + timedelta(days=1)) == 3
    assert grown.version_at(grown.at(0) - timedelta(days=1)) is None  # before the table began


def test_a_forgotten_history_is_read_anew_and_said_to_be_gone(tmp_path: Path) -> None:
    table = LakeTable(contract, tmp_path / contract.table_name)
    table.create_if_missing()
    for customer in ("c1", "c2"):
        _commit(table, customer)
    before = table.commit_times()
    table.forget_history()  # what an erasure does
    after = table.commit_times(before)
    assert after == table.commit_times()
    assert after.oldest == after.latest == table.version() > before.oldest
    with pytest.raises(HistoryGone, match="was forgotten"):
        after.version_at(before.at(1))
    assert after.version_at(datetime.now(UTC)) == after.latest
