"""Hard deletes found by comparing key sets cheaply: 64-bit hashes of the spoke's live keys against
the lake's key column, with no Python object per key.

The sync's fallback (`hubspoke.deletes`): it runs for a spoke without tombstones, once after a
marker says the tombstones are incomplete, and when asked (`compare_keys`). The spoke streams its
live keys as Arrow batches, each hashed at once, so only 8 bytes a key stay in memory; the lake's
key column is scanned by polars in streaming mode and every key whose hash the spoke does not hold
is deleted. That covers hard deletes and soft-deleted rows alike.

Measured on 5M sales rows in PostgreSQL: streaming every live key took 1.5-1.9 s, less than the
spoke counting its keys per prefix bucket (1.9 s for 4,096 buckets), and fetching the keys of the
buckets that 1,000 deletes touch cost another 6 s of index and heap visits, so per-bucket
digests lost to a plain key stream here. Reading the same 1,000 deletes from the spoke's
tombstones took 0.05-0.17 s, so the tombstones won and this comparison is the exception. A 64-bit
collision could hide a delete (about one chance in a million at 5M keys); the reconciliation
check after the sync compares every key.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl
import pyarrow as pa

_SEED = 0x6875627370  # any fixed seed: both sides are hashed in this process


def key_hashes(batches: Iterable[pa.Array]) -> pl.Series:
    """64-bit hashes of every key in `batches` (the spoke's live keys, streamed)."""
    parts = [pl.Series("h", [], dtype=pl.UInt64)]
    for batch in batches:
        keys = pl.Series("k", batch, dtype=pl.String)
        parts.append(keys.hash(_SEED).alias("h"))
    return pl.concat(parts)


def lake_key_hashes(lake_keys: pl.LazyFrame) -> pl.DataFrame:
    """The lake's keys (`k`, from a scan of the key column) with their 64-bit hashes (`h`)."""
    return lake_keys.with_columns(pl.col("k").hash(_SEED).alias("h")).collect(engine="streaming")


def lake_deletes(lake: pl.DataFrame, live: pl.Series) -> pa.Array:
    """Keys of `lake` (from `lake_key_hashes`) whose hash is not among the spoke's `live` ones."""
    gone = lake.filter(~pl.col("h").is_in(live.implode())).get_column("k")
    return gone.to_arrow().cast(pa.string())
