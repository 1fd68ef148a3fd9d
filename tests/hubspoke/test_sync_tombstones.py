"""Hard deletes read from the spoke's tombstones, on PostgreSQL (sales), MariaDB (support) and
SQLite (billing): propagated, undone by a re-insert, kept through a crash, forgotten after the
commit, and found by comparing keys when the tombstones are missing, marked incomplete, or when
asked after reconciliation found a delete they missed."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import psycopg
import pymysql
import pytest

from hubspoke.lake import LakeTable
from hubspoke.stack import Stack
from hubspoke.sync import SyncReport, reconcile, sync_domain
from spokes import Spoke
from spokes.base import TOMBSTONES

pytestmark = pytest.mark.services

VALUES: dict[str, dict[str, Any]] = {
    "sales": {"account_value": "100.00", "owner_rep": "Ada Byron", "credit_limit": "500.00"},
    "support": {"TIER_CD": "G", "TKT_CNT": "3", "DEL_FLG": "N"},
    "billing": {"vat_id": "NL123456789", "terms_days": 30, "removed": 0},
}
CHANGED: dict[str, dict[str, Any]] = {
    "sales": {"account_value": "999.00"},
    "support": {"TKT_CNT": "99"},
    "billing": {"terms_days": 60},
}
ENGINES = {"sales": "postgres", "support": "mariadb", "billing": "sqlite"}


def _seed(stack: Stack, name: str, n: int) -> list[str]:
    spoke = stack.spokes[name]
    ids = [spoke.create_customer(f"c{i}", f"c{i}@example.com") for i in range(n)]
    stack.propagate()
    for c in ids:
        spoke.save_domain(c, VALUES[name])
    return ids


def _sync(
    stack: Stack, name: str, overlap: timedelta = timedelta(minutes=15), compare_keys: bool = False
) -> SyncReport:
    contract = stack.catalog.extension(name)
    return sync_domain(
        stack.lake, stack.spokes[name], contract, overlap=overlap, compare_keys=compare_keys
    )


def _hard_delete(spoke: Spoke, *keys: str) -> None:
    s = spoke.schema
    marks = ",".join("?" * len(keys))
    spoke.db.execute(f"DELETE FROM {s.domain_table} WHERE {s.domain_key} IN ({marks})", keys)


def _lake_keys(stack: Stack, name: str) -> set[str]:
    table = stack.lake.table(stack.catalog.extension(name))
    return set(table.read(columns=["customer_id"])["customer_id"].to_pylist())


def _tombstones(spoke: Spoke) -> list[str | None]:
    rows = spoke.db.fetchall(f"SELECT * FROM {TOMBSTONES}")
    return sorted((r["deleted_key"] for r in rows), key=lambda k: k or "")


def _assert_reconciled(stack: Stack, name: str) -> None:
    contract = stack.catalog.extension(name)
    assert reconcile(stack.lake, stack.spokes[name], contract).ok


by_engine = pytest.mark.parametrize("name", list(ENGINES), ids=list(ENGINES.values()))


@by_engine
def test_hard_deletes_come_from_tombstones_without_comparing_keys(local: Stack, name: str) -> None:
    spoke = local.spokes[name]
    ids = _seed(local, name, 8)
    assert _sync(local, name).upserted == 8

    _hard_delete(spoke, *ids[:2])
    spoke.delete_customer(ids[2])  # a soft delete travels with the changes
    _hard_delete(spoke, ids[3])
    report = _sync(local, name)

    assert report.hard_deleted == 3 and report.deleted == 4 and not report.keys_compared
    assert _lake_keys(local, name) == set(ids[4:])
    assert _tombstones(spoke) == []  # forgotten once their deletes were committed
    _assert_reconciled(local, name)
    # The overlap window reads the soft delete again: it matches nothing, no version is made.
    again = _sync(local, name)
    assert not again.committed and again.version == report.version and again.deleted == 0
    # A tombstone of a key the lake never held does not stop a merge that inserts.
    new, brief = _seed(local, name, 2)
    _hard_delete(spoke, brief)
    inserted = _sync(local, name)
    assert inserted.upserted == 1 and inserted.deleted == 0 and inserted.hard_deleted == 1
    assert _lake_keys(local, name) == {*ids[4:], new}


@by_engine
def test_deleted_and_inserted_again_in_one_window_is_an_update(local: Stack, name: str) -> None:
    spoke = local.spokes[name]
    ids = _seed(local, name, 3)
    _sync(local, name)

    _hard_delete(spoke, ids[0])
    spoke.save_domain(ids[0], VALUES[name] | CHANGED[name])  # back again, changed
    _hard_delete(spoke, ids[1])
    spoke.save_domain(ids[1], VALUES[name])
    _hard_delete(spoke, ids[1])  # and gone again
    report = _sync(local, name)

    assert _tombstones(spoke) == []  # ids[0]'s was read too: its live row decides
    assert report.deleted == 1 and report.hard_deleted == 1 and not report.keys_compared
    assert _lake_keys(local, name) == {ids[0], ids[2]}
    _assert_reconciled(local, name)


@by_engine
def test_crash_between_extraction_and_commit_keeps_the_tombstones(
    local: Stack, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spoke = local.spokes[name]
    ids = _seed(local, name, 4)
    first = _sync(local, name)
    time.sleep(0.01)
    _hard_delete(spoke, *ids[:2])

    def die(self: LakeTable, *args: object, **kwargs: object) -> None:
        raise SystemExit("killed before the commit")

    monkeypatch.setattr(LakeTable, "upsert", die)
    # Killed before the commit: the rerun must find the tombstones still there.
    with pytest.raises(SystemExit):
        _sync(local, name, overlap=timedelta(0))
    monkeypatch.undo()
    assert _tombstones(spoke) == sorted(ids[:2])
    assert local.lake.table(local.catalog.extension(name)).version() == first.version

    rerun = _sync(local, name, overlap=timedelta(0))
    assert rerun.deleted == 2 and _lake_keys(local, name) == set(ids[2:])
    _assert_reconciled(local, name)


@by_engine
def test_only_the_tombstones_read_are_forgotten(
    local: Stack, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spoke = local.spokes[name]
    ids = _seed(local, name, 4)
    _sync(local, name)
    _hard_delete(spoke, ids[0])
    upsert = LakeTable.upsert

    def delete_meanwhile(self: LakeTable, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if self.name == local.catalog.extension(name).table_name:
            _hard_delete(spoke, ids[1])  # after the tombstones were read, before the commit
        return upsert(self, *args, **kwargs)

    monkeypatch.setattr(LakeTable, "upsert", delete_meanwhile)
    report = _sync(local, name, overlap=timedelta(0))
    monkeypatch.undo()
    assert report.deleted == 1 and _tombstones(spoke) == [ids[1]]

    following = _sync(local, name, overlap=timedelta(0))
    assert following.deleted == 1 and _tombstones(spoke) == []
    assert _lake_keys(local, name) == set(ids[2:])
    _assert_reconciled(local, name)


def _drop_tombstones(spoke: Spoke) -> None:
    table = spoke.schema.domain_table
    on = f" ON {table}" if spoke.db.engine == "postgres" else ""
    spoke.db.execute(f"DROP TRIGGER hubspoke_tombstone_{table}{on}")
    if spoke.db.engine == "postgres":
        spoke.db.execute(f"DROP TRIGGER hubspoke_truncated_{table}{on}")
    spoke.db.execute(f"DROP TABLE {TOMBSTONES}")


@by_engine
def test_without_tombstones_the_key_sets_are_compared(local: Stack, name: str) -> None:
    spoke = local.spokes[name]
    ids = _seed(local, name, 5)
    _sync(local, name)
    _drop_tombstones(spoke)  # a domain database we may not add a trigger to
    assert not spoke.keeps_tombstones()

    _hard_delete(spoke, *ids[:2])
    report = _sync(local, name)
    assert report.keys_compared and report.hard_deleted == 2 and report.deleted == 2
    assert _lake_keys(local, name) == set(ids[2:])
    _assert_reconciled(local, name)
    assert spoke.erase([ids[2]]) > 0  # erasure works without the tombstone table too


@by_engine
def test_tombstones_created_beside_existing_rows_make_the_next_sync_compare_keys(
    local: Stack, name: str
) -> None:
    spoke = local.spokes[name]
    ids = _seed(local, name, 5)
    _sync(local, name)
    _drop_tombstones(spoke)
    _hard_delete(spoke, *ids[:2])  # no trigger saw these
    reopened = type(spoke)(spoke.db)  # the schema setup installs the tombstones again
    assert _tombstones(reopened) == [None]  # the marker: deletes may have gone unrecorded

    report = _sync(local, name)
    assert report.keys_compared and report.deleted == 2 and report.hard_deleted == 2
    assert _tombstones(spoke) == [] and not _sync(local, name).keys_compared
    assert _lake_keys(local, name) == set(ids[2:])
    _assert_reconciled(local, name)


@by_engine
def test_a_tombstone_table_of_an_earlier_shape_is_replaced_with_the_marker(
    local: Stack, name: str
) -> None:
    spoke = local.spokes[name]
    ids = _seed(local, name, 4)
    _sync(local, name)
    spoke.db.execute(f"DROP TABLE {TOMBSTONES}")  # as an earlier version made it: no seq
    spoke.db.execute(
        f"CREATE TABLE {TOMBSTONES} (deleted_key VARCHAR(255) NOT NULL, deleted_us BIGINT NOT NULL)"
    )
    _hard_delete(spoke, ids[0])  # the trigger writes into the old table

    reopened = type(spoke)(spoke.db)
    assert _tombstones(reopened) == [None]
    report = _sync(local, name)
    assert report.keys_compared and report.deleted == 1
    _hard_delete(spoke, ids[1])
    assert _tombstones(spoke) == [ids[1]]  # the trigger writes into the new one
    assert _sync(local, name).deleted == 1 and _lake_keys(local, name) == set(ids[2:])
    _assert_reconciled(local, name)


def test_truncate_on_postgres_makes_the_next_sync_compare_keys(local: Stack) -> None:
    spoke = local.spokes["sales"]
    _seed(local, "sales", 3)
    _sync(local, "sales")
    spoke.db.execute(f"TRUNCATE {spoke.schema.domain_table}")
    assert _tombstones(spoke) == [None]

    report = _sync(local, "sales")
    assert report.keys_compared and report.deleted == 3 and _lake_keys(local, "sales") == set()
    _assert_reconciled(local, "sales")


@by_engine
def test_a_delete_the_triggers_missed_is_reconciled_then_propagated_on_request(
    local: Stack, name: str
) -> None:
    spoke = local.spokes[name]
    ids = _seed(local, name, 5)
    _sync(local, name)
    _hard_delete(spoke, *ids[:2])
    spoke.db.execute(f"DELETE FROM {TOMBSTONES} WHERE deleted_key = ?", (ids[0],))  # lost

    report = _sync(local, name)
    assert report.deleted == 1 and not report.keys_compared
    contract = local.catalog.extension(name)
    assert reconcile(local.lake, spoke, contract).extra_in_lake == [ids[0]]

    repaired = _sync(local, name, compare_keys=True)
    assert repaired.keys_compared and repaired.deleted == 1 and repaired.hard_deleted == 1
    assert _lake_keys(local, name) == set(ids[2:])
    _assert_reconciled(local, name)


@pytest.mark.parametrize("name", ["sales", "support"], ids=["postgres", "mariadb"])
def test_delete_committed_late_is_read_by_the_next_sync(local: Stack, name: str) -> None:
    spoke = local.spokes[name]
    ids = _seed(local, name, 4)
    _sync(local, name)

    # A transaction deletes (its tombstone takes a number then) and commits after the next sync;
    # a delete committed meanwhile takes a higher number, which that sync reads and forgets.
    if spoke.db.engine == "postgres":
        other: Any = psycopg.connect(spoke.db.conninfo)
    else:
        other = pymysql.connect(host="127.0.0.1", user="root", database=local.settings.namespace)
    s = spoke.schema
    delete = f"DELETE FROM {s.domain_table} WHERE {s.domain_key} = %s"
    try:
        other.cursor().execute(delete, (ids[0],))
        _hard_delete(spoke, ids[2])
        spoke.save_domain(ids[1], VALUES[name] | CHANGED[name])
        during = _sync(local, name)
        other.commit()
    finally:
        other.close()
    assert during.deleted == 1 and during.watermark_after is not None
    assert _tombstones(spoke) == [ids[0]]

    after = _sync(local, name, overlap=timedelta(0))
    assert after.deleted == 1 and not after.keys_compared
    assert _lake_keys(local, name) == {ids[1], ids[3]}
    _assert_reconciled(local, name)
