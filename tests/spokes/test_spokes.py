"""Spokes on every engine they run on: local write + outbox in one transaction, idempotent
broadcasts, anti-corruption layers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from random import Random

import pytest

from hubspoke.bus import IDENTITY_TOPIC, SqliteBus
from hubspoke.config import Settings
from hubspoke.events import parse_event
from lake_schema import load_catalog
from spokes import SPOKE_KINDS, Spoke
from spokes.databases import (
    Database,
    MariaDatabase,
    PostgresDatabase,
    SqliteDatabase,
    format_placeholders,
)
from spokes.relay import relay_outbox

SERVERS = {
    "postgres": (PostgresDatabase, Settings().postgres_url),
    "mariadb": (MariaDatabase, Settings().mariadb_url),
}
PAIRS = [
    pytest.param(
        (kind, engine),
        id=f"{kind}-{engine}",
        marks=[pytest.mark.services] if engine in SERVERS else [],
    )
    for kind in sorted(SPOKE_KINDS)
    for engine in ("sqlite", "postgres", "mariadb")
    if engine in SPOKE_KINDS[kind].schema.ddl
]
"""Every (spoke, engine) pair a spoke declares DDL for."""


@pytest.fixture(params=PAIRS)
def spoke(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Spoke]:
    kind, engine = request.param
    with _database(request, engine, tmp_path / f"{kind}.sqlite") as db:
        spoke = SPOKE_KINDS[kind](db)
        yield spoke
        spoke.close()


@contextmanager
def _database(request: pytest.FixtureRequest, engine: str, path: Path) -> Iterator[Database]:
    """A new, empty database on `engine`: a file at `path`, or one on a server, dropped after."""
    if engine == "sqlite":
        yield SqliteDatabase(path)
        return
    request.getfixturevalue("services")
    server, url = SERVERS[engine]
    name = f"hubspoke_test_{uuid.uuid4().hex[:12]}"
    try:
        yield server.create(url, name)
    finally:
        server.drop(url, name)


def test_spoke_runs_on_its_engine(spoke: Spoke, request: pytest.FixtureRequest) -> None:
    assert (spoke.name, spoke.db.engine) == request.node.callspec.params["spoke"]


def test_write_path_emits_valid_identity_events_in_commit_order(spoke: Spoke) -> None:
    customer = spoke.create_customer("Ada Lovelace", "ada@example.com")
    spoke.update_customer(customer, email="ada@analytical.engine")
    spoke.delete_customer(customer)

    events = [parse_event(m.body) for m in spoke.outbox()]
    assert [e.event_type for e in events] == ["created", "updated", "deleted"]
    assert {e.entity_id for e in events} == {customer}
    assert events[1].data == {"name": "Ada Lovelace", "email": "ada@analytical.engine"}
    assert all(e.source == spoke.name for e in events)
    assert events[0].occurred_at < events[1].occurred_at < events[2].occurred_at


def test_failed_local_transaction_leaves_no_outbox_event(spoke: Spoke) -> None:
    with pytest.raises(KeyError, match="no customer"):
        spoke.update_customer("missing", name="X")
    assert spoke.outbox() == []


def test_relay_publishes_once_and_marks_sent(spoke: Spoke, tmp_path: Path) -> None:
    bus = SqliteBus(tmp_path / "bus.sqlite")
    for i in range(3):
        spoke.create_customer(f"C {i}", f"c{i}@example.com")
    assert relay_outbox(spoke, bus) == 3
    assert relay_outbox(spoke, bus) == 0
    assert bus.pending(IDENTITY_TOPIC, "hub") == 3


def _state(version: int, name: str, deleted: bool = False) -> dict:
    at = datetime(2026, 3, 1, 12, 0, version, 123456, tzinfo=UTC)
    return {
        "id": "c-1",
        "name": name,
        "email": "c@example.com",
        "created_at": at,
        "created_by": "sales",
        "updated_at": at,
        "version": version,
        "deleted": deleted,
    }


def test_broadcast_applies_only_newer_versions(spoke: Spoke) -> None:
    assert spoke.apply_broadcast([_state(2, "Two")]) == 1
    assert spoke.apply_broadcast([_state(1, "One"), _state(2, "Two again")]) == 0
    assert spoke.apply_broadcast([_state(3, "Three", deleted=True)]) == 1
    [copy] = spoke.identities()
    assert copy["name"] == "Three" and copy["deleted"] and copy["version"] == 3
    assert copy["updated_at"] == _state(3, "Three")["updated_at"]  # copied as is, never "now"
    assert spoke.outbox() == []  # applying a broadcast never echoes an event


def test_anti_corruption_layer_maps_local_rows_into_the_contract(spoke: Spoke) -> None:
    local = {
        "sales": {
            "account_value": "1234.50",
            "owner_rep": "Grace Hopper",
            "credit_limit": "5000.00",
        },
        "support": {"TIER_CD": "G", "TKT_CNT": " 17 ", "DEL_FLG": "N"},
        "billing": {"vat_id": "DE123456789", "terms_days": 30, "removed": 0},
    }[spoke.name]
    customer = spoke.create_customer("Ada", "ada@example.com", local)
    changes = spoke.extract_changes(None)
    [row] = changes.upserts
    contract = load_catalog().extension(spoke.name)
    assert contract.row_problems(row) == []
    expected = {
        "sales": {"account_value": Decimal("1234.50"), "sales_rep": "Grace Hopper"},
        "support": {"support_tier": "gold", "lifetime_tickets": 17},
        "billing": {"vat_number": "DE123456789", "payment_terms": "NET30"},
    }[spoke.name]
    assert {k: row[k] for k in expected} == expected
    assert row["customer_id"] == customer
    assert changes.high_watermark == row["updated_at"]
    assert spoke.extract_changes(changes.high_watermark).upserts == []


def test_soft_delete_is_extracted_as_a_deleted_key(spoke: Spoke) -> None:
    rng_values = {
        "sales": {"account_value": "1", "owner_rep": None, "credit_limit": "0"},
        "support": {"TIER_CD": "B", "TKT_CNT": "0", "DEL_FLG": "N"},
        "billing": {"vat_id": None, "terms_days": 0, "removed": 0},
    }[spoke.name]
    customer = spoke.create_customer("Bo", "bo@example.com", rng_values)
    mark = spoke.extract_changes(None).high_watermark
    spoke.delete_customer(customer)
    changes = spoke.extract_changes(mark)
    assert changes.deleted_keys == [customer] and changes.upserts == []


def test_outbox_body_is_the_wire_format(spoke: Spoke) -> None:
    spoke.create_customer("Cy", "cy@example.com")
    body = json.loads(spoke.outbox()[0].body)
    assert set(body) == {
        "event_id",
        "event_type",
        "entity",
        "entity_id",
        "source",
        "occurred_at",
        "data",
    }


def test_local_change_and_outbox_event_commit_together(
    spoke: Spoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: object) -> None:
        raise RuntimeError("killed between the local write and the outbox insert")

    monkeypatch.setattr(spoke, "_emit", crash)
    with pytest.raises(RuntimeError, match="killed"):
        spoke.create_customer("Di", "di@example.com", spoke.fake_domain(Random(1)))
    monkeypatch.undo()
    assert spoke.identities() == [] and spoke.outbox() == []
    assert spoke.extract_changes(None).upserts == []


def test_timestamps_keep_microseconds(spoke: Spoke) -> None:
    at = datetime(2026, 3, 1, 12, 0, 0, 1, tzinfo=UTC)
    spoke.now = lambda: at  # type: ignore[method-assign]
    customer = spoke.create_customer("Ed", "ed@example.com", spoke.fake_domain(Random(2)))
    [copy] = spoke.identities()
    assert copy["created_at"] == copy["updated_at"] == at
    assert spoke.domain_versions() == {customer: at}
    assert spoke.extract_changes(at).upserts == []
    assert len(spoke.extract_changes(at.replace(microsecond=0)).upserts) == 1


def test_spoke_sql_placeholders_become_driver_placeholders() -> None:
    sql = "SELECT * FROM t WHERE a = ? AND b LIKE 'x%?' AND c = ? -- 100%"
    assert format_placeholders(sql) == (
        "SELECT * FROM t WHERE a = %s AND b LIKE 'x%%?' AND c = %s -- 100%%"
    )
