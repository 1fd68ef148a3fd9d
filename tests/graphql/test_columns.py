"""A column serialized in Arrow is what the schema's scalar gives value by value, or is left to it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from hubspoke_graphql.columns import SERIALIZERS
from hubspoke_graphql.schema import build_schema
from hubspoke_graphql.wide import _values
from hypothesis import given, settings
from hypothesis import strategies as st

SCALARS = build_schema()._schema.type_map

CASES: dict[str, tuple[pa.DataType, st.SearchStrategy[Any]]] = {
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
    _expect_same(scalar, pa.chunked_array([pa.array(raw, kind)]))


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
    expected = [None if v is None else serialize(v) for v in _values(column)]
    assert sent == expected


def test_what_arrow_would_write_differently_is_left_to_the_scalar() -> None:
    big = pa.chunked_array([pa.array([2**31], pa.int64())])
    assert SERIALIZERS["Int"](big) is None  # graphql-core refuses it: the executor says so
    tiny = pa.chunked_array([pa.array([Decimal("1E-7")], pa.decimal128(18, 7))])
    assert SERIALIZERS["Decimal"](tiny) is None  # str(Decimal) writes 1E-7
    assert "DateTime" not in SERIALIZERS  # strftime costs more than isoformat in Python


def test_typical_columns_are_serialized_in_arrow() -> None:
    cents = pa.chunked_array([pa.array([Decimal("0.00"), Decimal("-3.50")], pa.decimal128(18, 2))])
    assert SERIALIZERS["Decimal"](cents) == ["0.00", "-3.50"]
    counts = pa.chunked_array([pa.array([7, None, -(2**31)], pa.int64())])
    assert SERIALIZERS["Int"](counts) == [7, None, -(2**31)]
