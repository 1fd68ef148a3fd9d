"""Spokes: local write + outbox in one transaction, idempotent broadcasts, anti-corruption layers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from hubspoke.bus import IDENTITY_TOPIC, SqliteBus
from hubspoke.events import parse_event
from lake_schema import load_catalog
from spokes import SPOKE_KINDS, Spoke
from spokes.relay import relay_outbox


@pytest.fixture(params=sorted(SPOKE_KINDS), ids=sorted(SPOKE_KINDS))
def spoke(request: pytest.FixtureRequest, tmp_path: Path) -> Spoke:
    return SPOKE_KINDS[request.param](tmp_path / f"{request.param}.sqlite")


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
