"""Identity events on the wire: the spokes' outbox writes them, the hub parses and validates them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lake_schema import Catalog, ContractError, load_catalog

MAX_EVENT_BYTES = 64 * 1024
"""Larger messages are dead-lettered unread: an identity event is a few hundred bytes."""


class InvalidEvent(ValueError):
    """A message that is not a valid identity event; the text says why."""


@dataclass(frozen=True)
class IdentityEvent:
    """A create, update or delete of one entity's identity, as it happened at its source."""

    event_id: str
    event_type: str
    entity: str
    entity_id: str
    source: str
    occurred_at: datetime
    data: dict[str, Any] | None

    @property
    def order_key(self) -> tuple[datetime, str, str]:
        """Total order of changes: source time, then source, then event id (the tie-breakers)."""
        return (self.occurred_at, self.source, self.event_id)

    def to_json(self) -> str:
        """The wire form."""
        return json.dumps(
            {
                "event_id": self.event_id,
                "event_type": self.event_type,
                "entity": self.entity,
                "entity_id": self.entity_id,
                "source": self.source,
                "occurred_at": self.occurred_at.astimezone(UTC).isoformat(),
                "data": self.data,
            },
            sort_keys=True,
        )


def parse_event(body: bytes, catalog: Catalog | None = None) -> IdentityEvent:
    """Decode and validate one message against the IdentityEvent contract and its entity's identity.

    Raises:
        InvalidEvent: with a reason naming the offending field and what is accepted.
    """
    catalog = catalog or load_catalog()
    if len(body) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"message of {len(body)} bytes exceeds the {MAX_EVENT_BYTES}-byte limit")
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEvent(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidEvent(f"expected a JSON object, got {type(raw).__name__}")
    envelope = catalog.get("IdentityEvent")
    values = dict(raw)
    if isinstance(values.get("occurred_at"), str):
        values["occurred_at"] = _timestamp(values["occurred_at"])
    problems = envelope.row_problems(values)
    if problems:
        raise InvalidEvent("; ".join(problems))
    try:
        identity = catalog.identity(values["entity"])
    except ContractError as exc:
        raise InvalidEvent(str(exc)) from None
    data = values["data"]
    if values["event_type"] in ("created", "updated"):
        if data is None:
            raise InvalidEvent(f"a {values['event_type']} event must carry data")
        writable = {f.name: f for f in identity.fields if f.source == "event"}
        writable.pop(identity.key_fields[0], None)
        unknown = sorted(set(data) - set(writable))
        if unknown:
            raise InvalidEvent(
                f"data has fields {unknown} that {identity.name} events may not carry;"
                f" accepted: {sorted(writable)}"
            )
        found = [p for name, f in writable.items() if (p := f.problems(data.get(name)))]
        if found:
            raise InvalidEvent("data: " + "; ".join(found))
    elif data not in (None, {}):
        raise InvalidEvent("a deleted event carries no data")
    return IdentityEvent(
        event_id=values["event_id"],
        event_type=values["event_type"],
        entity=values["entity"],
        entity_id=values["entity_id"],
        source=values["source"],
        occurred_at=values["occurred_at"].astimezone(UTC),
        data=data or None,
    )


def _timestamp(text: str) -> datetime | str:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return text  # the contract check reports it with the field's name


BROADCAST_STATES_PER_MESSAGE = 500
"""Resolved states packed into one broadcast message (a few hundred bytes each).

One message per state cost more than the whole merge: each spoke's queue pays the broker's
per-message work, and the hub's publisher pays the client's framing per message."""


def encode_broadcast(entity: str, states: Sequence[dict[str, Any]]) -> list[bytes]:
    """The wire form of resolved identity states the hub sends to every spoke, packed in order."""
    step = BROADCAST_STATES_PER_MESSAGE
    return [
        json.dumps(
            {"entity": entity, "states": list(states[i : i + step])}, default=_isoformat
        ).encode()
        for i in range(0, len(states), step)
    ]


def decode_broadcast(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """A broadcast message as (entity, state) pairs, timestamps parsed back to aware datetimes.

    Accepts both the packed form (`states`) and a single `state`, so spokes keep applying
    messages a hub of an earlier release left in their queue.
    """
    message = json.loads(body)
    states = message["states"] if "states" in message else [message["state"]]
    for state in states:
        for key in ("created_at", "updated_at", "deleted_at"):
            if state.get(key):
                state[key] = datetime.fromisoformat(state[key])
    return [(message["entity"], state) for state in states]


def _isoformat(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")
