"""Configuration in one place: every setting, its environment variable, default and check."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from datetime import time
from pathlib import Path
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

StackKind = Literal["embedded", "local"]
"""embedded: SQLite spokes and the SQLite bus, no services. local: the services on this machine
(sales on PostgreSQL, support on MariaDB, billing on SQLite, RabbitMQ as the bus)."""

_STACK_FILE = "stack.json"
DAGSTER_PG_SCHEME = "postgresql+psycopg2://"


class ConfigError(ValueError):
    """A setting has a value Hubspoke cannot use; the message names it and what is accepted."""


@dataclass(frozen=True)
class Settings:
    """Where the stack lives, what it is made of, and how it runs."""

    home: Path = Path(".hubspoke")
    """HUBSPOKE_HOME: folder with lake/, spokes/, bus/ and hub/."""
    stack: StackKind = "embedded"
    """HUBSPOKE_STACK (or `--stack` at creation): recorded in the home, so later commands agree."""
    schedule_timezone: str = "UTC"
    """HUBSPOKE_SCHEDULE_TZ: IANA time zone of the nightly sync at 02:00."""
    batch_size: int = 20000
    """HUBSPOKE_BATCH_SIZE: identity events per hub micro-batch."""
    projection_interval_s: float = 5.0
    """HUBSPOKE_PROJECTION_INTERVAL_S: under load, how often the hub merges the logged events
    into customer_identity (every batch is in identity_events at once)."""
    catch_up_after_s: float = 10.0
    """HUBSPOKE_CATCH_UP_AFTER_S: identity events older than this, not yet ingested by a running
    `hubspoke consume --follow`, make the Dagster sensor launch a catch-up run."""
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    """HUBSPOKE_RABBITMQ_URL: broker of the local stack."""
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    """HUBSPOKE_POSTGRES_URL: server of the sales spoke (its database is created per home)."""
    mariadb_url: str = "mysql://root@127.0.0.1:3306/test"
    """HUBSPOKE_MARIADB_URL: server of the support spoke (its database is created per home)."""
    graphiql_assets: Path = Path.home() / ".cache" / "hubspoke" / "graphiql"
    """HUBSPOKE_GRAPHIQL_ASSETS: folder of GraphiQL's JavaScript and CSS, served by the API so the
    page works without a CDN (`python -m hubspoke_graphql.graphiql` fills it)."""
    api_keys_file: Path | None = None
    """HUBSPOKE_API_KEYS_FILE: JSON file of the GraphQL API's keys and roles; default
    `<home>/api_keys.json`, created with an admin and an analyst key when missing."""
    introspection_roles: tuple[str, ...] = ("admin", "analyst")
    """HUBSPOKE_INTROSPECTION_ROLES: comma-separated roles that may introspect the schema
    (GraphiQL is served only when one may)."""
    api_workers: int = 1
    """HUBSPOKE_API_WORKERS: uvicorn worker processes of `hubspoke serve`."""
    api_query_threads: int = 1
    """HUBSPOKE_API_QUERY_THREADS: DuckDB threads of one API request's query (a refresh that
    loads in full uses every core). One serves many concurrent clients best: 16 clients paging,
    193 -> 258-289 req/s against two threads on two cores; more suits a few clients asking
    heavy aggregates."""

    api_read_threads: int = 1
    """HUBSPOKE_API_READ_THREADS: threads per server process that run the requests' lake
    queries, one query each. One by default: under load the processes already keep every core
    busy, and queries of one process side by side only time-slice the cores (the GraphQL bench's
    page, 16 clients on two workers: p99 32.5-38.9 ms with one thread, 42.1-55.3 with two; in a
    slower hour of the machine 56.8-66.6 and 58.8). The price is that one long query (an
    aggregate over a large table never asked before) holds up the other reads of its process;
    lookups by id and loading a past view for asOf never wait for it. More threads suit a few
    clients asking heavy queries. Each snapshot view opens a DuckDB cursor per read thread,
    ~1 ms each on every refresh, hence at most 32."""

    api_switch_interval_ms: float = 0.5
    """HUBSPOKE_API_SWITCH_INTERVAL_MS: how long a thread of a server process may hold the GIL
    while another waits for it (Python's default is 5 ms). A page's DuckDB query runs on a read
    thread and takes the GIL back 8-10 times before its rows are in; while the event loop thread
    answers other requests, each time waits up to this long (a 0.6 ms query beside a thread that
    never sleeps: 43 ms at 5 ms, 5.7 ms at 0.5 ms). Four clients paging beside eight asking by
    id, on two workers: page p99 41-102 ms at 5 ms, 31-43 ms at 0.5 ms; by-id p99 1-2.5 ms
    longer."""

    dagster_pg_url: str | None = None
    """HUBSPOKE_DAGSTER_PG_URL: PostgreSQL database of the Dagster instance when Dagster runs with
    DAGSTER_HOME=deploy/postgres (read there by dagster.yaml); unset, Dagster stores in SQLite."""
    sync_overlap_min: int = 15
    """HUBSPOKE_SYNC_OVERLAP_MIN: each sync re-reads the changes of this many minutes before its
    watermark, so a row committed late with an earlier timestamp is not missed."""
    sync_batch_rows: int = 50_000
    """HUBSPOKE_SYNC_BATCH_ROWS: rows per Arrow batch read from a spoke (bounds memory)."""
    sync_windows: dict[str, str] = field(default_factory=dict, hash=False)
    """HUBSPOKE_SYNC_WINDOWS: per spoke, the local time and IANA zone of its nightly sync, e.g.
    "sales=02:00@America/New_York,support=03:30@Europe/Berlin"; others run at 02:00 in
    HUBSPOKE_SCHEDULE_TZ."""

    def __post_init__(self) -> None:
        if self.stack not in get_args(StackKind):
            raise ConfigError(
                f"stack {self.stack!r} is not one of: {', '.join(get_args(StackKind))}"
            )
        try:
            ZoneInfo(self.schedule_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"HUBSPOKE_SCHEDULE_TZ={self.schedule_timezone!r} is not an IANA time zone"
                " (for example UTC or Europe/Berlin)"
            ) from None
        if not 1 <= self.api_workers <= 64:
            raise ConfigError(f"HUBSPOKE_API_WORKERS={self.api_workers} must be between 1 and 64")
        if not 1 <= self.api_query_threads <= 256:
            raise ConfigError(
                f"HUBSPOKE_API_QUERY_THREADS={self.api_query_threads} must be between 1 and 256"
            )
        if not 1 <= self.api_read_threads <= 32:
            raise ConfigError(
                f"HUBSPOKE_API_READ_THREADS={self.api_read_threads} must be between 1 and 32"
            )
        if not 0.05 <= self.api_switch_interval_ms <= 100:
            raise ConfigError(
                f"HUBSPOKE_API_SWITCH_INTERVAL_MS={self.api_switch_interval_ms:g} must be between"
                " 0.05 and 100"
            )
        if self.dagster_pg_url is not None and not self.dagster_pg_url.startswith(
            DAGSTER_PG_SCHEME
        ):
            # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, on which dagster-postgres's
            # NOTIFY with a bound parameter fails; its own driver is psycopg2.
            raise ConfigError(
                f"HUBSPOKE_DAGSTER_PG_URL={self.dagster_pg_url!r} must be a PostgreSQL URL for"
                f" psycopg2, such as {DAGSTER_PG_SCHEME}postgres@127.0.0.1:5432/dagster"
            )
        if not 0 <= self.sync_overlap_min <= 10_080:
            raise ConfigError(
                f"HUBSPOKE_SYNC_OVERLAP_MIN={self.sync_overlap_min} must be 0 to 10080 minutes"
            )
        if not 1_000 <= self.sync_batch_rows <= 1_000_000:
            raise ConfigError(
                f"HUBSPOKE_SYNC_BATCH_ROWS={self.sync_batch_rows} must be between 1000 and 1000000"
            )
        for spoke in self.sync_windows:
            self.sync_window(spoke)
        if not 1 <= self.batch_size <= 1_000_000:
            raise ConfigError(
                f"HUBSPOKE_BATCH_SIZE={self.batch_size} must be between 1 and 1000000"
            )

    @property
    def keys_file(self) -> Path:
        """Where the API's keys are read from."""
        return self.api_keys_file or self.home / "api_keys.json"

    def sync_window(self, spoke: str) -> tuple[time, ZoneInfo]:
        """The local time of day and time zone of `spoke`'s nightly sync."""
        raw = self.sync_windows.get(spoke, f"02:00@{self.schedule_timezone}")
        at, _, zone = raw.partition("@")
        try:
            local = time.fromisoformat(at.strip())
            return local, ZoneInfo(zone.strip())
        except (ValueError, ZoneInfoNotFoundError):
            raise ConfigError(
                f"HUBSPOKE_SYNC_WINDOWS: {spoke}={raw!r} must be HH:MM@Area/City"
                " (for example sales=02:00@America/New_York)"
            ) from None

    @property
    def namespace(self) -> str:
        """A short name unique to this home: its databases, queues and exchanges carry it."""
        digest = hashlib.sha1(str(self.home.resolve()).encode()).hexdigest()[:10]
        return f"hubspoke_{digest}"

    def recorded(self) -> Settings:
        """These settings with the stack kind the home was created with, if it records one."""
        path = self.home / _STACK_FILE
        if not path.exists():
            return self
        return replace(self, stack=json.loads(path.read_text())["stack"])

    def record(self) -> None:
        """Write the stack kind into the home (at creation)."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / _STACK_FILE).write_text(json.dumps({"stack": self.stack}))

    @classmethod
    def from_env(cls, home: Path | None = None, stack: str | None = None) -> Settings:
        """Settings from the environment; CLI flags (`home`, `stack`) win over variables."""
        env = os.environ
        defaults = cls()
        return cls(
            home=home or Path(env.get("HUBSPOKE_HOME", ".hubspoke")),
            stack=stack or env.get("HUBSPOKE_STACK", "embedded"),  # type: ignore[arg-type]
            schedule_timezone=env.get("HUBSPOKE_SCHEDULE_TZ", "UTC"),
            batch_size=_whole("HUBSPOKE_BATCH_SIZE", env.get("HUBSPOKE_BATCH_SIZE", "20000")),
            projection_interval_s=_seconds(
                "HUBSPOKE_PROJECTION_INTERVAL_S", env.get("HUBSPOKE_PROJECTION_INTERVAL_S", "5")
            ),
            catch_up_after_s=_seconds(
                "HUBSPOKE_CATCH_UP_AFTER_S", env.get("HUBSPOKE_CATCH_UP_AFTER_S", "10")
            ),
            rabbitmq_url=env.get("HUBSPOKE_RABBITMQ_URL", defaults.rabbitmq_url),
            postgres_url=env.get("HUBSPOKE_POSTGRES_URL", defaults.postgres_url),
            mariadb_url=env.get("HUBSPOKE_MARIADB_URL", defaults.mariadb_url),
            graphiql_assets=Path(env.get("HUBSPOKE_GRAPHIQL_ASSETS", defaults.graphiql_assets)),
            api_keys_file=Path(p) if (p := env.get("HUBSPOKE_API_KEYS_FILE")) else None,
            introspection_roles=tuple(
                r.strip()
                for r in env.get("HUBSPOKE_INTROSPECTION_ROLES", "admin,analyst").split(",")
                if r.strip()
            ),
            api_workers=_whole("HUBSPOKE_API_WORKERS", env.get("HUBSPOKE_API_WORKERS", "1")),
            api_query_threads=_whole(
                "HUBSPOKE_API_QUERY_THREADS", env.get("HUBSPOKE_API_QUERY_THREADS", "1")
            ),
            api_read_threads=_whole(
                "HUBSPOKE_API_READ_THREADS", env.get("HUBSPOKE_API_READ_THREADS", "1")
            ),
            api_switch_interval_ms=_number(
                "HUBSPOKE_API_SWITCH_INTERVAL_MS", env.get("HUBSPOKE_API_SWITCH_INTERVAL_MS", "0.5")
            ),
            dagster_pg_url=env.get("HUBSPOKE_DAGSTER_PG_URL") or None,
            sync_overlap_min=_whole(
                "HUBSPOKE_SYNC_OVERLAP_MIN", env.get("HUBSPOKE_SYNC_OVERLAP_MIN", "15")
            ),
            sync_batch_rows=_whole(
                "HUBSPOKE_SYNC_BATCH_ROWS", env.get("HUBSPOKE_SYNC_BATCH_ROWS", "50000")
            ),
            sync_windows=_windows(env.get("HUBSPOKE_SYNC_WINDOWS", "")),
        )


def _whole(name: str, raw: str) -> int:
    digits = raw.strip()
    if not (digits.isascii() and digits.isdigit()):
        raise ConfigError(f"{name}={raw!r} must be a whole number")
    return int(digits)


def _number(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} must be a number") from None


def _seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86_400:
        raise ConfigError(f"{name}={raw!r} must be a number of seconds, 0 to 86400")
    return value


def _windows(raw: str) -> dict[str, str]:
    windows: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        spoke, sep, window = item.partition("=")
        if not sep or not spoke.strip() or "@" not in window:
            raise ConfigError(
                f"HUBSPOKE_SYNC_WINDOWS: {item!r} must be SPOKE=HH:MM@Area/City"
                " (for example sales=02:00@America/New_York)"
            )
        windows[spoke.strip()] = window.strip()
    return windows
