"""The embedded bus: an append-only SQLite log with one acknowledged offset per subscriber."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from hubspoke.bus.base import Delivery, EventBus

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    "offset" INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    body BLOB NOT NULL,
    published_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_topic ON messages (topic, "offset");
CREATE TABLE IF NOT EXISTS cursors (
    topic TEXT NOT NULL,
    subscriber TEXT NOT NULL,
    acked INTEGER NOT NULL,
    PRIMARY KEY (topic, subscriber)
);
"""


class SqliteBus(EventBus):
    """Durable log in one SQLite file (WAL), safe for several processes.

    A subscriber acknowledges a prefix of the log: acking a delivery acks every earlier one,
    which matches how the hub and the spokes consume (in order, in micro-batches).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as con:
            con.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            self._local.con = con
        return con

    def publish(self, topic: str, bodies: Sequence[bytes]) -> None:
        if not bodies:
            return
        con = self._connect()
        now = time.time()
        con.execute("BEGIN IMMEDIATE")
        try:
            con.executemany(
                "INSERT INTO messages (topic, body, published_at) VALUES (?, ?, ?)",
                [(topic, sqlite3.Binary(b), now) for b in bodies],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def _acked(self, con: sqlite3.Connection, topic: str, subscriber: str) -> int:
        row = con.execute(
            "SELECT acked FROM cursors WHERE topic = ? AND subscriber = ?", (topic, subscriber)
        ).fetchone()
        if row is not None:
            return row[0]
        # A new subscriber starts at the beginning of the topic: nothing published is missed.
        con.execute(
            "INSERT OR IGNORE INTO cursors (topic, subscriber, acked) VALUES (?, ?, 0)",
            (topic, subscriber),
        )
        return 0

    def fetch(self, topic: str, subscriber: str, limit: int) -> list[Delivery]:
        con = self._connect()
        acked = self._acked(con, topic, subscriber)
        rows = con.execute(
            'SELECT "offset", body, published_at FROM messages'
            ' WHERE topic = ? AND "offset" > ? ORDER BY "offset" LIMIT ?',
            (topic, acked, limit),
        ).fetchall()
        return [Delivery(tag=o, body=bytes(b), published_at=p) for o, b, p in rows]

    def ack(self, topic: str, subscriber: str, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        last = max(d.tag for d in deliveries)
        self._connect().execute(
            "INSERT INTO cursors (topic, subscriber, acked) VALUES (?, ?, ?)"
            " ON CONFLICT (topic, subscriber) DO UPDATE SET acked = max(acked, excluded.acked)",
            (topic, subscriber, last),
        )

    def pending(self, topic: str, subscriber: str) -> int:
        con = self._connect()
        acked = self._acked(con, topic, subscriber)
        return con.execute(
            'SELECT count(*) FROM messages WHERE topic = ? AND "offset" > ?', (topic, acked)
        ).fetchone()[0]

    def oldest_pending_at(self, topic: str, subscriber: str) -> float | None:
        con = self._connect()
        acked = self._acked(con, topic, subscriber)
        row = con.execute(
            'SELECT min(published_at) FROM messages WHERE topic = ? AND "offset" > ?',
            (topic, acked),
        ).fetchone()
        return row[0]

    def forget(self, needles: Sequence[bytes]) -> int:
        """Delete messages every subscriber of their topic acknowledged that contain a needle.

        The file is then rewritten (VACUUM) and the WAL truncated, so the deleted bytes are gone
        from disk, not only from the log. Unacknowledged messages stay: they are still owed.
        """
        if not needles:
            return 0
        con = self._connect()
        mentions = " OR ".join("instr(body, ?) > 0" for _ in needles)
        con.execute("BEGIN IMMEDIATE")
        try:
            cur = con.execute(
                f'DELETE FROM messages WHERE ({mentions}) AND "offset" <= ('
                "SELECT min(acked) FROM cursors WHERE cursors.topic = messages.topic)",
                [sqlite3.Binary(n) for n in needles],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("VACUUM")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return cur.rowcount

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None
