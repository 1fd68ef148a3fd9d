"""GraphQL read benchmark: Hubspoke's API against PostGraphile over PostgreSQL, same data.

    python -m bench.graphql [--scale 1000000] [--requests 4000] [--json PATH]

Loads `scale` customers with all three extensions into a lake and into a PostgreSQL database of
its own, serves both (`hubspoke serve` with uvicorn workers; PostGraphile from bench/node,
installed with `npm --prefix bench/node install`), and drives each from a separate process with
16 concurrent keep-alive clients: (a) one customer by id with identity and every extension,
(b) a page of 100 customers with every extension filtered on a sales field, a new threshold for
every request (nothing answered before), (b') the same page with 50 thresholds asked again and
again (a dashboard: answers kept per lake state), (c) revenue by sales rep. Prints the table and
writes the JSON keys the issue names (`page_*` for (b), `page_repeated_*` for (b')). Not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from hubspoke_graphql.access import create_keys_file
from hubspoke_graphql.filters import duckdb_type
from rich.console import Console
from rich.table import Table

from bench.load import Outcome, drive
from bench.report import write_json
from hubspoke.config import Settings
from hubspoke.lake import Lake
from lake_schema import Contract, load_catalog

console = Console()
NODE = Path(__file__).resolve().parent / "node"
CONCURRENCY = 16
WARM_UP = 200
REPEATED_PAGES = 50
"""Thresholds of the repeated page query (b'), each asked again and again."""

IDENTITY = "id name email createdAt createdBy updatedAt updatedBy version deleted"
SALES = "accountValue salesRep creditLimit updatedAt"
SUPPORT = "supportTier lifetimeTickets updatedAt"
BILLING = "vatNumber paymentTerms updatedAt"
OURS = {
    "by_id": "query ById($id: ID!) { customer(id: $id) { "
    f"{IDENTITY} sales {{ {SALES} }} support {{ {SUPPORT} }} billing {{ {BILLING} }} }} }}",
    "page": "query Page($min: Decimal!) { customers(first: 100,"
    " where: {sales: {accountValue: {gt: $min}}}) { pageInfo { hasNextPage endCursor } nodes { "
    f"{IDENTITY} sales {{ {SALES} }} support {{ {SUPPORT} }} billing {{ {BILLING} }} }} }} }}",
    "aggregate": "query Revenue { customers { aggregate(groupBy: [SALES_SALES_REP]) {"
    " group count sum { salesAccountValue } avg { salesAccountValue } } } }",
}
OURS["page_repeated"] = OURS["page"]
PG_EXT = (
    f"customerSupportDomainByCustomerId {{ {SUPPORT} }}"
    f" customerBillingDomainByCustomerId {{ {BILLING} }}"
)
POSTGRAPHILE = {
    "by_id": "query ById($id: String!) { customerIdentityById(id: $id) { "
    f"{IDENTITY} customerSalesDomainByCustomerId {{ {SALES} }} {PG_EXT} }} }}",
    # PostGraphile filters one table's own columns: the page starts from the sales rows.
    "page": "query Page($min: BigFloat!) { allCustomerSalesDomains(first: 100,"
    " orderBy: CUSTOMER_ID_ASC, filter: {accountValue: {greaterThan: $min}}) {"
    " pageInfo { hasNextPage endCursor } nodes { "
    f"{SALES} customerIdentityByCustomerId {{ {IDENTITY} {PG_EXT} }} }} }} }}",
    "aggregate": "query Revenue { allCustomerSalesDomains { groupedAggregates(groupBy: SALES_REP)"
    " { keys sum { accountValue } average { accountValue } } } }",
}
POSTGRAPHILE["page_repeated"] = POSTGRAPHILE["page"]


def tables(catalog: Any, n: int, seed: int = 5) -> dict[str, pa.Table]:
    """`n` customers with a row in every extension, as Arrow tables in contract order."""
    rng = random.Random(seed)

    def ints(low: int, high: int, count: int = n) -> pa.Array:
        return pa.array([rng.randrange(low, high) for _ in range(count)], pa.int64())

    ids = pa.array([f"c{i:08d}" for i in range(n)])
    at = datetime(2026, 1, 1, tzinfo=UTC)
    stamps = pa.array([at + timedelta(seconds=int(s)) for s in ints(0, 10**7, 1000).to_pylist()])
    when = stamps.take(ints(0, 1000))
    spokes = pa.array(["sales", "support", "billing"]).take(ints(0, 3))
    identity = {
        "id": ids,
        "name": pa.array([f"Customer {i}" for i in range(n)]),
        "email": pa.array([f"customer{i}@example.com" for i in range(n)]),
        "created_at": when,
        "created_by": spokes,
        "updated_at": when,
        "updated_by": spokes,
        "last_event_id": ids,
        "version": (ints(1, 20)),
        "deleted": pa.array([False] * n),
        "deleted_at": pa.nulls(n, pa.timestamp("us", tz="UTC")),
    }
    cents = pa.decimal128(18, 2)
    sales = {
        "customer_id": ids,
        # whole cents, so that values carry two decimals
        "account_value": pa.array(
            [Decimal(v).scaleb(-2) for v in ints(0, 100_000_000).to_pylist()], cents
        ),
        "sales_rep": pa.array([f"rep-{i:02d}" for i in range(50)]).take(ints(0, 50)),
        "credit_limit": pa.array([Decimal(v) for v in ints(0, 1_000_000).to_pylist()], cents),
        "updated_at": when,
    }
    support = {
        "customer_id": ids,
        "support_tier": pa.array(["basic", "silver", "gold", "platinum"]).take(ints(0, 4)),
        "lifetime_tickets": (ints(0, 500)),
        "updated_at": when,
    }
    billing = {
        "customer_id": ids,
        "vat_number": pa.array([f"DE{100000000 + i}" for i in range(n)]),
        "payment_terms": pa.array(["PREPAID", "NET15", "NET30", "NET60", "NET90"]).take(ints(0, 5)),
        "updated_at": when,
    }
    out = {}
    for contract, columns in (
        (catalog.identity("customer"), identity),
        (catalog.extension("sales"), sales),
        (catalog.extension("support"), support),
        (catalog.extension("billing"), billing),
    ):
        out[contract.table_name] = pa.table(columns).cast(contract.arrow_schema())
    return out


def load_lake(home: Path, data: dict[str, pa.Table]) -> Lake:
    """A lake holding `data`, one Delta table per contract."""
    lake = Lake(home / "lake", load_catalog())
    lake.create_tables()
    for name, rows in data.items():
        lake.table(name).append(rows)
    Settings(home=home).record()
    return lake


_PG_TYPES = {
    "VARCHAR": "text",
    "BIGINT": "bigint",
    "DOUBLE": "double precision",
    "BOOLEAN": "boolean",
    "TIMESTAMPTZ": "timestamptz",
    "DATE": "date",
}


def _pg_type(contract: Contract, name: str) -> str:
    sql = duckdb_type(contract.field(name))
    return _PG_TYPES.get(sql, sql.replace("DECIMAL", "numeric"))


def load_postgres(url: str, database: str, catalog: Any, data: dict[str, pa.Table]) -> str:
    """A new database holding `data` with keys and foreign keys; returns its URL."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    db_url = url.rsplit("/", 1)[0] + f"/{database}"
    with psycopg.connect(db_url, autocommit=True) as con:
        for name, rows in data.items():
            contract = catalog.get(name)
            columns = ", ".join(
                f'"{f.name}" {_pg_type(contract, f.name)}{"" if f.nullable else " NOT NULL"}'
                for f in contract.fields
            )
            con.execute(f'CREATE TABLE "{name}" ({columns})')
            buffer = io.BytesIO()
            pacsv.write_csv(rows, buffer, pacsv.WriteOptions(include_header=False))
            with con.cursor().copy(f'COPY "{name}" FROM STDIN WITH (FORMAT csv)') as copy:
                copy.write(buffer.getvalue())
            key = contract.key_fields[0]
            con.execute(f'ALTER TABLE "{name}" ADD PRIMARY KEY ("{key}")')
            if contract.kind == "extension":
                con.execute(
                    f'ALTER TABLE "{name}" ADD FOREIGN KEY ("{key}")'
                    " REFERENCES customer_identity (id)"
                )
        con.execute("ANALYZE")
    return db_url


def _settle(postgres: str) -> None:
    """Write out what the setup left dirty (PostgreSQL's buffers and WAL, the lake's files), so
    that the writeback does not fall on whichever API is measured first."""
    with psycopg.connect(postgres, autocommit=True) as admin:
        try:
            admin.execute("CHECKPOINT")
        except psycopg.errors.InsufficientPrivilege:
            console.print("[yellow]no CHECKPOINT (it needs superuser or pg_checkpoint)")
    os.sync()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, headers: dict[str, str], server: subprocess.Popen[bytes]) -> None:
    body = json.dumps({"query": "{ __typename }"}).encode()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"{server.args} exited with {server.returncode}")
        request = urllib.request.Request(url, body, {"Content-Type": "application/json", **headers})
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within 600 s")


def measure(
    apis: dict[str, tuple[str, dict[str, str], dict[str, str]]], n: int, requests: int
) -> dict[str, dict[str, Any]]:
    """Each query driven by CONCURRENCY clients from a separate process, against every API in
    turn (API name -> its URL, headers and query texts): name -> query -> latency and throughput.

    The APIs take turns query by query, so that a slow spell of the machine falls on both sides
    of a comparison rather than on one API's every query."""
    rng = random.Random(11)
    variables = {
        "by_id": [{"id": f"c{rng.randrange(n):08d}"} for _ in range(requests)],
        # The warm-up's requests come first: the measured ones all ask something new.
        "page": [{"min": str(rng.randrange(0, 900_000))} for _ in range(requests + WARM_UP)],
        "page_repeated": [{"min": str(rng.randrange(0, 900_000))} for _ in range(REPEATED_PAGES)],
        "aggregate": [{}],
    }
    results: dict[str, dict[str, Any]] = {api: {} for api in apis}
    with ProcessPoolExecutor(1) as pool:
        for name in OURS:
            total = requests if name != "aggregate" else max(requests // 10, 100)
            for api, (url, headers, queries) in apis.items():
                label = f"{api} {name}"
                with console.status(f"driving {label}"):
                    payloads = [{"query": queries[name], "variables": v} for v in variables[name]]
                    results[api][name] = _drive_query(pool, url, headers, payloads, total, label)
    return results


def _drive_query(
    pool: ProcessPoolExecutor,
    url: str,
    headers: dict[str, str],
    payloads: list[dict[str, Any]],
    total: int,
    label: str,
) -> dict[str, Any]:
    """A short warm-up (first plans, caches), then `total` requests of one query, measured."""
    warm_up, measured = payloads[:WARM_UP], payloads[WARM_UP:] or payloads
    pool.submit(drive, url, headers, warm_up, concurrency=CONCURRENCY, total=WARM_UP).result()
    out: Outcome = pool.submit(
        drive, url, headers, measured, concurrency=CONCURRENCY, total=total
    ).result()
    lat = sorted(x * 1000 for x in out.latencies)
    if out.failures:
        console.print(f"[red]{label}: {out.failures} failures, first: {out.first_failure}")
    return {
        "rps": round(len(lat) / out.seconds, 1),
        "p50_ms": round(_percentile(lat, 50), 2),
        "p95_ms": round(_percentile(lat, 95), 2),
        "p99_ms": round(_percentile(lat, 99), 2),
        "failures": out.failures,
    }


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=1_000_000, help="customers (default 1000000)")
    parser.add_argument("--requests", type=int, default=4000, help="requests per measured query")
    parser.add_argument("--workers", type=int, default=2, help="server processes of each API")
    parser.add_argument("--postgres", default=Settings().postgres_url)
    parser.add_argument("--json", type=Path, default=Path("bench/results/graphql.json"))
    args = parser.parse_args(argv)
    if args.scale < 1000 or args.requests < 100:
        parser.error("--scale must be at least 1000 and --requests at least 100")
    postgraphile = NODE / "node_modules" / ".bin" / "postgraphile"
    if not postgraphile.exists():
        parser.error(f"PostGraphile is not installed: run `npm --prefix {NODE} install`")

    catalog = load_catalog()
    database = f"hubspoke_bench_{uuid.uuid4().hex[:8]}"
    servers: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="bench-graphql-") as tmp:
        try:
            with console.status(f"generating {args.scale:,} customers"):
                data = tables(catalog, args.scale)
            with console.status("writing the lake"):
                home = Path(tmp) / "home"
                load_lake(home, data)
                keys = create_keys_file(Settings(home=home).keys_file)
            with console.status("loading PostgreSQL"):
                db_url = load_postgres(args.postgres, database, catalog, data)
            del data

            ours_port, pg_port = _free_port(), _free_port()
            env = os.environ | {"HUBSPOKE_HOME": str(home)}
            servers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "hubspoke.cli",
                        "serve",
                        "--port",
                        str(ours_port),
                        "--workers",
                        str(args.workers),
                        "--home",
                        str(home),
                    ],
                    env=env,
                    start_new_session=True,
                )
            )
            servers.append(
                subprocess.Popen(
                    [
                        str(postgraphile),
                        "-c",
                        db_url,
                        "--schema",
                        "public",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(pg_port),
                        "--disable-query-log",
                        "--cluster-workers",
                        str(args.workers),
                        "--append-plugins",
                        "postgraphile-plugin-connection-filter,@graphile/pg-aggregates",
                    ],
                    start_new_session=True,
                    stdout=subprocess.DEVNULL,
                )
            )
            ours_url = f"http://127.0.0.1:{ours_port}/graphql"
            pg_url = f"http://127.0.0.1:{pg_port}/graphql"
            ours_headers = {"X-API-Key": keys["analyst"]}
            with console.status("waiting for both APIs"):
                _wait(ours_url, ours_headers, servers[0])
                _wait(pg_url, {}, servers[1])
            _settle(args.postgres)
            measured = measure(
                {
                    "Hubspoke": (ours_url, ours_headers, OURS),
                    "PostGraphile": (pg_url, {}, POSTGRAPHILE),
                },
                args.scale,
                args.requests,
            )
            ours, theirs = measured["Hubspoke"], measured["PostGraphile"]
        finally:
            for server in servers:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.pid, 15)
                server.wait(30)
            with psycopg.connect(args.postgres, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    report(args, ours, theirs)


def report(args: argparse.Namespace, ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    """Print the table and write the JSON object."""
    table = Table(title=f"GraphQL reads, {args.scale:,} customers, {CONCURRENCY} clients")
    for column in ("query", "API", "req/s", "p50 ms", "p95 ms", "p99 ms", "failures"):
        table.add_column(column, justify="right" if column != "API" else "left")
    for name in OURS:
        for api, results in (("Hubspoke", ours), ("PostGraphile", theirs)):
            r = results[name]
            table.add_row(
                name,
                api,
                str(r["rps"]),
                str(r["p50_ms"]),
                str(r["p95_ms"]),
                str(r["p99_ms"]),
                str(r["failures"]),
            )
    console.print(table)
    out = {
        "by_id_p99_ms": ours["by_id"]["p99_ms"],
        "by_id_rps": ours["by_id"]["rps"],
        "postgraphile_by_id_rps": theirs["by_id"]["rps"],
        "page_p99_ms": ours["page"]["p99_ms"],
        "page_rps": ours["page"]["rps"],
        "postgraphile_page_rps": theirs["page"]["rps"],
        "page_repeated_p99_ms": ours["page_repeated"]["p99_ms"],
        "page_repeated_rps": ours["page_repeated"]["rps"],
        "postgraphile_page_repeated_rps": theirs["page_repeated"]["rps"],
        "aggregate_p99_ms": ours["aggregate"]["p99_ms"],
        "by_id_vs_postgraphile": round(ours["by_id"]["rps"] / theirs["by_id"]["rps"], 2),
        "page_vs_postgraphile": round(ours["page"]["rps"] / theirs["page"]["rps"], 2),
        "scale": args.scale,
        "workers": args.workers,
        "detail": {"hubspoke": ours, "postgraphile": theirs},
    }
    targets = (
        ("by_id_p99_ms < 10", out["by_id_p99_ms"] < 10),
        ("by_id_rps >= postgraphile_by_id_rps", out["by_id_rps"] >= out["postgraphile_by_id_rps"]),
        ("page_p99_ms < 50", out["page_p99_ms"] < 50),
        ("page_repeated_p99_ms < 50", out["page_repeated_p99_ms"] < 50),
    )
    for label, met in targets:
        console.print(f"{'met' if met else 'MISSED'}: {label}")
    write_json(out, args.json, console)


if __name__ == "__main__":
    main()
