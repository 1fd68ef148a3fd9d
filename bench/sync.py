"""Nightly sync benchmark: our sync against the raw Delta merge floor, a polars rewrite and dlt.

Builds an N-row sales domain table in PostgreSQL and in the lake, changes 1% of it (1% updates,
0.2% inserts, 0.02% hard deletes: 50,000 / 10,000 / 1,000 at 5M) and times, each contender in a
subprocess of its own (honest peak RSS), on copies of the same lake and the same spoke
tombstones, in turn `--repeat` times (a noisy minute then hits every contender) after
`--warm-up` rounds that are not counted (the first round after the setup was often the
slowest); the seconds reported are each contender's median, the peak RSS its highest:

- sync: `hubspoke.sync.sync_domain` end to end (extract, check, identities, deletes, merge);
- raw_merge: the deltalake merge of exactly the changed rows, already in Arrow (the floor);
- polars_rewrite: read the whole table from PostgreSQL with polars (ADBC) and overwrite the lake;
- dlt: dlt's sql_database source (arrow backend, incremental on updated_at) into the delta
  filesystem destination with merge. dlt cannot propagate hard deletes; it is timed anyway.

    python -m bench.sync [--scale N] [--scales 1000000,5000000] [--full-scales] [--json PATH]
                         [--skip-dlt] [--repeat 3] [--warm-up 1]

`scale` (rows -> sync seconds) and `scale_peak_rss_mb` cover every row count of `--scales`;
with `--full-scales` every contender runs at each of them and `scale_detail` holds their table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from bench.report import write_json
from hubspoke.config import Settings
from hubspoke.lake import Lake, Progress
from hubspoke.sync import watermark_app
from hubspoke.timestamps import to_micros
from lake_schema import load_catalog
from spokes.arrow_stream import stream_batches
from spokes.databases import TOMBSTONES, PostgresDatabase
from spokes.sales import SalesSpoke

# A quarter second apart: 20M rows end 58 days after the start, before the changes' clock time.
_STAMP = """to_char(timestamp '2026-01-01' + make_interval(secs => {i} * 0.25),
    'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
_NOW = """to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


def _spoke(db: str) -> SalesSpoke:
    return SalesSpoke(PostgresDatabase.create(Settings().postgres_url, db))


def load(work: Path, db: str, rows: int) -> dict[str, Any]:
    """Fill PostgreSQL and the lake (domain table, watermark, identities) with `rows` accounts."""
    spoke = _spoke(db)
    spoke.db.execute(
        "INSERT INTO account SELECT gen_random_uuid()::text,"
        " round((random() * 250000)::numeric, 2)::text,"
        " (ARRAY['Ada Byron', 'Grace Hopper', 'Alan Kay', NULL])[1 + floor(random() * 4)::int],"
        f" '5000.00', {_STAMP.format(i='i')}, NULL FROM generate_series(1, {rows}) AS i"
    )
    spoke.db.execute("ANALYZE account")
    catalog = load_catalog()
    contract = catalog.extension("sales")
    lake = Lake(work / "lake", catalog)
    lake.create_tables()
    mapped = pa.Table.from_batches(
        [
            spoke.domain_batch_to_contract(b).to_batches()[0]
            for b in stream_batches(spoke.db, "SELECT * FROM account", (), 500_000)
        ]
    )
    mark = pc.max(mapped["updated_at"]).as_py()
    lake.table(contract).append(mapped, Progress(watermark_app(contract), to_micros(mark)))
    _identities(lake, mapped["customer_id"])
    # This load stands for the first sync: the new tombstone table's marker is read with it.
    spoke.forget_tombstones(spoke.read_tombstones())
    spoke.close()
    return {"rows": mapped.num_rows}


def change(work: Path, db: str, rows: int) -> dict[str, Any]:
    """Change 1% at the spoke: updates, inserts (whose identities reach the hub), hard deletes."""
    spoke = _spoke(db)
    catalog = load_catalog()
    contract = catalog.extension("sales")
    lake = Lake(work / "lake", catalog)
    table = lake.table(contract)
    mark = table.read(columns=["updated_at"])["updated_at"]
    mark = pc.max(mark).as_py()
    n_upd, n_ins, n_del = rows // 100, rows // 500, rows // 5000
    picked = [
        r["customer_id"]
        for r in spoke.db.fetchall(
            f"SELECT customer_id FROM account ORDER BY md5(customer_id) LIMIT {n_upd + n_del}"
        )
    ]
    updated, deleted = picked[:n_upd], picked[n_upd:]
    spoke.db.execute(
        "UPDATE account SET account_value = '1.00', updated_at = "
        + _NOW
        + " WHERE customer_id = ANY(?)",
        (updated,),
    )
    spoke.db.execute("DELETE FROM account WHERE customer_id = ANY(?)", (deleted,))
    spoke.db.execute(
        "INSERT INTO account SELECT gen_random_uuid()::text, '10.00', NULL, '0.00',"
        f" {_NOW}, NULL FROM generate_series(1, {n_ins})"
    )
    since = spoke.stamp_to_local(mark)
    changed = pa.Table.from_batches(
        [
            spoke.domain_batch_to_contract(b).to_batches()[0]
            for b in stream_batches(
                spoke.db, "SELECT * FROM account WHERE updated_at > ?", (since,)
            )
        ]
    )
    new = pc.filter(
        changed["customer_id"],
        pc.invert(pc.is_in(changed["customer_id"], value_set=pa.array(updated, pa.string()))),
    )
    _identities(lake, new)
    pq.write_table(changed, work / "changed.parquet")
    pq.write_table(
        pa.table({"customer_id": pa.array(deleted, pa.string())}), work / "deleted.parquet"
    )
    spoke.close()
    return {"updates": n_upd, "inserts": n_ins, "deletes": n_del, "changed": changed.num_rows}


def _identities(lake: Lake, ids: pa.Array) -> None:
    ids = pc.cast(ids, pa.string())
    n = len(ids)
    at = pa.array([0] * n, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    lake.table("customer_identity").append(
        pa.table(
            {
                "id": ids,
                "name": pa.array(["Bench Customer"] * n),
                "email": pc.binary_join_element_wise(ids, "@example.com", ""),
                "created_at": at,
                "created_by": pa.array(["sales"] * n),
                "updated_at": at,
                "updated_by": pa.array(["sales"] * n),
                "last_event_id": ids,
                "version": pa.array([1] * n, pa.int64()),
                "deleted": pa.array([False] * n),
                "deleted_at": pa.nulls(n, pa.timestamp("us", tz="UTC")),
            }
        )
    )


def run_sync(work: Path, db: str) -> dict[str, Any]:
    """Our sync, end to end."""
    from hubspoke.sync import sync_domain

    catalog = load_catalog()
    lake, spoke = Lake(work / "lake", catalog), _spoke(db)
    start = time.perf_counter()
    report = sync_domain(lake, spoke, catalog.extension("sales"), overlap=timedelta(minutes=15))
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "upserted": report.upserted,
        "deleted": report.deleted,
        "hard_deleted": report.hard_deleted,
        "keys_compared": report.keys_compared,
        "phases_s": {phase: round(t, 3) for phase, t in report.seconds.items()},
    }


def run_raw_merge(work: Path, db: str) -> dict[str, Any]:
    """The floor: one deltalake merge of the changed rows and the deletes, already in Arrow."""
    from deltalake import DeltaTable, WriterProperties

    changed = pq.read_table(work / "changed.parquet")
    deleted = pq.read_table(work / "deleted.parquet")["customer_id"]
    schema = pa.schema([f.with_nullable(True) for f in changed.schema])
    blanks = pa.table(
        {
            f.name: deleted if f.name == "customer_id" else pa.nulls(len(deleted), f.type)
            for f in schema
        },
        schema=schema,
    )
    source = pa.concat_tables([changed.cast(schema), blanks]).append_column(
        "__delete", pa.array([False] * changed.num_rows + [True] * len(deleted))
    )
    cols = {c: f"s.{c}" for c in changed.column_names}
    start = time.perf_counter()
    dt = DeltaTable(str(work / "lake" / "customer_sales_domain"))
    metrics = (
        dt.merge(
            source,
            predicate="t.customer_id = s.customer_id",
            source_alias="s",
            target_alias="t",
            writer_properties=WriterProperties(compression="ZSTD"),
        )
        .when_matched_delete(predicate="s.__delete = true")
        .when_matched_update(updates=cols, predicate="s.__delete = false")
        .when_not_matched_insert(updates=cols, predicate="s.__delete = false")
        .execute()
    )
    return {"seconds": time.perf_counter() - start, "deleted": metrics["num_target_rows_deleted"]}


def run_polars_rewrite(work: Path, db: str) -> dict[str, Any]:
    """Read the whole spoke table with polars and overwrite the lake table."""
    import polars as pl

    spoke = _spoke(db)
    uri = "postgresql://postgres@127.0.0.1:5432/" + db
    contract = load_catalog().extension("sales")
    start = time.perf_counter()
    frame = pl.read_database_uri(
        "SELECT customer_id, account_value::numeric(18,2) AS account_value,"
        " owner_rep AS sales_rep, credit_limit::numeric(18,2) AS credit_limit,"
        " updated_at::timestamptz AS updated_at FROM account WHERE deleted_at IS NULL",
        uri,
        engine="adbc",
    )
    frame.write_delta(
        str(work / "lake" / "customer_sales_domain"),
        mode="overwrite",
        delta_write_options={"schema_mode": "overwrite"},
    )
    spoke.close()
    return {"seconds": time.perf_counter() - start, "rows": frame.height, "schema": contract.name}


def _dlt_pipeline(work: Path, db: str) -> tuple[Any, Any]:
    import dlt
    from dlt.sources.sql_database import sql_database

    pipeline = dlt.pipeline(
        pipeline_name="bench_sync",
        pipelines_dir=str(work / "dlt_state"),
        destination=dlt.destinations.filesystem(bucket_url=(work / "dlt_lake").as_uri()),
        dataset_name="sales",
    )
    source = sql_database(
        credentials=f"postgresql://postgres@127.0.0.1:5432/{db}",
        table_names=["account"],
        backend="pyarrow",
    )
    source.account.apply_hints(
        primary_key="customer_id",
        incremental=dlt.sources.incremental("updated_at"),
        write_disposition={"disposition": "merge", "strategy": "upsert"},
        table_format="delta",
    )
    return pipeline, source


def run_dlt(work: Path, db: str) -> dict[str, Any]:
    """dlt's incremental run over the same changes (its initial load was done beforehand)."""
    pipeline, source = _dlt_pipeline(work, db)
    start = time.perf_counter()
    pipeline.run(source)
    return {"seconds": time.perf_counter() - start}


RUNS = {
    "sync": run_sync,
    "raw_merge": run_raw_merge,
    "polars_rewrite": run_polars_rewrite,
    "dlt": run_dlt,
}


def _child(run: str, work: Path, db: str, rows: int = 0) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.sync",
            "--child",
            run,
            "--work",
            str(work),
            "--db",
            db,
            "--rows",
            str(rows),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{run} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


_STATE = ("lake", "dlt_state", "dlt_lake")
"""What a contender's run changes on disk under a work folder (dlt's only once it has run)."""


def _copy_state(src: Path, dst: Path) -> None:
    """Make `dst`'s run state that of `src` (what `src` holds of `_STATE`)."""
    for name in _STATE:
        if (src / name).exists():
            shutil.rmtree(dst / name, ignore_errors=True)
            shutil.copytree(src / name, dst / name)


def _settle(spoke: SalesSpoke) -> None:
    """Write out what the setup and the last run left dirty, PostgreSQL's buffers and the lake
    copy alike, so that no contender's run shares the disk with writes that are not its own
    (left to the background, they slowed the round after them by up to a second)."""
    spoke.db.execute("CHECKPOINT")
    os.sync()


def measure(
    rows: int, root: Path, full: bool, with_dlt: bool, repeat: int, warm_up: int
) -> dict[str, Any]:
    """Set up `rows`, change 1%, run the contenders in turn `warm_up` rounds uncounted and then
    `repeat` times (each from the same state); returns name -> the run of median seconds, with
    every counted run's seconds in `runs_s`, the warm-up's in `warm_up_s`, and the highest peak
    RSS of them all."""
    db = f"hubspoke_bench_{os.getpid()}_{rows}"
    work, base = root / str(rows), root / f"{rows}_base"
    work.mkdir(parents=True)
    results: dict[str, Any] = {}
    try:
        PostgresDatabase.drop(Settings().postgres_url, db)
        results["load"] = _child("load", work, db, rows)
        if with_dlt and full:
            results["dlt_initial"] = _child("dlt", work, db)  # dlt's own full load, untimed
        results["change"] = _child("change", work, db, rows)
        _copy_state(work, base)
        spoke = _spoke(db)
        tombstones = spoke.db.fetchall(f"SELECT deleted_key, deleted_us FROM {TOMBSTONES}")
        contenders = ["sync"]
        if full:
            contenders += ["raw_merge", "polars_rewrite", *(["dlt"] if with_dlt else [])]
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
        skipped = warm_up if full else 0
        for _ in range(skipped + (repeat if full else 1)):
            for name in contenders:  # in turn, so a noisy minute hits every contender
                _copy_state(base, work)
                with spoke.transaction() as tx:  # the sync forgets the tombstones it read
                    tx.execute(f"DELETE FROM {TOMBSTONES}")
                    tx.executemany(
                        f"INSERT INTO {TOMBSTONES} (deleted_key, deleted_us) VALUES (?, ?)",
                        [(t["deleted_key"], t["deleted_us"]) for t in tombstones],
                    )
                _settle(spoke)
                runs[name].append(_child(name, work, db))
        spoke.close()
        for name, done in runs.items():
            warm, counted = done[:skipped], done[skipped:]
            ordered = sorted(counted, key=lambda r: r["seconds"])
            results[name] = ordered[len(ordered) // 2] | {
                "runs_s": [round(r["seconds"], 3) for r in counted],
                "warm_up_s": [round(r["seconds"], 3) for r in warm],
                "peak_rss_mb": max(r["peak_rss_mb"] for r in done),
            }
    finally:
        PostgresDatabase.drop(Settings().postgres_url, db)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)
    return results


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """Seconds, peak memory and ratios of one fully measured row count."""
    floor = results["raw_merge"]["seconds"]
    sync, dlt = results["sync"], results.get("dlt")
    return {
        "sync_s": round(sync["seconds"], 3),
        "raw_merge_s": round(floor, 3),
        "polars_rewrite_s": round(results["polars_rewrite"]["seconds"], 3),
        "dlt_s": round(dlt["seconds"], 3) if dlt else None,
        "sync_peak_rss_mb": round(sync["peak_rss_mb"], 1),
        "raw_merge_peak_rss_mb": round(results["raw_merge"]["peak_rss_mb"], 1),
        "polars_rewrite_peak_rss_mb": round(results["polars_rewrite"]["peak_rss_mb"], 1),
        "dlt_peak_rss_mb": round(dlt["peak_rss_mb"], 1) if dlt else None,
        "sync_vs_raw_merge": round(sync["seconds"] / floor, 2),
        "dlt_vs_sync": round(dlt["seconds"] / sync["seconds"], 2) if dlt else None,
        "sync_runs_s": sync["runs_s"],
        "sync_phases_s": sync["phases_s"],
        "raw_merge_runs_s": results["raw_merge"]["runs_s"],
        "dlt_runs_s": dlt["runs_s"] if dlt else None,
        "warm_up_s": {
            name: r["warm_up_s"]
            for name, r in results.items()
            if isinstance(r, dict) and "warm_up_s" in r
        },
    }


def _child_main(run: str, work: Path, db: str, rows: int) -> None:
    if run == "load":
        result = load(work, db, rows)
    elif run == "change":
        result = change(work, db, rows)
    else:
        result = RUNS[run](work, db)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result, default=str))


def main() -> None:
    """Parse arguments, run the benchmark, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scale", type=int, default=5_000_000, help="rows of the full run")
    parser.add_argument("--scales", default="", help="comma-separated row counts for `scale`")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--skip-dlt", action="store_true", help="leave dlt out")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each contender at a fully timed row count"
    )
    parser.add_argument(
        "--warm-up",
        type=int,
        default=1,
        help="uncounted rounds of every contender before the timed ones (fully timed row counts)",
    )
    parser.add_argument(
        "--full-scales", action="store_true", help="time every contender at each of --scales"
    )
    parser.add_argument("--child", choices=[*RUNS, "load", "change"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child_main(args.child, args.work, args.db, args.rows)
        return

    console = Console()
    root = Path(tempfile.mkdtemp(prefix="hubspoke-bench-sync-"))
    with_dlt = not args.skip_dlt
    try:
        if args.repeat < 1 or args.warm_up < 0:
            parser.error(
                f"--repeat must be at least 1 and --warm-up at least 0,"
                f" got {args.repeat} and {args.warm_up}"
            )
        full = measure(
            args.scale,
            root,
            full=True,
            with_dlt=with_dlt,
            repeat=args.repeat,
            warm_up=args.warm_up,
        )
        scales = [int(x) for x in args.scales.split(",") if x.strip()] or [args.scale]
        runs = {
            str(n): full
            if n == args.scale
            else measure(
                n,
                root,
                full=args.full_scales,
                with_dlt=with_dlt and args.full_scales,
                repeat=args.repeat,
                warm_up=args.warm_up,
            )
            for n in scales
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)

    out: dict[str, Any] = {
        "rows": args.scale,
        "changes": full["change"],
        **summary(full),
        "scale": {n: round(r["sync"]["seconds"], 3) for n, r in runs.items()},
        "scale_peak_rss_mb": {n: round(r["sync"]["peak_rss_mb"], 1) for n, r in runs.items()},
    }
    if args.full_scales:
        out["scale_detail"] = {n: summary(r) for n, r in runs.items()}
    floor = full["raw_merge"]["seconds"]
    table = Table(title=f"Nightly sync of {args.scale:,} rows, 1% changed")
    for col in ("contender", "seconds (median)", "x raw merge", "peak RSS MB", "runs (s)"):
        table.add_column(col, justify="left" if col == "contender" else "right")
    for name in ("sync", "raw_merge", "polars_rewrite", "dlt"):
        if name in full:
            r = full[name]
            table.add_row(
                name,
                f"{r['seconds']:.2f}",
                f"{r['seconds'] / floor:.2f}",
                f"{r['peak_rss_mb']:.0f}",
                ", ".join(f"{x:.2f}" for x in r["runs_s"]),
            )
    console.print(table)
    console.print({"scale (rows -> sync s)": out["scale"], "sync result": full["sync"]})
    if args.full_scales:
        console.print({"by row count": out["scale_detail"]})
    if args.json:
        write_json(out, args.json, console)


if __name__ == "__main__":
    main()
