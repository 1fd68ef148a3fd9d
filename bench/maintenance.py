"""Lake maintenance at scale: files, bytes and point-read latency before and after, in one run.

    python -m bench.maintenance [--scale 1000000] [--nights 30] [--json bench/results/maintenance.json]

Builds a sales domain table of `--scale` customers the way nightly syncs leave it (a bulk load,
then `--nights` batches of new customers and changed rows, each its own commit and files), then
measures point reads of one customer by id on three copies:
as the syncs left it; compacted without clustering (the baseline); and after `LakeTable.maintain`
(compaction Z-ordered by the key, checkpoint, vacuum).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from bench.report import write_json
from hubspoke.lake import LakeTable
from lake_schema import load_catalog
from lake_schema.contract import Retention

console = Console()
CONTRACT = load_catalog().get("customer_sales_domain")


def _rows(ids: list[str], rng: random.Random, at: datetime) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "customer_id": ids,
            "account_value": [Decimal(rng.randrange(100_000_00)) / 100 for _ in range(n)],
            "sales_rep": [f"rep {rng.randrange(40)}" for _ in range(n)],
            "credit_limit": [Decimal(rng.randrange(10_000)) for _ in range(n)],
            "updated_at": [at] * n,
        },
        schema=CONTRACT.arrow_schema(),
    )


def build_table(path: Path, scale: int, nights: int, seed: int = 1) -> tuple[LakeTable, list[str]]:
    """A sales table of `scale` customers after a bulk load and `nights` nightly syncs."""
    rng = random.Random(seed)
    # History 0: vacuum removes every file the current version does not read, so the figures
    # show what compaction leaves on disk, not the seven-day time-travel window.
    table = LakeTable(
        CONTRACT.model_copy(update={"retention": Retention(history=timedelta(0))}), path
    )
    table.create_if_missing()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    bulk = int(scale * 0.7)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(scale)]
    table.append(_rows(ids[:bulk], rng, start))
    per_night = (scale - bulk) // nights
    for night in range(nights):
        at = start + timedelta(days=night + 1)
        new = ids[bulk + night * per_night : bulk + (night + 1) * per_night]
        table.append(_rows(new, rng, at))
    return table, ids[: bulk + nights * per_night]


def lookup_ms(table: LakeTable, ids: list[str], reads: int, seed: int = 2) -> float:
    """Median milliseconds to read one customer's row by id, with predicate pushdown."""
    rng = random.Random(seed)
    times = []
    for customer_id in rng.sample(ids, reads):
        t0 = time.perf_counter()
        found = table.read(where=pl.col("customer_id") == customer_id)
        times.append((time.perf_counter() - t0) * 1000)
        assert found.num_rows == 1
    return statistics.median(times)


def run(scale: int, nights: int, reads: int, workdir: Path) -> dict[str, Any]:
    """Every figure of the benchmark, as the JSON object it writes."""
    table, ids = build_table(workdir / "synced", scale, nights)
    before = table.file_stats()
    rows = table.count()
    lookup_before = lookup_ms(table, ids, reads)

    baseline_path = workdir / "compacted"
    shutil.copytree(table.path, baseline_path)
    plain = LakeTable(
        table.contract.model_copy(update={"z_order": ()}), baseline_path
    )  # the same contract without clustering
    t0 = time.perf_counter()
    plain_report = plain.maintain()
    compact_only_s = time.perf_counter() - t0
    lookup_compacted = lookup_ms(plain, ids, reads)

    t0 = time.perf_counter()
    report = table.maintain()
    maintain_s = time.perf_counter() - t0
    lookup_after = lookup_ms(table, ids, reads)
    assert table.count() == rows == plain.count()

    return {
        "scale": scale,
        "nights": nights,
        "files_before": before.active_files,
        "files_after": report.after.active_files,
        "bytes_before": before.stored_bytes,
        "bytes_after": report.after.stored_bytes,
        "files_vacuumed": report.files_vacuumed,
        "maintain_s": round(maintain_s, 3),
        "compact_only_s": round(compact_only_s, 3),
        "compact_only_files_after": plain_report.after.active_files,
        "lookup_p50_ms_before": round(lookup_before, 2),
        "lookup_p50_ms_compacted": round(lookup_compacted, 2),
        "lookup_p50_ms_maintained": round(lookup_after, 2),
        "lookup_speedup_vs_compacted": round(lookup_compacted / lookup_after, 2),
        "lookup_speedup_vs_before": round(lookup_before / lookup_after, 2),
    }


def show(out: dict[str, Any]) -> None:
    """Print the figures as a table."""
    table = Table(title=f"maintenance of {out['scale']:,} sales rows after {out['nights']} nights")
    for column in ("", "as synced", "compacted (baseline)", "maintained (Z-order)"):
        table.add_column(column, justify="right")
    table.add_row(
        "active files",
        str(out["files_before"]),
        str(out["compact_only_files_after"]),
        str(out["files_after"]),
    )
    table.add_row(
        "time to run (s)", "-", f"{out['compact_only_s']:.2f}", f"{out['maintain_s']:.2f}"
    )
    table.add_row(
        "read one by id, p50 (ms)",
        f"{out['lookup_p50_ms_before']:.1f}",
        f"{out['lookup_p50_ms_compacted']:.1f}",
        f"{out['lookup_p50_ms_maintained']:.1f}",
    )
    table.add_row("bytes on disk", f"{out['bytes_before']:,}", "-", f"{out['bytes_after']:,}")
    console.print(table)
    console.print(
        f"Z-order vs plain compaction: {out['lookup_speedup_vs_compacted']}x faster reads;"
        f" vs as synced: {out['lookup_speedup_vs_before']}x"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table, write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.maintenance", description=__doc__)
    parser.add_argument("--scale", type=int, default=1_000_000, help="customers in the table")
    parser.add_argument("--nights", type=int, default=30, help="nightly syncs before maintenance")
    parser.add_argument("--reads", type=int, default=30, help="point reads per measurement")
    parser.add_argument("--json", type=Path, default=Path("bench/results/maintenance.json"))
    args = parser.parse_args(argv)
    if args.scale < 1000 or args.nights < 1:
        parser.error("--scale must be at least 1000 and --nights at least 1")
    with tempfile.TemporaryDirectory(prefix="hubspoke-bench-") as workdir:
        out = run(args.scale, args.nights, args.reads, Path(workdir))
    show(out)
    write_json(out, args.json, console)
    return out


if __name__ == "__main__":
    main()
