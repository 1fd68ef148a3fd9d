"""LakeTable.upsert: deletes of keys the table lacks are ignored (listed in the merge, or looked up
when there are many), a key both upserted and deleted is upserted, a merge that changes nothing
writes no version, a writer's progress is committed all the same, and the table keeps a change
data feed only when its contract asks for one."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from hubspoke import lake
from hubspoke.lake import LakeTable, Progress
from lake_schema import load_catalog

# With a change feed (the domain contracts have none), so that the merges' changes can be read.
contract = load_catalog().get("customer_sales_domain").model_copy(update={"change_feed": True})
AT = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _rows(*ids: str) -> pa.Table:
    return contract.to_arrow(
        [
            {
                "customer_id": i,
                "account_value": Decimal(1),
                "sales_rep": None,
                "credit_limit": Decimal(0),
                "updated_at": AT,
            }
            for i in ids
        ]
    )


def _table(tmp_path: Path) -> LakeTable:
    table = LakeTable(contract, tmp_path / contract.table_name)
    table.create_if_missing()
    table.append(_rows("a", "b"))
    return table


def _keys(table: LakeTable) -> list[str]:
    return sorted(table.read(columns=["customer_id"])["customer_id"].to_pylist())


@pytest.mark.parametrize("listed", [True, False], ids=["listed", "looked-up"])
def test_deleting_a_key_the_table_lacks_beside_real_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listed: bool
) -> None:
    if not listed:  # as when there are more delete keys than the merge predicate lists
        monkeypatch.setattr(lake, "_LISTED_DELETES", 1)
    table = _table(tmp_path)
    metrics = table.upsert(_rows("c"), delete_keys=["b", "missing"])
    assert metrics["num_target_rows_deleted"] == 1 and metrics["version"] == table.version()
    assert _keys(table) == ["a", "c"]
    changes = pa.table(table.delta().load_cdf(starting_version=metrics["version"]).read_all())
    kinds = zip(
        changes["customer_id"].to_pylist(), changes["_change_type"].to_pylist(), strict=True
    )
    assert sorted(kinds) == [("b", "delete"), ("c", "insert")]


@pytest.mark.parametrize("listed", [True, False], ids=["listed", "looked-up"])
def test_deletes_alone_and_a_key_both_upserted_and_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listed: bool
) -> None:
    if not listed:
        monkeypatch.setattr(lake, "_LISTED_DELETES", 1)
    table = _table(tmp_path)
    table.upsert(_rows("it's"))
    gone = table.upsert(_rows(), delete_keys=["it's", "missing"])  # a key SQL must quote
    assert gone["num_target_rows_deleted"] == 1 and _keys(table) == ["a", "b"]
    both = table.upsert(_rows("b"), delete_keys=["a", "b"])
    assert both["num_target_rows_deleted"] == 1 and both["num_target_rows_updated"] == 1
    assert _keys(table) == ["b"]


def test_a_merge_that_changes_nothing_writes_no_version(tmp_path: Path) -> None:
    table = _table(tmp_path)
    version = table.version()
    metrics = table.upsert(_rows("a"), newer_than="updated_at", delete_keys=["missing"])
    assert metrics["version"] is None and table.version() == version


def test_progress_is_committed_when_the_merge_changes_no_row(tmp_path: Path) -> None:
    table = _table(tmp_path)
    version = table.version()
    metrics = table.upsert(
        _rows("a"), newer_than="updated_at", delete_keys=["missing"], progress=Progress("p", 7)
    )
    assert metrics["version"] == version + 1 == table.version()
    assert table.progress("p") == 7 and table.count() == 2


def test_change_feed_follows_the_contract(tmp_path: Path) -> None:
    without = LakeTable(contract.model_copy(update={"change_feed": False}), tmp_path / "t")
    without.create_if_missing()
    without.append(_rows("a", "b"))
    without.upsert(_rows("b", "c"), delete_keys=["a"])
    assert without.delta().metadata().configuration["delta.enableChangeDataFeed"] == "false"
    assert not (without.path / "_change_data").exists()  # no before-images kept

    # A table made under a contract with a feed is aligned when the contract drops it, once.
    with_feed = LakeTable(contract, tmp_path / "u")
    with_feed.create_if_missing()
    with_feed.upsert(_rows("a"), delete_keys=[])
    with_feed.upsert(_rows("a"), delete_keys=[])  # an update: its before and after images
    version = with_feed.version()
    dropped = LakeTable(contract.model_copy(update={"change_feed": False}), with_feed.path)
    dropped.create_if_missing()
    dropped.create_if_missing()
    assert dropped.version() == version + 1
    assert dropped.delta().metadata().configuration["delta.enableChangeDataFeed"] == "false"
    kept = set((dropped.path / "_change_data").rglob("*.parquet"))  # from the feed's days
    assert kept
    dropped.upsert(_rows("a", "d"), delete_keys=[])
    assert set((dropped.path / "_change_data").rglob("*.parquet")) == kept
