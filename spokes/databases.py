"""Spoke databases: one small adapter per engine (SQLite, PostgreSQL, MariaDB) behind one interface.

Spoke SQL is written once, with `?` placeholders; the server adapters translate it to the `%s`
style of psycopg and pymysql. What else differs between engines lives here: how a transaction
starts, the upsert clause, and the outbox table's DDL. Each spoke's own tables have per-engine DDL
next to its anti-corruption layer (`LocalSchema.ddl`).

Tombstones: each spoke's schema setup also installs an AFTER DELETE trigger on its domain table
that records the deleted key and the database's clock (microseconds since the epoch, UTC) in
`hubspoke_tombstone`, so the nightly sync reads the few hard deletes instead of every live key.
The table is a queue: the sync reads every tombstone there and forgets exactly those (by `seq`)
once their deletes are committed to the lake, so a tombstone committed late is read by the next
sync, however late. A row with a NULL key says the tombstones may be incomplete (the table was
just created beside existing rows, or, on PostgreSQL, TRUNCATE emptied the domain table): the
sync then compares key sets once. A spoke database holds one domain table: its sync reads and
forgets every tombstone there.

Outbox order: the relay reads the outbox by `seq`. On SQLite a write transaction holds the
database's write lock from BEGIN IMMEDIATE to COMMIT, so `seq` order is commit order. On
PostgreSQL (BIGSERIAL) and MariaDB (AUTO_INCREMENT) the number is drawn at insert time, not at
commit: with concurrent writers to one spoke, a transaction holding a lower `seq` may commit after
a higher one was already relayed. Nothing is lost (it is still unpublished and goes out on the
next relay) and the hub orders by `occurred_at` anyway, but the relay's order is then not commit
order. The demo's writers are single-threaded per spoke, so this is documented, not solved.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit

import psycopg
import pymysql
import pymysql.cursors
from psycopg.rows import dict_row

from hubspoke.config import Settings

if TYPE_CHECKING:
    from spokes.base import Spoke

Engine = Literal["sqlite", "postgres", "mariadb"]
Row = dict[str, Any]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
"""Database names we create: interpolated into DDL (no driver binds identifiers), so checked."""


class Database:
    """One connection to a spoke's local database, in autocommit mode outside `transaction()`."""

    engine: ClassVar[Engine]
    outbox_ddl: ClassVar[str]
    """The outbox table: events written in the same transaction as the local change."""
    begin: ClassVar[str] = "BEGIN"
    _columns: ClassVar[str]
    """Query with one `?` for a table name, answering `name` and `nullable` per column."""

    def __init__(self, connection: Any) -> None:
        # psycopg, pymysql and sqlite3 connections all speak DB-API cursors returning dict rows.
        self._con = connection

    def close(self) -> None:
        """Close the connection."""
        self._con.close()

    @property
    def connection(self) -> Any:
        """The DB-API connection (for streamed reads that need a cursor of their own kind)."""
        return self._con

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """One local transaction: everything executed inside commits together or not at all."""
        self._run(self.begin).close()
        try:
            yield self
        except BaseException:
            self._con.rollback()
            raise
        self._con.commit()

    def reclaim(self, tables: Sequence[str]) -> None:
        """Rewrite `tables` so deleted rows leave the files too, not only the visible data."""
        raise NotImplementedError

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement written with `?` placeholders."""
        self._run(sql, params).close()

    def rowcount(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement and return how many rows it changed."""
        cursor = self._run(sql, params)
        try:
            return cursor.rowcount
        finally:
            cursor.close()

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Every row of a query, as dicts keyed by column name."""
        cursor = self._run(sql, params)
        try:
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of a query as a dict, or None."""
        cursor = self._run(sql, params)
        try:
            return cursor.fetchone()
        finally:
            cursor.close()

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per parameter row."""
        cursor = self._con.cursor()
        try:
            cursor.executemany(self.placeholders(sql), [tuple(r) for r in rows])
        finally:
            cursor.close()

    def executescript(self, script: str) -> None:
        """Run `;`-separated DDL statements (none may hold a `;` of its own)."""
        self.run_ddl([s for s in script.split(";") if s.strip()])

    def run_ddl(self, statements: Sequence[str]) -> None:
        """Run DDL statements, each whole (a trigger's body may hold `;`)."""
        cursor = self._con.cursor()
        try:
            for statement in statements:
                cursor.execute(statement)
        finally:
            cursor.close()

    def tombstone_ddl(self, table: str, key: str) -> list[str]:
        """Statements creating `hubspoke_tombstone` and the AFTER DELETE trigger of `table`."""
        raise NotImplementedError

    def forget_tombstones(self, seqs: Sequence[int]) -> None:
        """Delete the tombstones numbered `seqs` (those a sync read and committed)."""
        # By primary key: a range DELETE would wait on MariaDB for a transaction deleting domain
        # rows right now (InnoDB locks every row a DELETE evaluates, the uncommitted tombstone too).
        for i in range(0, len(seqs), 500):  # under SQLite's old limit of 999 parameters
            chunk = list(seqs[i : i + 500])
            self.execute(
                f"DELETE FROM {TOMBSTONES} WHERE seq IN ({','.join('?' * len(chunk))})", chunk
            )

    def has_table(self, name: str) -> bool:
        """Whether a table of that name exists in this database."""
        return bool(self.columns(name))

    def columns(self, table: str) -> dict[str, bool]:
        """The columns of `table` and whether each takes NULL (empty when there is no such table)."""
        return {r["name"]: bool(r["nullable"]) for r in self.fetchall(self._columns, (table,))}

    def install_tombstones(self, table: str, key: str) -> None:
        """Create the tombstone table and `table`'s triggers; a new table gets the marker.

        A table of an earlier shape (no `seq`, keys NOT NULL) is replaced: the marker covers
        whatever it held unread, as it covers deletes made before the trigger existed.
        """
        found = self.columns(TOMBSTONES)
        statements = self.tombstone_ddl(table, key)
        if not (found.get("deleted_key") and "seq" in found):
            statements = [
                *([f"DROP TABLE {TOMBSTONES}"] if found else []),
                *statements,
                f"INSERT INTO {TOMBSTONES} (deleted_key, deleted_us)"
                f" VALUES (NULL, {time.time_ns() // 1000})",
            ]
        self.run_ddl(statements)

    def upsert(self, table: str, key: str, row: dict[str, Any]) -> None:
        """Insert `row` into `table`, or update every other column where `key` already exists."""
        columns = list(row)
        others = [c for c in columns if c != key]
        self.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            f" {self._on_conflict(key, others)}",
            tuple(row.values()),
        )

    def placeholders(self, sql: str) -> str:
        """`sql` in the driver's placeholder style (spoke SQL is written with `?`)."""
        return format_placeholders(sql)

    def _on_conflict(self, key: str, others: list[str]) -> str:
        return f"ON CONFLICT ({key}) DO UPDATE SET " + ", ".join(
            f"{c} = excluded.{c}" for c in others
        )

    def _run(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        cursor = self._con.cursor()
        try:
            if params is None:
                cursor.execute(sql)
            else:
                cursor.execute(self.placeholders(sql), tuple(params))
        except BaseException:
            cursor.close()
            raise
        return cursor


class SqliteDatabase(Database):
    """A SQLite file (the embedded default, and billing's database in the local stack)."""

    engine = "sqlite"
    # BEGIN IMMEDIATE takes the write lock at once: seq order is commit order (see the module).
    begin = "BEGIN IMMEDIATE"
    outbox_ddl = """
    CREATE TABLE IF NOT EXISTS hubspoke_outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL,
        published_at TEXT
    );
    CREATE INDEX IF NOT EXISTS hubspoke_outbox_unpublished ON hubspoke_outbox (seq)
        WHERE published_at IS NULL;
    """

    _columns = 'SELECT name, "notnull" = 0 AS nullable FROM pragma_table_info(?)'

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions, `transaction()` says where they are.
        con = sqlite3.connect(path, timeout=30, isolation_level=None)
        con.row_factory = _sqlite_dict
        con.execute("PRAGMA journal_mode=WAL")
        super().__init__(con)
        self.path = path

    def executescript(self, script: str) -> None:
        """Run a DDL script."""
        self._con.executescript(script)

    def placeholders(self, sql: str) -> str:
        """SQLite takes `?` as written."""
        return sql

    def tombstone_ddl(self, table: str, key: str) -> list[str]:
        """The tombstone table and a row trigger."""
        # AUTOINCREMENT: a forgotten number is never drawn again for a tombstone not yet read.
        return [
            _TOMBSTONE_TABLE.format(
                seq="INTEGER PRIMARY KEY AUTOINCREMENT", key_type="TEXT", extra=""
            ),
            f"CREATE TRIGGER IF NOT EXISTS hubspoke_tombstone_{table} AFTER DELETE ON {table}"
            f" BEGIN INSERT INTO hubspoke_tombstone (deleted_key, deleted_us) VALUES (OLD.{key},"
            " CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)); END",
        ]

    def reclaim(self, tables: Sequence[str]) -> None:
        """VACUUM the whole file and truncate the WAL (SQLite cannot rewrite one table)."""
        self._con.execute("VACUUM")
        self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")


class PostgresDatabase(Database):
    """A database on a PostgreSQL server, through psycopg 3."""

    engine = "postgres"
    outbox_ddl = """
    CREATE TABLE IF NOT EXISTS hubspoke_outbox (
        seq BIGSERIAL PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL,
        published_at TEXT
    );
    CREATE INDEX IF NOT EXISTS hubspoke_outbox_unpublished ON hubspoke_outbox (seq)
        WHERE published_at IS NULL;
    """
    _DDL_LOCK = 0x6875627370  # advisory lock key for schema creation ("hubsp")
    _columns = (
        "SELECT column_name AS name, is_nullable = 'YES' AS nullable FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = ?"
    )

    def __init__(self, url: str, **overrides: Any) -> None:
        super().__init__(psycopg.connect(url, autocommit=True, row_factory=dict_row, **overrides))
        self._arrow_idle: list[Any] = []

    def close(self) -> None:
        """Close the connection and the idle Arrow connections."""
        while self._arrow_idle:
            self._arrow_idle.pop().close()
        super().close()

    @contextmanager
    def arrow_connection(self) -> Iterator[Any]:
        """An ADBC connection of this database's own, kept for the next stream when it is done.

        Connecting costs ~40 ms, a fifth of a small nightly sync. Each thread streaming at once
        gets a connection to itself; autocommit, so an idle one holds no snapshot or lock.
        """
        import adbc_driver_postgresql.dbapi as adbc

        try:
            con = self._arrow_idle.pop()
        except IndexError:
            con = adbc.connect(self.conninfo, autocommit=True)
            with con.cursor() as cursor:
                # The row estimates of key-range joins are huge, so PostgreSQL would JIT-compile
                # them: ~100 ms of compiling for a query that runs in less.
                cursor.execute("SET jit = off")
        try:
            yield con
        except BaseException:
            con.close()  # a stream left half read, or a broken connection
            raise
        self._arrow_idle.append(con)

    @property
    def conninfo(self) -> str:
        """libpq connection string of this database, for a second (Arrow) connection."""
        password = self._con.info.password
        return self._con.info.dsn + (f" password={password}" if password else "")

    @classmethod
    def create(cls, server_url: str, name: str) -> PostgresDatabase:
        """Connect to database `name` on the server of `server_url`, creating it if missing."""
        _check_name(name)
        with psycopg.connect(server_url, autocommit=True) as admin:
            found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            # Another process may create it between our check and our CREATE: that is fine.
            created_meanwhile = (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation)
            if found.fetchone() is None:
                with suppress(*created_meanwhile):
                    admin.execute(f'CREATE DATABASE "{name}"')
        return cls(server_url, dbname=name)

    @staticmethod
    def drop(server_url: str, name: str) -> None:
        """Drop database `name` on the server of `server_url`, if it exists."""
        _check_name(name)
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def run_ddl(self, statements: Sequence[str]) -> None:
        """Run DDL in one transaction, serialised with other processes doing the same."""
        # Two processes opening the same spoke at once (sensor run, consumer) can both pass
        # CREATE TABLE IF NOT EXISTS and collide in the catalogue; PostgreSQL DDL is
        # transactional, so a transaction-scoped advisory lock makes the script run one at a time.
        with self.transaction():
            self.execute("SELECT pg_advisory_xact_lock(?)", (self._DDL_LOCK,))
            super().run_ddl(statements)

    def tombstone_ddl(self, table: str, key: str) -> list[str]:
        """The tombstone table, a statement trigger reading the deleted rows as a set, and a
        TRUNCATE trigger leaving the marker that makes the next sync compare key sets."""
        # A statement-level trigger with a transition table writes the tombstones of a bulk
        # DELETE in one INSERT, not one function call per row.
        return [
            _TOMBSTONE_TABLE.format(
                seq="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", key_type="TEXT", extra=""
            ),
            f"CREATE OR REPLACE FUNCTION hubspoke_tombstone_{table}() RETURNS trigger"
            " LANGUAGE plpgsql AS $$BEGIN INSERT INTO hubspoke_tombstone (deleted_key, deleted_us)"
            f" SELECT {key}, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint"
            " FROM gone; RETURN NULL; END$$",
            f"CREATE OR REPLACE TRIGGER hubspoke_tombstone_{table} AFTER DELETE ON {table}"
            " REFERENCING OLD TABLE AS gone FOR EACH STATEMENT"
            f" EXECUTE FUNCTION hubspoke_tombstone_{table}()",
            "CREATE OR REPLACE FUNCTION hubspoke_truncated() RETURNS trigger"
            " LANGUAGE plpgsql AS $$BEGIN INSERT INTO hubspoke_tombstone (deleted_key, deleted_us)"
            " VALUES (NULL, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint);"
            " RETURN NULL; END$$",
            f"CREATE OR REPLACE TRIGGER hubspoke_truncated_{table} AFTER TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION hubspoke_truncated()",
        ]

    def reclaim(self, tables: Sequence[str]) -> None:
        """VACUUM FULL: a plain VACUUM only marks dead rows reusable, their bytes stay."""
        for table in tables:
            _check_name(table)
            self.execute(f"VACUUM FULL {table}")


class MariaDatabase(Database):
    """A database on a MariaDB (or MySQL) server, through pymysql."""

    engine = "mariadb"
    # No partial indexes: (published_at, seq) serves `published_at IS NULL ORDER BY seq` too.
    outbox_ddl = """
    CREATE TABLE IF NOT EXISTS hubspoke_outbox (
        seq BIGINT AUTO_INCREMENT PRIMARY KEY,
        event_id VARCHAR(36) NOT NULL UNIQUE,
        body MEDIUMTEXT NOT NULL,
        created_at VARCHAR(40) NOT NULL,
        published_at VARCHAR(40),
        INDEX hubspoke_outbox_unpublished (published_at, seq)
    ) ENGINE=InnoDB;
    """
    _columns = (
        "SELECT column_name AS name, is_nullable = 'YES' AS nullable FROM information_schema.columns"
        " WHERE table_schema = DATABASE() AND table_name = ?"
    )

    def __init__(self, url: str, database: str | None = None) -> None:
        super().__init__(
            pymysql.connect(
                **_mysql_params(url, database),
                charset="utf8mb4",
                autocommit=True,
                cursorclass=pymysql.cursors.DictCursor,
            )
        )

    @classmethod
    def create(cls, server_url: str, name: str) -> MariaDatabase:
        """Connect to database `name` on the server of `server_url`, creating it if missing."""
        _check_name(name)
        admin = pymysql.connect(**_mysql_params(server_url), autocommit=True)
        try:
            with admin.cursor() as cursor:
                # Binary collation: keys and ISO text stamps compare byte by byte, as on SQLite;
                # the server default (utf8mb4_general_ci) would also make keys case-insensitive.
                cursor.execute(
                    f"CREATE DATABASE IF NOT EXISTS `{name}`"
                    " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                )
        finally:
            admin.close()
        return cls(server_url, name)

    @staticmethod
    def drop(server_url: str, name: str) -> None:
        """Drop database `name` on the server of `server_url`, if it exists."""
        _check_name(name)
        admin = pymysql.connect(**_mysql_params(server_url), autocommit=True)
        try:
            with admin.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            admin.close()

    def reclaim(self, tables: Sequence[str]) -> None:
        """OPTIMIZE TABLE: InnoDB rebuilds the table without the deleted rows."""
        for table in tables:
            _check_name(table)
            self.fetchall(f"OPTIMIZE TABLE {table}")

    def tombstone_ddl(self, table: str, key: str) -> list[str]:
        """The tombstone table and a row trigger stamping UTC without the session's time zone.

        TRUNCATE TABLE fires no trigger on MariaDB: a truncated domain table is found by the
        reconciliation check, and `sync --compare-keys` propagates it.
        """
        return [
            _TOMBSTONE_TABLE.format(
                seq="BIGINT AUTO_INCREMENT PRIMARY KEY",
                key_type="VARCHAR(255)",
                extra=" ENGINE=InnoDB",
            ),
            f"CREATE TRIGGER IF NOT EXISTS hubspoke_tombstone_{table} AFTER DELETE ON {table}"
            " FOR EACH ROW INSERT INTO hubspoke_tombstone (deleted_key, deleted_us)"
            f" VALUES (OLD.{key}, TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6)))",
        ]

    def _on_conflict(self, key: str, others: list[str]) -> str:
        # The table's only unique key is `key`, so ON DUPLICATE KEY means the same as ON CONFLICT.
        return "ON DUPLICATE KEY UPDATE " + ", ".join(f"{c} = VALUES({c})" for c in others)


TOMBSTONES = "hubspoke_tombstone"
"""Keys of hard-deleted domain rows and when, in microseconds since the epoch (UTC); a NULL key
marks the tombstones as possibly incomplete."""
_TOMBSTONE_TABLE = (
    "CREATE TABLE IF NOT EXISTS hubspoke_tombstone"
    " (seq {seq}, deleted_key {key_type}, deleted_us BIGINT NOT NULL){extra}"
)

LOCAL_ENGINES: dict[str, Engine] = {"sales": "postgres", "support": "mariadb", "billing": "sqlite"}
"""Where each demo spoke lives in the local stack. At most one spoke per server: a server's
database is named after the home's namespace alone, so two spokes there would share an outbox."""


def open_local_spokes(settings: Settings) -> dict[str, Spoke]:
    """The demo spokes of the local stack: sales on PostgreSQL, support on MariaDB, billing on
    SQLite; the server databases are named after the home's namespace and created if missing."""
    from spokes import SPOKE_KINDS  # spokes.base imports this module: import the kinds late

    spokes: dict[str, Spoke] = {}
    try:
        for name, kind in SPOKE_KINDS.items():
            spokes[name] = kind(_local_database(settings, name))
    except BaseException:
        for spoke in spokes.values():
            spoke.close()
        raise
    return spokes


def drop_local_databases(settings: Settings) -> None:
    """Drop the local stack's server databases of this home (for tests; the CLI never does)."""
    PostgresDatabase.drop(settings.postgres_url, settings.namespace)
    MariaDatabase.drop(settings.mariadb_url, settings.namespace)


def _local_database(settings: Settings, spoke: str) -> Database:
    engine = LOCAL_ENGINES.get(spoke, "sqlite")
    if engine == "postgres":
        return PostgresDatabase.create(settings.postgres_url, settings.namespace)
    if engine == "mariadb":
        return MariaDatabase.create(settings.mariadb_url, settings.namespace)
    return SqliteDatabase(settings.home / "spokes" / f"{spoke}.sqlite")


_TOKENS = re.compile(r"'(?:[^']|'')*'|[?%]")


@lru_cache(maxsize=1024)
def format_placeholders(sql: str) -> str:
    """`?` placeholders as `%s`, and every literal `%` doubled, as psycopg and pymysql expect."""

    def swap(match: re.Match[str]) -> str:
        token = match.group()
        if token == "?":
            return "%s"
        return token.replace("%", "%%")  # a `%` alone, or inside a quoted literal

    return _TOKENS.sub(swap, sql)


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a usable database name (letters, digits, _; max 63)")


def _mysql_params(url: str, database: str | None = None) -> dict[str, Any]:
    """Connection arguments of a mysql:// URL; `database` replaces the one in its path."""
    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb"):
        raise ValueError(f"{url!r} is not a mysql:// or mariadb:// URL")
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
        "database": database or unquote(parts.path.lstrip("/")) or None,
    }


def _sqlite_dict(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> Row:
    return {d[0]: v for d, v in zip(cursor.description, row, strict=True)}
