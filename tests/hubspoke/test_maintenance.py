"""Maintenance keeps reads exact and files few; retention expires payloads and nothing else."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubspoke.lake import LakeTable
from lake_schema import load_catalog
from lake_schema.contract import Retention

catalog = load_catalog()
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _sales_rows(start: int, count: int) -> pa.Table:
    rows = [
        {
            "customer_id": f"cust-{i:05d}",
            "account_value": Decimal(i),
            "sales_rep": f"rep {i % 7}",
            "credit_limit": Decimal(1000),
            "updated_at": NOW,
        }
        for i in range(start, start + count)
    ]
    return catalog.get("customer_sales_domain").to_arrow(rows)


def _table(
    tmp_path: Path, name: str, history: timedelta | None = None, change_feed: bool | None = None
) -> LakeTable:
    contract = catalog.get(name)
    if history is not None:
        contract = contract.model_copy(update={"retention": Retention(history=history)})
    if change_feed is not None:
        contract = contract.model_copy(update={"change_feed": change_feed})
    table = LakeTable(contract, tmp_path / name)
    table.create_if_missing()
    return table


def _sorted(table: LakeTable, version: int | None = None) -> list[dict[str, object]]:
    key = table.contract.key_fields[0]
    return sorted(table.read(version=version).to_pylist(), key=lambda r: r[key])


def test_maintenance_compacts_small_files_and_reads_stay_exact(tmp_path: Path) -> None:
    # With a change feed, so that its change-data files are vacuumed too.
    table = _table(tmp_path, "customer_sales_domain", history=timedelta(0), change_feed=True)
    for batch in range(12):
        table.append(_sales_rows(batch * 10, 10))
    table.upsert(_sales_rows(5, 3).set_column(2, "sales_rep", pa.array(["moved"] * 3)))
    before_rows = _sorted(table)
    before = table.file_stats()
    # The merge rewrote one file and wrote one of change data.
    assert before.active_files == 12 and before.stored_files == 14
    assert list((table.path / "_change_data").rglob("*.parquet"))

    report = table.maintain()

    assert _sorted(table) == before_rows
    assert report.before == before
    assert report.after.active_files == 1 < before.active_files
    assert report.files_compacted == before.active_files
    assert report.z_order == ("customer_id",)
    # History 0: vacuum deleted every file the current version no longer reads.
    assert report.files_vacuumed >= before.active_files
    assert report.after.stored_files == 1
    assert not list((table.path / "_change_data").rglob("*.parquet"))
    assert (table.path / "_delta_log" / "_last_checkpoint").exists()


def test_maintenance_keeps_history_for_time_travel_within_the_contracts_window(
    tmp_path: Path,
) -> None:
    table = _table(tmp_path, "customer_sales_domain")  # the contract's 7 days
    for batch in range(4):
        table.append(_sales_rows(batch * 5, 5))
    old_version = table.version()
    old_rows = _sorted(table)

    report = table.maintain()

    assert report.files_vacuumed == 0
    assert report.after.active_files == 1
    assert report.after.stored_files == report.before.stored_files + 1
    assert _sorted(table, version=old_version) == old_rows  # time travel still reads the past


def test_maintenance_of_a_compact_table_writes_no_version(tmp_path: Path) -> None:
    table = _table(tmp_path, "customer_sales_domain")
    table.append(_sales_rows(0, 5))
    version = table.version()

    report = table.maintain()

    assert report.files_compacted == 0 and report.version == version == table.version()


def test_maintenance_next_to_a_writer_loses_no_row(tmp_path: Path) -> None:
    table = _table(tmp_path, "customer_sales_domain", history=timedelta(hours=1))
    for batch in range(10):
        table.append(_sales_rows(batch * 10, 10))
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for batch in range(10, 20):  # merges that rewrite files compaction also rewrites
                table.upsert(_sales_rows(batch * 10 - 95, 10))
        except BaseException as exc:  # surfaced below; a thread's exception is otherwise lost
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    for _ in range(3):
        table.maintain()
    writer.join()

    assert not errors
    ids = [r["customer_id"] for r in table.read(columns=["customer_id"]).to_pylist()]
    assert len(ids) == len(set(ids)) == 105  # cust-00000 .. cust-00104, each once
    table.maintain()
    assert table.file_stats().active_files == 1


def _log_rows(ages_days: list[int]) -> pa.Table:
    rows = [
        {
            "event_id": f"ev-{i:04d}",
            "entity": "customer",
            "entity_id": f"cust-{i:04d}",
            "event_type": "deleted" if age % 5 == 0 else "updated",
            "source": "sales",
            "occurred_at": NOW - timedelta(days=age, minutes=1),
            "received_at": NOW - timedelta(days=age),
            "data": "null" if age % 5 == 0 else f'{{"name": "Person {i}"}}',
            "disposition": "applied",
            "hub_version": i,
            "batch": i,
        }
        for i, age in enumerate(ages_days)
    ]
    return catalog.get("identity_events").to_arrow(rows)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ages=st.lists(st.integers(min_value=0, max_value=200), min_size=1, max_size=30))
def test_retention_expires_old_payloads_and_keeps_everything_else(
    tmp_path_factory: object, ages: list[int]
) -> None:
    table = _table(tmp_path_factory.mktemp("retention"), "identity_events")  # type: ignore[attr-defined]
    table.append(_log_rows(ages))
    before = _sorted(table)
    expiry = table.contract.retention.expire
    assert expiry is not None

    expired = table.expire(expiry, NOW)

    after = _sorted(table)
    old = [r for r in before if r["received_at"] < NOW - timedelta(days=90)]
    assert expired == sum(r["data"] != "null" for r in old)
    for was, now in zip(before, after, strict=True):
        too_old = was["received_at"] < NOW - timedelta(days=90)
        assert now == (was | {"data": "null"} if too_old else was)
    version = table.version()
    assert table.expire(expiry, NOW) == 0
    assert table.version() == version  # nothing left to expire: no new commit


def test_expired_payloads_leave_every_file_once_the_history_window_passed(
    tmp_path: Path,
) -> None:
    table = _table(tmp_path, "identity_events", history=timedelta(0))
    table.append(_log_rows([101, 121, 3]))
    expiry = catalog.get("identity_events").retention.expire
    assert expiry is not None and table.expire(expiry, NOW) == 2

    table.maintain()

    payloads = [
        value
        for path in table.path.rglob("*.parquet")
        if "_delta_log" not in path.parts
        for value in pq.read_table(path, columns=["data"])["data"].to_pylist()
    ]
    assert sorted(payloads) == ["null", "null", '{"name": "Person 2"}']


_MAINTAIN_FOREVER = """
import sys
from datetime import timedelta
from pathlib import Path
from hubspoke.lake import LakeTable
from lake_schema import load_catalog
from lake_schema.contract import Retention
contract = load_catalog().get("customer_sales_domain")
contract = contract.model_copy(update={"retention": Retention(history=timedelta(0))})
table = LakeTable(contract, Path(sys.argv[1]))
print("ready", flush=True)
while True:
    table.maintain()
"""


def test_maintenance_killed_at_any_point_leaves_the_table_readable_and_whole(
    tmp_path: Path,
) -> None:
    table = _table(tmp_path, "customer_sales_domain")
    rng = random.Random(5)
    for kill in range(3):
        for batch in range(8):  # fresh small files, so each pass compacts and vacuums again
            table.append(_sales_rows(kill * 1000 + batch * 10, 10))
        expected = _sorted(table)
        worker = subprocess.Popen(
            [sys.executable, "-c", _MAINTAIN_FOREVER, str(table.path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.4))
        worker.kill()  # SIGKILL: mid-compaction, mid-checkpoint or mid-vacuum
        worker.wait()

        assert _sorted(table) == expected
    table.maintain()
    assert table.file_stats().active_files == 1
    assert len(_sorted(table)) == 240
