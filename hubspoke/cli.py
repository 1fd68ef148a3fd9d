"""The `hubspoke` command line: demo, init, simulate, consume, sync, serve, status, check, erase,
audit, contracts, dead-letters."""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import polars as pl
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from hubspoke.bus import BusUnavailable
from hubspoke.config import ConfigError, Settings
from hubspoke.erasure import ErasureRequest, UnknownSubject, erase
from hubspoke.follow import Follower
from hubspoke.ingest import BatchReport, UnknownDeadLetter
from hubspoke.quality import run_checks
from hubspoke.simulate import Simulator
from hubspoke.stack import HomeNotFound, Stack
from hubspoke.sync import SyncReport
from lake_schema import ContractError

app = typer.Typer(
    help="Hubspoke: identity events in real time, nightly domain syncs into Delta Lake, GraphQL on top.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)

Home = Annotated[
    Path | None,
    typer.Option(
        "--home", help="Folder of the embedded stack [env: HUBSPOKE_HOME, default ./.hubspoke]"
    ),
]
F = TypeVar("F", bound=Callable[..., Any])
PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The checkout holding dagster.yaml (the demo runs `dagster dev` from there)."""
HELD_SHOWN = 10
"""Rows held back by the sync that `hubspoke sync` lists per table."""


def _user_errors(command: F) -> F:
    """Turn errors caused by the user's input into one line on stderr and exit code 2."""

    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (HomeNotFound, ConfigError, ContractError, UnknownDeadLetter, UnknownSubject) as exc:
            errors.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except BusUnavailable as exc:  # not the user's input, but still one clear line
            errors.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return run  # type: ignore[return-value]


StackOption = Annotated[
    str | None,
    typer.Option(
        "--stack",
        help="embedded (no services) or local (PostgreSQL, MariaDB, RabbitMQ"
        " on this machine); recorded in the home [env: HUBSPOKE_STACK]",
    ),
]


@contextmanager
def _stack(home: Path | None, create: bool = False, kind: str | None = None) -> Iterator[Stack]:
    settings = Settings.from_env(home, kind)
    stack = Stack.create(settings) if create else Stack.open(settings)
    with stack:
        yield stack


@app.command()
@_user_errors
def init(home: Home = None, stack_kind: StackOption = None) -> None:
    """Create an empty stack (lake tables, bus, spoke databases)."""
    with _stack(home, create=True, kind=stack_kind) as stack:
        console.print(f"Hubspoke home ready at [bold]{stack.home.resolve()}[/]")


@app.command()
@_user_errors
def demo(
    home: Home = None,
    stack_kind: StackOption = None,
    customers: Annotated[int, typer.Option(min=1, max=1_000_000, help="Customers to seed.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed of the simulated traffic.")] = 42,
    serve: Annotated[
        bool,
        typer.Option("--serve/--no-serve", help="Serve GraphQL and Dagster after the summary."),
    ] = True,
    graphql_port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    dagster_port: Annotated[int, typer.Option(min=1, max=65535)] = 3000,
) -> None:
    """Seed the demo spokes, stream identity events into the lake, sync every domain, then serve."""
    started = time.monotonic()
    with _stack(home, create=True, kind=stack_kind) as stack:
        existing = stack.lake.table("customer_identity").count()
        if existing:
            console.print(
                f"[dim]{existing} customers already in the lake: continuing, not reseeding.[/]"
            )
            stack.propagate()
        else:
            with _progress() as progress:
                task = progress.add_task("seeding spokes", total=customers)
                Simulator(stack, seed).seed(
                    customers,
                    on_step=lambda phase, n: progress.update(
                        task,
                        description=f"seeding: {phase}",
                        completed=n if phase == "create" else customers,
                    ),
                )
        reports = stack.sync()
        _print_summary(stack.status(), reports, time.monotonic() - started)
        settings = stack.settings
    if serve:
        _serve_all(settings, graphql_port, dagster_port)


@app.command()
@_user_errors
def simulate(
    events: Annotated[int, typer.Option(min=1, help="Spoke operations to perform.")],
    home: Home = None,
    rate: Annotated[
        float | None,
        typer.Option(min=0.1, help="Operations per second (default: as fast as possible)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
) -> None:
    """Realistic spoke traffic through the spokes' own write paths (creates, updates, deletes, domain)."""
    with _stack(home) as stack, _progress() as progress:
        task = progress.add_task("simulating", total=events)
        traffic = Simulator(stack, seed + stack.lake.table("identity_events").version()).run(
            events, rate, on_step=lambda n: progress.update(task, completed=n)
        )
    kinds = {k: v for k, v in sorted(traffic.operations.items()) if "@" not in k}
    console.print("operations: " + ", ".join(f"{k} {v}" for k, v in kinds.items()))


@app.command()
@_user_errors
def consume(
    home: Home = None,
    follow: Annotated[bool, typer.Option("--follow", help="Keep consuming until Ctrl-C.")] = False,
    interval: Annotated[
        float, typer.Option(min=0.05, help="Seconds between polls with --follow.")
    ] = 0.2,
) -> None:
    """Relay spoke outboxes, ingest identity events into the lake, and broadcast to the spokes."""
    if not follow:
        with _stack(home) as stack:
            _print_batch(stack.propagate()["ingest"])
        return

    with _stack(home) as stack:  # fails here, once, on a missing home or a bad setting
        settings = stack.settings
    Follower(settings, interval, on_batch=_print_batch).run()


def _print_batch(ingest: BatchReport) -> None:
    console.print(
        f"received {ingest.received}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(ingest.dispositions.items()))
        + f", dead-lettered {ingest.dead_lettered}; broadcast {ingest.broadcast};"
        f" max lag {ingest.max_lag_s:.2f}s"
    )


@app.command()
@_user_errors
def sync(
    home: Home = None,
    domain: Annotated[
        list[str] | None, typer.Option("--domain", help="Domain to sync (repeatable; default all).")
    ] = None,
    compare_keys: Annotated[
        bool,
        typer.Option(
            "--compare-keys",
            help="Also compare the spoke's live keys with the lake's, to propagate deletes its"
            " triggers missed (what reconciliation reports as only in the lake).",
        ),
    ] = False,
) -> None:
    """Run the nightly delta sync of the domain extension tables now."""
    with _stack(home) as stack:
        reports = stack.sync(domain, compare_keys=compare_keys)
        _print_sync(reports)
        if any(r.quarantined for r in reports):
            held = stack.lake.table("sync_quarantine").read(
                columns=["domain", "customer_id", "reason"],  # not the rows: they hold pii
                where=pl.col("domain").is_in([r.table for r in reports]),
            )
            _print_held(held.to_pylist())


@app.command()
@_user_errors
def serve(
    home: Home = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Worker processes (default HUBSPOKE_API_WORKERS)."),
    ] = None,
) -> None:
    """Serve the GraphQL API (GraphiQL at /graphql) until Ctrl-C."""
    from hubspoke_graphql.app import serve as serve_graphql

    with _stack(home) as stack:
        settings = stack.settings
    console.print(f"API keys: {settings.keys_file.resolve()}")
    serve_graphql(settings, host=host, port=port, workers=workers or settings.api_workers)


@app.command()
@_user_errors
def audit(
    customer: Annotated[str, typer.Option("--customer", help="Customer id to look up.")],
    home: Home = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Who read this customer's data through the API: when, which role, which fields."""
    from hubspoke_graphql.audit import reads_of

    with _stack(home) as stack:
        rows = reads_of(stack.lake, customer)
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title=f"API reads of customer {customer}")
    if not rows:
        table.caption = "no API read of this customer is recorded"
    for column in ("at", "role", "operation", "fields", "customers in answer"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["at"].isoformat(timespec="seconds"),
            r["role"],
            r["operation"] or "-",
            ", ".join(r["fields"]),
            str(r["customer_count"]),
        )
    console.print(table)


@app.command()
@_user_errors
def status(
    home: Home = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Events by disposition, pending events, lag, and every lake table's version and row count."""
    with _stack(home) as stack:
        state = stack.status()
    if as_json:
        print(json.dumps(state, indent=2))
        return
    _print_status(state)


@app.command("erase")
@_user_errors
def erase_customer(
    customer: Annotated[str, typer.Option("--customer", help="Id of the customer to erase.")],
    requested_by: Annotated[
        str | None,
        typer.Option(help="Who asked (a ticket, team or role); default: the OS user."),
    ] = None,
    home: Home = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the certificate as JSON.")] = False,
) -> None:
    """Right to erasure: remove a customer from the lake, every spoke and the bus; certify it."""
    request = ErasureRequest(customer, requested_by or getpass.getuser())
    with _stack(home) as stack:
        certificate = erase(stack, request)
    certificate = certificate | {
        "tables": json.loads(certificate["tables"]),
        "spokes": json.loads(certificate["spokes"]),
    }
    if as_json:
        print(json.dumps(certificate, indent=2, default=str))
        return
    table = Table(title=f"erasure certificate {certificate['certificate_id']}")
    for col in ("table", "how", "rows", "files rewritten", "files vacuumed"):
        table.add_column(col, justify="left" if col in ("table", "how") else "right")
    for name, t in certificate["tables"].items():
        table.add_row(
            name, t["action"], str(t["rows"]), str(t["files_rewritten"]), str(t["files_vacuumed"])
        )
    console.print(table)
    console.print(
        "spokes: "
        + ", ".join(f"{k} {v} rows" for k, v in certificate["spokes"].items())
        + f"; bus messages forgotten {certificate['bus_messages_forgotten']};"
        f" subject {certificate['subject_hash'][:16]}..."
    )


_FAILED = {True: "[yellow]warn[/]", False: "[red]FAIL[/]"}


@app.command()
@_user_errors
def check(
    home: Home = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Run every table's quality checks (the Dagster asset checks); exit 1 if an error check fails."""
    with _stack(home) as stack:
        results = run_checks(stack)
    if as_json:
        print(
            json.dumps(
                [
                    {"table": t, "check": c.name, "warn_only": c.warn_only, **asdict(o)}
                    for t, c, o in results
                ]
            )
        )
    else:
        table = Table(title="lake checks")
        for col in ("table", "check", "result", "detail"):
            table.add_column(col, overflow="fold")
        for name, c, o in results:
            verdict = "[green]pass[/]" if o.passed else _FAILED[c.warn_only]
            keys = f"; first keys: {', '.join(o.failing_keys[:3])}" if o.failing_keys else ""
            # Summaries quote values from the data: text, never rich markup.
            table.add_row(name, c.name, verdict, Text(o.summary + keys))
        console.print(table)
    if any(not o.passed and not c.warn_only for _, c, o in results):
        raise typer.Exit(1)


dead_letters = typer.Typer(help="Messages the hub refused, with the reason; replay after a fix.")
app.add_typer(dead_letters, name="dead-letters")


@dead_letters.command("list")
@_user_errors
def dead_letters_list(
    home: Home = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show every dead letter: id, when, why, and the start of the message."""
    with _stack(home) as stack:
        rows = stack.hub.dead_letter_list()
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title=f"{len(rows)} dead letters")
    for col in ("id", "received", "reason", "message"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r["dead_letter_id"],
            r["received_at"].isoformat(timespec="seconds"),
            r["reason"],
            r["body"][:80],
        )
    console.print(table)


@dead_letters.command("replay")
@_user_errors
def dead_letters_replay(
    dead_letter_id: Annotated[str, typer.Argument(help="Id from `hubspoke dead-letters list`.")],
    home: Home = None,
) -> None:
    """Publish a dead letter again (after fixing its producer or the contract) and remove it."""
    with _stack(home) as stack:
        stack.hub.replay_dead_letter(dead_letter_id)
        console.print(f"replayed {dead_letter_id}; `hubspoke consume` ingests it")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _print_status(state: dict[str, Any]) -> None:
    events = Table(title="identity events", show_header=True)
    for k in state["events"]:
        events.add_column(k, justify="right")
    events.add_row(*(str(v) for v in state["events"].values()))
    console.print(events)
    tables = Table(title=f"lake at {state['home']}/lake")
    tables.add_column("table")
    tables.add_column("version", justify="right")
    tables.add_column("rows", justify="right")
    tables.add_column("sync watermark")
    for name, t in state["tables"].items():
        tables.add_row(name, str(t["version"]), str(t["rows"]), state["watermarks"].get(name) or "")
    console.print(tables)
    console.print(f"live customers {state['live_customers']}, lag {state['lag_s']}s")


def _print_sync(reports: list[SyncReport]) -> None:
    # The seconds go in the caption: one more column would not fit 80 columns.
    took = ", ".join(f"{r.domain} {r.seconds['total']:.2f} s" for r in reports)
    table = Table(title="nightly delta sync", caption=f"took {took}")
    for col in ("domain", "extracted", "upserted", "deleted", "quarantined", "released", "version"):
        table.add_column(col, justify="left" if col == "domain" else "right")
    for r in reports:
        counts = (r.extracted, r.upserted, r.deleted, r.quarantined, r.released, r.version)
        table.add_row(r.domain, *map(str, counts))
    console.print(table)


def _print_held(rows: list[dict[str, Any]], first: int = HELD_SHOWN) -> None:
    """The rows the sync holds back, and why: the first few of each table."""
    table = Table(
        title="held in sync_quarantine (retried on every sync)",
        caption=f"at most {first} per table; all of them: the sync_quarantine table",
    )
    for col in ("table", "customer", "reason"):
        table.add_column(col, overflow="fold")
    shown: Counter[str] = Counter()
    for row in sorted(rows, key=lambda r: (r["domain"], r["customer_id"])):
        shown[row["domain"]] += 1
        if shown[row["domain"]] <= first:
            # Reasons quote the spoke's values: text, never rich markup.
            table.add_row(row["domain"], Text(row["customer_id"]), Text(row["reason"]))
    console.print(table)


def _print_summary(state: dict[str, Any], reports: list[SyncReport], seconds: float) -> None:
    _print_status(state)
    _print_sync(reports)
    console.print(
        f"demo ready in {seconds:.1f}s; the lake is at [bold]{state['home']}/lake[/]"
        " (read it with polars.read_delta or DuckDB over Arrow)"
    )


def _serve_all(settings: Settings, graphql_port: int, dagster_port: int) -> None:
    """GraphQL in this process, the Dagster UI as a child process group, until Ctrl-C."""
    from hubspoke_graphql.app import serve as serve_graphql

    root = PROJECT_ROOT if (PROJECT_ROOT / "dagster.yaml").exists() else Path.cwd()
    env = os.environ | {"HUBSPOKE_HOME": str(settings.home.resolve())}
    env.pop("DAGSTER_HOME", None)  # dagster dev then reads the repository's dagster.yaml
    # A new session, so that stopping it stops its webserver and daemon too (PITFALLS: dagster dev
    # ignores SIGINT when started in the background).
    dagster = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster",
            "dev",
            "-m",
            "pipelines.definitions",
            "-p",
            str(dagster_port),
            "-h",
            "127.0.0.1",
        ],
        cwd=root,
        env=env,
        start_new_session=True,
    )
    console.print(
        f"GraphQL  http://127.0.0.1:{graphql_port}/graphql"
        f" (API keys in {settings.keys_file.resolve()})\n"
        f"Dagster  http://127.0.0.1:{dagster_port}  (Ctrl-C stops both)"
    )
    try:
        serve_graphql(settings, host="127.0.0.1", port=graphql_port)
    finally:
        try:
            os.killpg(dagster.pid, signal.SIGTERM)
            dagster.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(dagster.pid, signal.SIGKILL)


contracts = typer.Typer(help="The contracts against the lake: what a contract change would do.")
app.add_typer(contracts, name="contracts")


@contracts.command("check")
@_user_errors
def contracts_check(home: Home = None) -> None:
    """Compare every contract with its lake table: fields to add, breaking changes (exit 1)."""
    with _stack(home) as stack:
        changes = [table.schema_change() for table in stack.lake.tables()]
    table = Table(title="contracts against the lake")
    for col in ("table", "verdict", "what would change"):
        table.add_column(col, overflow="fold")
    for change in changes:
        if change.breaking:
            verdict, what = "[red]breaking, refused[/red]", "; ".join(change.breaking)
        elif change.added:
            verdict, what = "adds columns", "new nullable " + ", ".join(change.added)
        else:
            verdict, what = "unchanged", ""
        table.add_row(change.table, verdict, what)
    console.print(table)
    if any(c.breaking for c in changes):
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
