"""A sync killed with SIGKILL, between extraction and commit or during the commit, leaves the
lake and its watermark together (both old or both new); the rerun loads exactly what is missing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hubspoke.stack import Stack
from hubspoke.sync import reconcile, watermark

SALES = {"account_value": "100.00", "owner_rep": "Ada Byron", "credit_limit": "500.00"}

CHILD = """
import sys, time
from pathlib import Path
from deltalake import DeltaTable
from hubspoke.config import Settings
from hubspoke.lake import LakeTable
from hubspoke.stack import Stack

home, where, marker = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
if where == "before_commit":
    def upsert(self, *args, **kwargs):
        marker.touch()
        time.sleep(60)
    LakeTable.upsert = upsert
else:
    merge = DeltaTable.merge
    def announced(self, *args, **kwargs):
        marker.touch()
        return merge(self, *args, **kwargs)
    DeltaTable.merge = announced
with Stack.open(Settings(home=home)) as stack:
    stack.sync(["sales"])
"""


def _seed(stack: Stack, customers: int) -> None:
    sales = stack.spokes["sales"]
    for i in range(customers):
        sales.save_domain(sales.create_customer(f"K{i}", f"k{i}@example.com"), SALES)
    stack.propagate()


def _kill_sync(home: Path, where: str, delay: float, tmp_path: Path) -> None:
    marker = tmp_path / f"marker-{where}-{delay}"
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(home), where, str(marker)],
        cwd=Path(__file__).resolve().parents[2],
        env=os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, "the sync ended before reaching the commit"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)


@pytest.mark.parametrize(
    ("where", "delay"),
    [
        ("before_commit", 0.0),
        ("during_commit", 0.0),
        ("during_commit", 0.05),
        ("during_commit", 0.2),
    ],
    ids=["between-extraction-and-commit", "commit-start", "commit+50ms", "commit+200ms"],
)
def test_killed_sync_leaves_data_and_watermark_together_and_rerun_completes(
    stack: Stack, tmp_path: Path, where: str, delay: float
) -> None:
    _seed(stack, 150)
    contract = stack.catalog.extension("sales")
    before = (stack.lake.table(contract).version(), watermark(stack.lake, contract))

    _kill_sync(stack.settings.home, where, delay, tmp_path)

    table = stack.lake.table(contract)
    after = (table.version(), watermark(stack.lake, contract))
    if after[0] == before[0]:
        assert after == before and table.count() == 0
    else:  # the commit made it: all of it, with its watermark
        assert after[1] is not None and table.count() == 150
    [rerun] = stack.sync(["sales"])
    assert stack.lake.table(contract).count() == 150
    assert reconcile(stack.lake, stack.spokes["sales"], contract).ok
    assert watermark(stack.lake, contract) == rerun.watermark_after
