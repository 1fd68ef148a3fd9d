"""The joined rows' index: chained overlays answer exactly what copying every change would."""

from __future__ import annotations

import pyarrow as pa
from hubspoke_graphql import wide
from hypothesis import given, settings
from hypothesis import strategies as st

KEYS = [f"c{i}" for i in range(12)]

refreshes = st.lists(  # per refresh: keys changed, and the new value (None: the row is gone)
    st.dictionaries(st.sampled_from(KEYS), st.one_of(st.none(), st.integers(0, 99)), max_size=5),
    max_size=3 * wide.OVERLAY_CHAIN_MAX,
)


@settings(max_examples=60, deadline=None)
@given(refreshes)
def test_any_series_of_refreshes_reads_like_the_latest_rows(changes: list[dict]) -> None:
    base = pa.table({"id": KEYS[:6], "value": list(range(6))})
    index = wide.RowIndex.of(base, "id")
    reference = {r["id"]: r for r in base.to_pylist()}
    views = []
    for change in changes:
        rows = [{"id": k, "value": v} for k, v in change.items() if v is not None]
        index = index.updated(change.keys(), rows, "id")
        reference |= {k: None for k in change} | {r["id"]: r for r in rows}
        views.append((index, dict(reference)))
        assert len(index.overlay.maps) <= wide.OVERLAY_CHAIN_MAX
    for view, expected in views:  # an older view still answers as it did when it was made
        assert {k: view.get(k) for k in KEYS} == {k: expected.get(k) for k in KEYS}


@settings(max_examples=60, deadline=None)
@given(refreshes, st.lists(st.sampled_from(KEYS), max_size=8))
def test_rows_read_column_by_column_are_the_rows_read_one_by_one(
    changes: list[dict], wanted: list[str]
) -> None:
    index = wide.RowIndex.of(pa.table({"id": KEYS[:6], "value": list(range(6))}), "id")
    for change in changes:
        rows = [{"id": k, "value": v} for k, v in change.items() if v is not None]
        index = index.updated(change.keys(), rows, "id")
    one_by_one = [index.get(k) for k in wanted]
    found = index.rows(wanted)
    if None in one_by_one:
        assert found is None  # a page whose row is gone is read again from the table
        return
    assert found is not None
    assert list(found) == one_by_one
    assert found.column("value") == [r["value"] for r in one_by_one]
    assert list(found[::-1]) == one_by_one[::-1]
    assert list(found[1:]) == one_by_one[1:] and list(found[:3]) == one_by_one[:3]
    assert list(found.select([0] * len(found))) == one_by_one[:1] * len(found)
