"""A column serialized in Arrow is what the schema's scalar gives value by value, or is left to it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from hubspoke_graphql.columns import SERIALIZERS
from hubspoke_graphql.schema import build_schema
from hypothesis import given, settings
from hypothesis import strategies as st

SCALARS = build_schema()._schema.type_map

micros = st.integers(
    int(datetime(1, 1, 1, tzinfo=UTC).timestamp() * 1_000_000),
    int(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC).timestamp() * 1_000_000),
)
whole_seconds = st.integers(-(10**10), 10**10).map(lambda s: s * 1_000_000)
CASES: dict[str, tuple[pa.DataType, st.SearchStrategy[Any]]] = {
    "DateTime": (pa.timestamp("us", tz="UTC"), micros | whole_seconds),
    "Int": (pa.int64(), st.integers(-(2**40), 2**40) | st.integers(-(2**31), 2**31 - 1)),
    "String": (pa.string(), st.text()),
    "ID": (pa.string(), st.text(max_size=20)),
    "Boolean": (pa.bool_(), st.booleans()),
}


@pytest.mark.parametrize("scalar", sorted(CASES))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_a_column_serializes_as_its_values_would(scalar: str, data: st.DataObject) -> None:
    kind, values = CASES[scalar]
    raw = data.draw(st.lists(st.none() | values, max_size=12))
    if scalar == "DateTime":  # drawn as microseconds since the epoch
        column = pa.chunked_array([pa.array(raw, pa.int64()).cast(kind)])
    else:
        column = pa.chunked_array([pa.array(raw, kind)])
    _expect_same(scalar, column)


@settings(max_examples=100, deadline=None)
@given(
    raw=st.lists(st.none() | micros, min_size=1, max_size=12),
    cut=st.integers(0, 12),
    start=st.integers(0, 3),
)
def test_a_sliced_timestamp_column_of_several_chunks_serializes_as_its_values_would(
    raw: list, cut: int, start: int
) -> None:
    stamps = pa.array(raw, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    # As a page holds them: taken rows, trimmed to the page by a zero-copy slice.
    column = pa.chunked_array([stamps[:cut], stamps[cut:]], stamps.type).slice(start)
    _expect_same("DateTime", column)


@settings(max_examples=200, deadline=None)
@given(
    scale=st.integers(0, 9),
    units=st.lists(st.none() | st.integers(-(10**15), 10**15) | st.integers(-9, 9), max_size=12),
)
def test_a_decimal_column_serializes_as_its_values_would(scale: int, units: list) -> None:
    kind = pa.decimal128(18, scale)
    values = [None if u is None else Decimal(u).scaleb(-scale) for u in units]
    _expect_same("Decimal", pa.chunked_array([pa.array(values, kind)]))


def _expect_same(scalar: str, column: pa.ChunkedArray) -> None:
    serialize = SCALARS[scalar].serialize  # type: ignore[union-attr]
    sent = SERIALIZERS[scalar](column)
    if sent is None:  # left to the scalar: only where it refuses or Arrow would differ
        return
    expected = [None if v is None else serialize(v) for v in column.to_pylist()]
    assert sent == expected


def test_what_arrow_would_write_differently_is_left_to_the_scalar() -> None:
    big = pa.chunked_array([pa.array([2**31], pa.int64())])
    assert SERIALIZERS["Int"](big) is None  # graphql-core refuses it: the executor says so
    tiny = pa.chunked_array([pa.array([Decimal("1E-7")], pa.decimal128(18, 7))])
    assert SERIALIZERS["Decimal"](tiny) is None  # str(Decimal) writes 1E-7
    naive = pa.chunked_array([pa.array([datetime(2026, 1, 1)], pa.timestamp("us"))])
    assert SERIALIZERS["DateTime"](naive) is None


def test_typical_columns_are_serialized_a_column_at_a_time() -> None:
    stamps = [datetime(2026, 1, 1, tzinfo=UTC), datetime(999, 1, 1, 0, 0, 0, 5, tzinfo=UTC), None]
    column = pa.chunked_array([pa.array(stamps, pa.timestamp("us", "UTC"))])
    assert SERIALIZERS["DateTime"](column) == [
        "2026-01-01T00:00:00+00:00",
        "0999-01-01T00:00:00.000005+00:00",
        None,
    ]
    cents = pa.chunked_array([pa.array([Decimal("0.00"), Decimal("-3.50")], pa.decimal128(18, 2))])
    assert SERIALIZERS["Decimal"](cents) == ["0.00", "-3.50"]
    counts = pa.chunked_array([pa.array([7, None, -(2**31)], pa.int64())])
    assert SERIALIZERS["Int"](counts) == [7, None, -(2**31)]
