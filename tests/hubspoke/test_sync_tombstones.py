"""Hard deletes read from the spoke's tombstones, on PostgreSQL (sales), MariaDB (support) and
SQLite (billing): propagated, undone by a re-insert, kept through a crash, pruned after the commit,
and found by comparing keys when the tombstones are missing or missed a delete."""

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


def _sync(stack: Stack, name: str, overlap: timedelta = timedelta(minutes=15)) -> SyncReport:
    contract = stack.catalog.extension(name)
    return sync_domain(stack.lake, stack.spokes[name], contract, overlap=overlap)


def _hard_delete(spoke: Spoke, *keys: str) -> None:
    s = spoke.schema
    marks = ",".join("?" * len(keys))
    spoke.db.execute(f"DELETE FROM {s.domain_table} WHERE {s.domain_key} IN ({marks})", keys)


def _lake_keys(stack: Stack, name: str) -> set[str]:
    table = stack.lake.table(stack.catalog.extension(name))
    return set(table.read(columns=["customer_id"])["customer_id"].to_pylist())


def _tombstones(spoke: Spoke) -> list[str]:
    return sorted(r["deleted_key"] for r in spoke.db.fetchall(f"SELECT * FROM {TOMBSTONES}"))


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
    _assert_reconciled(local, name)
    # The overlap window reads the same tombstones again: they match nothing, no version is made.
    again = _sync(local, name)
    assert not again.committed and again.version == report.version and again.deleted == 0
    # ... nor do they stop a merge that inserts (deltalake rejects unmatched source rows there).
    [new] = _seed(local, name, 1)
    inserted = _sync(local, name)
    assert inserted.upserted == 1 and inserted.deleted == 0
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

    assert _tombstones(spoke) == sorted([ids[0], ids[1], ids[1]])
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
    # No overlap: a tombstone older than the watermark would be pruned if pruning came early.
    with pytest.raises(SystemExit):
        _sync(local, name, overlap=timedelta(0))
    monkeypatch.undo()
    assert _tombstones(spoke) == sorted(ids[:2])
    assert local.lake.table(local.catalog.extension(name)).version() == first.version

    rerun = _sync(local, name, overlap=timedelta(0))
    assert rerun.deleted == 2 and _lake_keys(local, name) == set(ids[2:])
    _assert_reconciled(local, name)


@by_engine
def test_tombstones_older_than_the_next_window_are_pruned_after_the_commit(
    local: Stack, name: str
) -> None:
    spoke = local.spokes[name]
    ids = _seed(local, name, 4)
    _sync(local, name)
    _hard_delete(spoke, ids[0])
    time.sleep(0.01)
    spoke.save_domain(ids[1], VALUES[name] | CHANGED[name])  # moves the watermark past it
    report = _sync(local, name, overlap=timedelta(0))
    assert report.deleted == 1 and report.watermark_after is not None
    assert _tombstones(spoke) == []  # the next sync reads from the new watermark on

    _hard_delete(spoke, ids[2])
    kept = _sync(local, name)  # 15 minutes of overlap: this tombstone is still in the window
    assert kept.deleted == 1 and _tombstones(spoke) == [ids[2]]
    assert _lake_keys(local, name) == {ids[1], ids[3]}


def _drop_tombstones(spoke: Spoke) -> None:
    table = spoke.schema.domain_table
    on = f" ON {table}" if spoke.db.engine == "postgres" else ""
    spoke.db.execute(f"DROP TRIGGER hubspoke_tombstone_{table}{on}")
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
def test_a_delete_the_tombstones_missed_is_found_by_the_count_check(
    local: Stack, name: str
) -> None:
    spoke = local.spokes[name]
    ids = _seed(local, name, 5)
    _sync(local, name)
    _hard_delete(spoke, *ids[:2])
    spoke.db.execute(f"DELETE FROM {TOMBSTONES} WHERE deleted_key = ?", (ids[0],))  # lost

    report = _sync(local, name)
    # The tombstone of ids[1] went in the merge; ids[0] was found when the counts disagreed.
    assert report.keys_compared and report.deleted == 2 and report.hard_deleted == 2
    assert _lake_keys(local, name) == set(ids[2:])
    assert not _sync(local, name).keys_compared  # counts agree again
    _assert_reconciled(local, name)


@pytest.mark.parametrize("name", ["sales", "support"], ids=["postgres", "mariadb"])
def test_delete_committed_late_is_found_in_the_overlap_window(local: Stack, name: str) -> None:
    spoke = local.spokes[name]
    ids = _seed(local, name, 3)
    _sync(local, name)

    # A transaction deletes (its tombstone is stamped then) and commits after the next sync.
    if spoke.db.engine == "postgres":
        other: Any = psycopg.connect(spoke.db.conninfo)
    else:
        other = pymysql.connect(host="127.0.0.1", user="root", database=local.settings.namespace)
    s = spoke.schema
    delete = f"DELETE FROM {s.domain_table} WHERE {s.domain_key} = %s"
    try:
        other.cursor().execute(delete, (ids[0],))
        time.sleep(0.01)
        spoke.save_domain(ids[1], VALUES[name] | CHANGED[name])
        during = _sync(local, name)
        other.commit()
    finally:
        other.close()
    assert during.deleted == 0 and during.watermark_after is not None

    after = _sync(local, name)
    assert after.deleted == 1 and not after.keys_compared
    assert _lake_keys(local, name) == set(ids[1:])
    _assert_reconciled(local, name)
