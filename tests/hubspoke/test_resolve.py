"""The conflict rule converges whatever the delivery order, duplication or interleaving."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from hubspoke.events import IdentityEvent
from hubspoke.resolve import APPLIED, PARKED, STALE, apply_event, fold

T0 = datetime(2026, 1, 1, tzinfo=UTC)
VISIBLE = (
    "id",
    "name",
    "email",
    "created_at",
    "created_by",
    "updated_at",
    "updated_by",
    "last_event_id",
    "deleted",
    "deleted_at",
)


def event(kind: str, seconds: int, source: str = "sales", name: str = "Ada") -> IdentityEvent:
    data = None if kind == "deleted" else {"name": name, "email": f"{name}@example.com"}
    return IdentityEvent(
        str(uuid.uuid4()), kind, "customer", "c1", source, T0 + timedelta(seconds=seconds), data
    )


def visible(state: dict | None) -> dict | None:
    return None if state is None else {k: state[k] for k in VISIBLE}


def test_update_before_create_is_parked_then_applied_in_order() -> None:
    create, update = event("created", 0), event("updated", 5, "support", "Grace")
    assert apply_event(None, update) == (None, PARKED)
    state, outcome = fold(None, [update, create])
    assert [d for _, d in outcome] == [APPLIED, APPLIED]
    assert state["name"] == "Grace" and state["updated_by"] == "support" and state["version"] == 2


def test_older_update_is_stale_and_changes_nothing() -> None:
    state, _ = fold(None, [event("created", 0), event("updated", 10, name="New")])
    after, disposition = apply_event(state, event("updated", 5, name="Old"))
    assert disposition == STALE and after == state


def test_delete_is_final_even_against_a_later_update() -> None:
    state, _ = fold(None, [event("created", 0), event("deleted", 5, "billing")])
    state, _ = fold(state, [event("updated", 9, "sales", "Late")])
    assert state["deleted"] and state["deleted_at"] == T0 + timedelta(seconds=5)


histories = st.lists(
    st.tuples(
        st.sampled_from(["updated", "updated", "deleted"]),
        st.integers(1, 50),
        st.sampled_from(["sales", "support", "billing"]),
        st.sampled_from(["Ada", "Bo", "Cy"]),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(history=histories, data=st.data())
def test_any_order_with_duplicates_and_batches_converges(
    history: list, data: st.DataObject
) -> None:
    events = [event("created", 0)] + [event(k, s, src, n) for k, s, src, n in history]
    reference, _ = fold(None, events)

    delivered = data.draw(
        st.permutations(events + data.draw(st.lists(st.sampled_from(events), max_size=5)))
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(delivered)), max_size=4)))
    state, seen, parked = None, set(), []
    for start, end in zip([0, *cuts], [*cuts, len(delivered)], strict=True):
        batch = [e for e in delivered[start:end] if e.event_id not in seen]
        batch = list({e.event_id: e for e in batch}.values())
        seen |= {e.event_id for e in batch}
        state, outcome = fold(state, batch + parked)
        parked = [e for e, d in outcome if d == PARKED]
    assert not parked
    assert visible(state) == visible(reference)
