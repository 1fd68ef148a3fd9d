"""The conflict rule: how the hub folds identity events into one resolved state per entity.

The rule is a pure function so that it can be tested on its own and replayed identically:

* Events of one entity are applied creates first, then in `order_key` order: source time
  (`occurred_at`), then source name, then event id. Every replica sorts the same way.
* The identity fields (name, email, ...) are a last-writer-wins register: a created or updated
  event replaces them all when its order key is greater than the current winner's, otherwise it
  is *stale*. Ties cannot happen: event ids are unique.
* Deletion is final: once any spoke deleted the entity it stays deleted, whatever arrives later
  or earlier. `deleted_at` is the earliest delete.
* An update or delete for an entity the hub has never seen created is *parked* until its create
  arrives, then applied by the same rule.

Because the register and the deleted flag only ever move forward, the resolved fields are the
same for any delivery order, duplication or interleaving of the same set of events. `version`
counts the applied events and so depends on arrival order; it only orders broadcasts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hubspoke.events import IdentityEvent

APPLIED, STALE, PARKED, DUPLICATE = "applied", "stale", "parked", "duplicate"

State = dict[str, Any]


def apply_event(
    state: State | None, event: IdentityEvent, key: str = "id"
) -> tuple[State | None, str]:
    """The state after `event`, and the event's disposition (applied, stale or parked)."""
    if state is None:
        if event.event_type != "created":
            return None, PARKED
        return {
            key: event.entity_id,
            **(event.data or {}),
            "created_at": event.occurred_at,
            "created_by": event.source,
            "updated_at": event.occurred_at,
            "updated_by": event.source,
            "last_event_id": event.event_id,
            "version": 1,
            "deleted": False,
            "deleted_at": None,
        }, APPLIED
    new = dict(state)
    if event.event_type == "deleted":
        if state["deleted"] and state["deleted_at"] <= event.occurred_at:
            return state, STALE
        new["deleted"] = True
        new["deleted_at"] = event.occurred_at
    else:
        changed = False
        if event.event_type == "created" and (event.occurred_at, event.source) < (
            state["created_at"],
            state["created_by"],
        ):
            new["created_at"], new["created_by"] = event.occurred_at, event.source
            changed = True
        winner = (state["updated_at"], state["updated_by"], state["last_event_id"])
        if event.order_key > winner:
            new.update(event.data or {})
            new["updated_at"], new["updated_by"] = event.occurred_at, event.source
            new["last_event_id"] = event.event_id
            changed = True
        if not changed:
            return state, STALE
    new["version"] = state["version"] + 1
    return new, APPLIED


def fold(
    state: State | None, events: Iterable[IdentityEvent], key: str = "id"
) -> tuple[State | None, list[tuple[IdentityEvent, str]]]:
    """Apply events of one entity in the rule's order; returns the state and each disposition."""
    dispositions: list[tuple[IdentityEvent, str]] = []
    for event in sorted(events, key=lambda e: (e.event_type != "created", e.order_key)):
        state, disposition = apply_event(state, event, key)
        dispositions.append((event, disposition))
    return state, dispositions
