"""Hard deletes found by comparing key sets cheaply: counts per key-prefix bucket, then keys only
in the buckets whose counts differ.

The spoke counts its live keys per bucket in its own database (one GROUP BY, nothing shipped but
the counts); the lake counts its key column in a streaming polars scan (no key is held in memory
beyond a batch), corrected for the changes the sync is about to merge. After the merge the lake
holds every live spoke key (each insert reaches it through extraction or waits in quarantine), so
a bucket whose counts agree holds the same keys on both sides, and only the keys of differing
buckets are fetched and compared. A key missing on one side and an extra key on the other in the
same bucket would cancel out; the reconciliation check after the sync compares every key.
"""

from __future__ import annotations

from concurrent.futures import Future

import polars as pl
import pyarrow as pa

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
    lake_keys: pl.LazyFrame,
    width: int,
    incoming: pa.Array,
    going: pa.Array,
) -> pa.Array:
    """Keys to delete from the lake: `going` keys it holds, and keys not live at the spoke.

    Args:
        spoke_buckets: the spoke's `key_buckets(width)`, computed concurrently.
        lake_keys: a scan of the domain table's key column, named `k`.
        incoming: keys this sync will upsert or holds in quarantine (live at the spoke).
        going: keys this sync deletes anyway (soft-deleted at the spoke).
    """
    bucket = pl.col("k").str.slice(0, width).alias("bucket")
    arriving = pl.Series("k", incoming, dtype=pl.String).unique()
    leaving = pl.Series("k", going, dtype=pl.String).unique()
    counts, known = pl.collect_all(
        [
            lake_keys.group_by(bucket).agg(pl.len().cast(pl.Int64).alias("n")),
            lake_keys.filter(pl.col("k").is_in(pl.concat([arriving, leaving]).implode())),
        ],
        engine="streaming",
    )
    held = known.get_column("k")
    new = arriving.filter(~arriving.is_in(held.implode()) & ~arriving.is_in(leaving.implode()))
    going_in_lake = leaving.filter(leaving.is_in(held.implode()))
    expected = (
        pl.concat(
            [
                counts,
                new.to_frame().select(bucket, pl.lit(1, pl.Int64).alias("n")),
                going_in_lake.to_frame().select(bucket, pl.lit(-1, pl.Int64).alias("n")),
            ]
        )
        .group_by("bucket")
        .agg(pl.col("n").sum())
    )
    at_spoke = pl.from_arrow(spoke_buckets.result()).cast({"bucket": pl.String, "n": pl.Int64})
    differing = (
        expected.join(at_spoke, on="bucket", how="full", coalesce=True, suffix="_spoke")
        .filter(pl.col("n").fill_null(0) != pl.col("n_spoke").fill_null(0))
        .get_column("bucket")
    )
    if differing.is_empty():
        return going_in_lake.to_arrow().cast(pa.string())
    live = pl.Series("k", spoke.keys_in_buckets(width, differing.to_list()), dtype=pl.String)
    gone = (
        lake_keys.filter(
            pl.col("k").str.slice(0, width).is_in(differing.implode())
            & ~pl.col("k").is_in(live.implode())
        )
        .collect(engine="streaming")
        .get_column("k")
    )
    return pl.concat([gone, going_in_lake]).unique().to_arrow().cast(pa.string())
