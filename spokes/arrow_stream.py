"""Spoke queries streamed as Arrow record batches, so memory follows the batch, not the table.

PostgreSQL goes through ADBC (the rows arrive as Arrow from libpq's binary COPY-like protocol,
no Python objects per row); MariaDB through an unbuffered pymysql cursor and SQLite through its
cursor, each batch converted to Arrow at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pymysql.cursors

from spokes.databases import Database, PostgresDatabase


def stream_batches(
    db: Database, sql: str, params: Sequence[Any] = (), batch_rows: int = 50_000
) -> Iterator[pa.RecordBatch]:
    """Rows of `sql` (written with `?` placeholders) as Arrow batches of at most `batch_rows`."""
    if isinstance(db, PostgresDatabase):
        yield from _adbc_batches(db, sql, params, batch_rows)
        return
    if db.engine == "mariadb":
        cursor = db.connection.cursor(pymysql.cursors.SSDictCursor)
    else:
        cursor = db.connection.cursor()
    try:
        cursor.execute(db.placeholders(sql), tuple(params))
        while rows := cursor.fetchmany(batch_rows):
            yield pa.RecordBatch.from_pylist(rows)
    finally:
        cursor.close()


def _adbc_batches(
    db: PostgresDatabase, sql: str, params: Sequence[Any], batch_rows: int
) -> Iterator[pa.RecordBatch]:
    numbered = sql
    for i in range(1, len(params) + 1):  # ADBC binds PostgreSQL's own $n placeholders
        numbered = numbered.replace("?", f"${i}", 1)
    with db.arrow_connection() as con, con.cursor() as cursor:
        # One batch is about this many bytes: ~100 bytes a row keeps it near `batch_rows`.
        cursor.adbc_statement.set_options(
            **{"adbc.postgresql.batch_size_hint_bytes": str(batch_rows * 100)}
        )
        cursor.execute(numbered, parameters=tuple(params) if params else None)
        reader = cursor.fetch_record_batch()
        for batch in reader:
            if batch.num_rows:
                yield batch
