"""Hard deletes found by comparing key sets cheaply: counts per key-prefix bucket, then keys only
in the buckets whose counts differ.

The spoke counts its live keys per bucket in its own database (one GROUP BY, nothing shipped but
the counts); the lake does the same over its key column in DuckDB, corrected for the changes the
sync is about to merge. After the merge the lake holds every live spoke key (each insert reaches
it through extraction or waits in quarantine), so a bucket whose counts agree holds the same keys
on both sides, and only the keys of differing buckets are fetched and compared.
"""

from __future__ import annotations

from concurrent.futures import Future

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from spokes import Spoke

ROWS_PER_BUCKET = 256
"""Target bucket size: a differing bucket costs about this many keys fetched from each side."""
MAX_WIDTH = 3
"""At most 16**3 = 4096 buckets (hex keys): a spoke counts more groups markedly slower, while
fetching the keys of a differing bucket is an index range scan whatever its size."""


def bucket_width(rows: int) -> int:
    """Key-prefix length that gives about ROWS_PER_BUCKET keys a bucket (hex-like keys)."""
    width = 1
    while 16**width * ROWS_PER_BUCKET < rows and width < MAX_WIDTH:
        width += 1
    return width


def lake_deletes(
    spoke: Spoke,
    spoke_buckets: Future[pa.Table],
    lake_keys: pa.Table,
    key: str,
    width: int,
    incoming: pa.Array,
    going: pa.Array,
) -> pa.Array:
    """Keys to delete from the lake: `going` keys it holds, and keys not live at the spoke.

    Args:
        spoke_buckets: the spoke's `key_buckets(width)`, computed concurrently.
        lake_keys: the domain table's key column.
        incoming: keys this sync will upsert or holds in quarantine (live at the spoke).
        going: keys this sync deletes anyway (soft-deleted at the spoke).
    """
    con = duckdb.connect()
    con.register("lake", lake_keys)
    con.register("incoming", pa.table({"k": pc.cast(incoming, pa.string())}))
    con.register("going", pa.table({"k": pc.cast(going, pa.string())}))
    lake_counts = con.sql(
        f'SELECT substr("{key}", 1, {width}) AS bucket, count(*) AS n FROM lake GROUP BY 1'
    ).to_arrow_table()
    # The small sets are the hash tables; the lake's keys stream past them once.
    known = con.sql(
        f'SELECT "{key}" AS k FROM lake WHERE "{key}" IN (SELECT k FROM incoming UNION ALL'
        " SELECT k FROM going)"
    ).to_arrow_table()
    con.register("known", known)
    con.register("lake_counts", lake_counts)
    con.register("spoke_counts", spoke_buckets.result())
    differing = con.sql(
        f"""
        WITH delta AS (
            SELECT substr(k, 1, {width}) AS bucket, 1 AS d FROM (
                SELECT DISTINCT k FROM incoming WHERE k NOT IN (SELECT k FROM known)
                  AND k NOT IN (SELECT k FROM going))
            UNION ALL
            SELECT substr(k, 1, {width}), -1 FROM (
                SELECT DISTINCT k FROM going WHERE k IN (SELECT k FROM known))
        ), expected AS (
            SELECT bucket, sum(n) AS n FROM (
                SELECT bucket, n FROM lake_counts UNION ALL SELECT bucket, d FROM delta)
            GROUP BY bucket
        )
        SELECT coalesce(e.bucket, s.bucket) AS bucket FROM expected e
        FULL OUTER JOIN spoke_counts s ON e.bucket = s.bucket
        WHERE coalesce(e.n, 0) <> coalesce(s.n, 0)
        """
    ).to_arrow_table()["bucket"]
    going_in_lake = con.sql("SELECT k FROM known WHERE k IN (SELECT k FROM going)").to_arrow_table()
    con.register("going_in_lake", going_in_lake)
    if len(differing) == 0:
        return pc.cast(going_in_lake["k"].combine_chunks(), pa.string())
    at_spoke = spoke.keys_in_buckets(width, differing.to_pylist())
    con.register("differing", pa.table({"bucket": differing}))
    con.register("at_spoke", pa.table({"k": at_spoke}))
    gone = con.sql(
        f'SELECT "{key}" AS k FROM lake WHERE substr("{key}", 1, {width}) IN'
        f' (SELECT bucket FROM differing) AND "{key}" NOT IN (SELECT k FROM at_spoke)'
        " UNION SELECT k FROM going_in_lake"
    ).to_arrow_table()["k"]
    return pc.cast(gone.combine_chunks(), pa.string())
