"""Right to erasure: remove one person from the lake, every spoke and the bus, and certify it.

Ordinary deletes are soft (`deleted` flag, the history kept). Erasure is the hard path, driven
by each table contract's `erasure:` rule (delete matching rows, redact named fields, or take the
id out of a list column), in this order:

1. everything in flight is propagated first (outboxes -> hub -> broadcasts), so no queued event
   or broadcast can bring the person back afterwards;
2. under the hub's single-writer lock, every lake table with a rule is rewritten without the
   person, then its history is forgotten (files vacuumed with retention 0, change-data files and
   log entries before a fresh checkpoint removed: their min/max statistics hold values too);
3. an erasure message goes out on the bus; every spoke deletes its rows and outbox entries and
   rewrites its tables;
4. acknowledged messages mentioning the person leave the embedded bus log (the file rewritten);
5. a certificate without personal data is appended to `erasure_certificates`.

An id that nothing holds is refused (a typo must not yield a certificate), unless it was erased
before: a rerun then finishes whatever an interrupted run left and certifies what it removed.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from hubspoke.bus import ERASURE_TOPIC
from hubspoke.lake import Lake, LakeTable, sql_in
from lake_schema import ContractError, Privacy

if TYPE_CHECKING:
    from hubspoke.stack import Stack

CERTIFICATES = "erasure_certificates"
_MIN_NEEDLE = 6
"""PII values shorter than this are not searched for in free text (a 3-letter name would match
unrelated messages)."""


class UnknownSubject(LookupError):
    """No table or spoke holds the id an erasure was asked for."""


@dataclass(frozen=True)
class ErasureRequest:
    """Who is to be erased, and who asked."""

    entity_id: str
    requested_by: str
    entity: str = "customer"

    def __post_init__(self) -> None:
        if not self.entity_id.strip() or len(self.entity_id) > 64:
            raise ContractError(
                f"erasure needs an id of 1 to 64 characters, got {self.entity_id!r:.80}"
            )
        if not self.requested_by.strip():
            raise ContractError("erasure needs --requested-by: who asked (a ticket, team or role)")

    @property
    def subject_hash(self) -> str:
        """SHA-256 of 'entity:id': what the certificate keeps of the person."""
        return subject_hash(self.entity, self.entity_id)


def subject_hash(entity: str, entity_id: str) -> str:
    """The certificate's stand-in for a person: SHA-256 of 'entity:id', hex."""
    return hashlib.sha256(f"{entity}:{entity_id}".encode()).hexdigest()


def encode_erasure(entity: str, ids: Iterable[str]) -> bytes:
    """The bus message asking every spoke to erase these ids (ids only, never their data)."""
    return json.dumps({"type": "erasure", "entity": entity, "ids": sorted(ids)}).encode()


def decode_erasure(body: bytes) -> list[tuple[str, str]]:
    """An erasure message as (entity, id) pairs; raises ContractError on anything else."""
    try:
        message = json.loads(body)
        if message.get("type") != "erasure":
            raise ValueError("type is not 'erasure'")
        return [(str(message["entity"]), str(i)) for i in message["ids"]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ContractError(f"not an erasure message ({exc}): {body[:80]!r}") from exc


def erasable_tables(lake: Lake, entity: str) -> list[LakeTable]:
    """Tables whose contract says how a person of `entity` is removed from them, identity tables
    last: each forgets its history once erased, and a past state joins an identity version with
    the extensions as of its commit, so the identity's kept history must start after theirs."""
    identities = {c.table_name for c in lake.catalog.identities()}
    tables = [
        lake.table(c)
        for c in lake.catalog.tables()
        if c.erasure is not None and c.entity in (None, entity)
    ]
    return sorted(tables, key=lambda t: t.name in identities)


def erase(stack: Stack, request: ErasureRequest) -> dict[str, Any]:
    """Carry out `request` on the whole stack; returns the certificate as written."""
    started = datetime.now(UTC)
    stack.propagate()
    tables = erasable_tables(stack.lake, request.entity)
    with stack.hub.exclusive():
        values = _personal_values(tables, request)
        held = any(_holds(t, request.entity_id) for t in tables) or any(
            s.entity == request.entity and s.knows(request.entity_id) for s in stack.spokes.values()
        )
        if not held and not certificates(stack.lake, request.entity, request.entity_id):
            raise UnknownSubject(
                f"no {request.entity} {request.entity_id!r} in the lake or any spoke;"
                " nothing to erase (check the id with `hubspoke status` or GraphQL)"
            )
        needles = [request.entity_id, *sorted(v for v in values if len(v) >= _MIN_NEEDLE)]
        # The hub notices the new versions and reloads its in-memory identity copy.
        per_table = {t.name: _erase_table(t, request, needles) for t in tables}
    stack.bus.publish(ERASURE_TOPIC, [encode_erasure(request.entity, [request.entity_id])])
    from spokes.relay import apply_erasures

    spokes = {name: apply_erasures(spoke, stack.bus) for name, spoke in stack.spokes.items()}
    forgotten = stack.bus.forget([n.encode() for n in needles])
    certificate = {
        "certificate_id": str(uuid.uuid4()),
        "entity": request.entity,
        "subject_hash": request.subject_hash,
        "requested_by": request.requested_by,
        "requested_at": started,
        "completed_at": datetime.now(UTC),
        "tables": json.dumps(per_table, sort_keys=True),
        "spokes": json.dumps(spokes, sort_keys=True),
        "bus_messages_forgotten": forgotten,
    }
    log = stack.lake.table(CERTIFICATES)
    log.append(log.contract.to_arrow([certificate]), reason="erasure certificate")
    return certificate


def certificates(
    lake: Lake, entity: str | None = None, entity_id: str | None = None
) -> list[dict[str, Any]]:
    """Erasure certificates, oldest first; filtered to one person when `entity_id` is given."""
    table = lake.table(CERTIFICATES)
    where = None
    if entity_id is not None:
        where = pl.col("subject_hash") == subject_hash(entity or "customer", entity_id)
    rows = table.read(where=where).to_pylist()
    return sorted(rows, key=lambda r: r["requested_at"])


def _erase_table(table: LakeTable, request: ErasureRequest, needles: list[str]) -> dict[str, Any]:
    rule = table.contract.erasure
    assert rule is not None
    column = rule.match
    if rule.remove_from_list:
        literal = _sql_text(request.entity_id)
        predicate = f"array_has({column}, {literal})"
        updates: dict[str, str] | None = {column: f"array_remove({column}, {literal})"}
    else:
        if rule.mentions:
            predicate = " OR ".join(f"strpos({column}, {_sql_text(n)}) > 0" for n in needles)
        else:
            predicate = sql_in(column, [request.entity_id])
        updates = (
            None
            if rule.redact is None
            else {f: "NULL" if v is None else _sql_text(v) for f, v in rule.redact.items()}
        )
        if updates:  # rows redacted before are left alone
            changed = " OR ".join(f"{f} IS DISTINCT FROM {v}" for f, v in updates.items())
            predicate = f"({predicate}) AND ({changed})"
    rewritten = table.rewrite_where(predicate, updates, reason="right to erasure")
    forgotten = table.forget_history()
    return {
        "action": rule.action,
        "rows": rewritten["rows"],
        "files_rewritten": rewritten["files_rewritten"],
        "files_vacuumed": forgotten["files_removed"],
        "log_entries_removed": forgotten["log_entries_removed"],
    }


def _personal_values(tables: list[LakeTable], request: ErasureRequest) -> set[str]:
    """Every PII text the lake holds about the person, old values in the event log included."""
    values: set[str] = set()
    for table in tables:
        rule = table.contract.erasure
        assert rule is not None
        pii = [f.name for f in table.contract.fields if f.privacy is Privacy.PII]
        if not pii or rule.mentions or rule.remove_from_list:
            continue
        rows = table.read(columns=pii, where=pl.col(rule.match) == request.entity_id)
        for row in rows.to_pylist():
            for value in row.values():
                values |= _texts(value)
    return values


def _texts(value: Any) -> set[str]:
    """String values of a field, looking inside JSON text (event payloads, mapped rows)."""
    if not isinstance(value, str):
        return set()
    try:
        parsed = json.loads(value)
    except ValueError:
        return {value}
    if isinstance(parsed, dict):
        return {v for v in parsed.values() if isinstance(v, str)}
    return {value} if isinstance(parsed, str) else set()


def _holds(table: LakeTable, entity_id: str) -> bool:
    rule = table.contract.erasure
    assert rule is not None
    if rule.mentions:
        return False  # free text only counts once the person is known elsewhere
    column = pl.col(rule.match)
    where = column.list.contains(entity_id) if rule.remove_from_list else column == entity_id
    if rule.redact:
        where &= pl.any_horizontal(
            pl.col(f).ne_missing(pl.lit(v, dtype=pl.String)) for f, v in rule.redact.items()
        )
    return table.scan().filter(where).select(pl.len()).collect().item() > 0


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
