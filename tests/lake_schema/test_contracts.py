"""Contracts load, derive Delta schemas, and refuse bad files and values with clear messages."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from lake_schema import ContractError, load_catalog
from lake_schema.catalog import CONTRACTS_DIR, load_contract


def test_every_table_the_design_names_has_a_contract() -> None:
    tables = {c.table_name for c in load_catalog().tables()}
    assert {
        "customer_identity",
        "customer_sales_domain",
        "customer_support_domain",
        "customer_billing_domain",
        "identity_events",
    } <= tables


def test_arrow_schema_is_derived_from_fields_with_privacy_metadata() -> None:
    sales = load_catalog().extension("sales")
    schema = sales.arrow_schema()
    assert schema.names == sales.field_names
    assert schema.field("account_value").type == pa.decimal128(18, 2)
    assert schema.field("updated_at").type == pa.timestamp("us", tz="UTC")
    assert not schema.field("customer_id").nullable
    email = load_catalog().identity("customer").arrow_schema().field("email")
    assert email.metadata[b"privacy"] == b"pii"


def test_row_problems_name_the_field_and_what_is_accepted() -> None:
    support = load_catalog().extension("support")
    problems = support.row_problems(
        {
            "customer_id": "c1",
            "support_tier": "diamond",
            "lifetime_tickets": -1,
            "updated_at": datetime(2026, 1, 1),
            "colour": "red",
        }
    )
    assert "unknown field 'colour'" in problems
    assert any("support_tier must be one of basic, silver, gold, platinum" in p for p in problems)
    assert any("lifetime_tickets must be >= 0" in p for p in problems)
    assert any("updated_at must carry a UTC offset" in p for p in problems)


def test_valid_row_has_no_problems() -> None:
    sales = load_catalog().extension("sales")
    row = {
        "customer_id": "c1",
        "account_value": Decimal("10.50"),
        "sales_rep": None,
        "credit_limit": Decimal(0),
        "updated_at": datetime.now(UTC),
    }
    assert sales.row_problems(row) == []
    assert sales.to_arrow([row]).schema == sales.arrow_schema()


def test_a_new_domain_is_a_new_contract_file(tmp_path: Path) -> None:
    for p in CONTRACTS_DIR.glob("*.yaml"):
        (tmp_path / p.name).write_text(p.read_text())
    (tmp_path / "customer_marketing_domain.yaml").write_text(
        """
name: CustomerMarketingDomain
kind: extension
entity: customer
owner: marketing
version: 1.0.0
extension_name: marketing
description: Consent and segments.
primary_key: customer_id
fields:
  - {name: customer_id, type: string, nullable: false, privacy: public, description: "Key."}
  - {name: segment, type: string, nullable: true, privacy: internal, description: "Segment."}
"""
    )
    catalog = load_catalog(tmp_path)
    assert catalog.extension("marketing").table_name == "customer_marketing_domain"
    assert len(catalog.extensions("customer")) == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "fields: [{name: x, type: varchar, nullable: true, privacy: public, description: d}]",
            "type 'varchar' is not one of",
        ),
        (
            "fields: [{name: BadName, type: string, nullable: true, privacy: public, description: d}]",
            "must be snake_case",
        ),
        (
            "fields: [{name: x, type: string, nullable: true, privacy: secret, description: d}]",
            "privacy",
        ),
    ],
)
def test_bad_contract_files_are_refused_naming_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(
        "name: Broken\nkind: log\nowner: hub\nversion: 1.0.0\ndescription: d\n"
        "primary_key: x\n" + text
    )
    with pytest.raises(ContractError, match=r"broken\.yaml") as err:
        load_contract(path)
    assert message in str(err.value)


def test_unknown_contract_lists_the_known_ones() -> None:
    with pytest.raises(ContractError, match=r"known domains: billing, sales, support"):
        load_catalog().extension("marketing")
