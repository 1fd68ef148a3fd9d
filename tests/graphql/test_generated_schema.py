"""Types come from the contracts: a new contract YAML adds its types and fields with no code change."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hubspoke_graphql.access import key_of_role
from hubspoke_graphql.app import create_app
from hubspoke_graphql.limits import REFRESH_INTERVAL_S
from hubspoke_graphql.schema import build_schema
from hubspoke_graphql.sdl import SDL_PATH, export_sdl

from hubspoke.lake import Lake
from hubspoke.stack import Stack
from lake_schema import ContractError, load_catalog
from lake_schema.catalog import CONTRACTS_DIR

MARKETING = """
name: CustomerMarketingDomain
kind: extension
entity: customer
owner: marketing
version: 1.0.0
extension_name: marketing
description: Consent and segment of a customer. Source of truth is the marketing spoke.
primary_key: customer_id
fields:
  - {name: customer_id, type: string, nullable: false, privacy: public,
     description: "Identifier of the customer in CustomerIdentity."}
  - {name: newsletter, type: boolean, nullable: false, privacy: internal,
     description: "Whether the customer subscribed to the newsletter."}
  - {name: score, type: float64, nullable: true, privacy: internal,
     description: "Engagement score between 0 and 1."}
  - {name: updated_at, type: timestamp, nullable: false, privacy: internal,
     description: "When the row last changed in the marketing spoke."}
"""
PRODUCT = """
name: ProductIdentity
kind: identity
entity: product
owner: hub
version: 1.0.0
description: The lean identity record of a product.
primary_key: id
fields:
  - {name: id, type: string, nullable: false, privacy: public, description: "Product identifier."}
  - {name: title, type: string, nullable: false, privacy: public, description: "Product title."}
  - {name: launched_on, type: date, nullable: true, privacy: public, description: "Launch day."}
"""
PRODUCT_PRICING = """
name: ProductPricingDomain
kind: extension
entity: product
owner: pricing
version: 1.0.0
extension_name: pricing
description: How a product is priced.
primary_key: product_id
fields:
  - {name: product_id, type: string, nullable: false, privacy: public, description: "Product id."}
  - {name: list_price, type: "decimal(18,2)", nullable: false, privacy: public,
     description: "List price (EUR)."}
"""


def _contracts(tmp_path: Path, **extra: str) -> Path:
    """The packaged contracts plus `extra` ones, in a folder of their own."""
    folder = tmp_path / "contracts"
    shutil.copytree(CONTRACTS_DIR, folder)
    for name, text in extra.items():
        (folder / f"{name}.yaml").write_text(text)
    return folder


def test_committed_sdl_matches_the_code() -> None:
    assert SDL_PATH.read_text() == export_sdl(), (
        "graphql/schema.graphql is stale: run `python -m hubspoke_graphql.sdl`"
    )


def test_descriptions_and_types_come_from_the_contracts() -> None:
    sdl = export_sdl()
    catalog = load_catalog()
    for contract in [*catalog.identities(), *catalog.extensions()]:
        assert contract.description.strip() in sdl, contract.name
        for field in contract.fields:
            if contract.kind == "identity" or field.name not in contract.key_fields:
                assert field.description in sdl, (contract.name, field.name)
    assert '"""Number of tickets the customer ever opened."""\n  lifetimeTickets: Int!' in sdl
    assert "accountValue: Decimal!" in sdl
    assert "salesRep: String\n" in sdl
    assert "sales: CustomerSalesDomain\n" in sdl
    assert "customerId" not in sdl  # an extension's key is its parent's id


def test_a_new_extension_contract_adds_its_field_and_type(tmp_path: Path) -> None:
    catalog = load_catalog(_contracts(tmp_path, customer_marketing_domain=MARKETING))
    sdl = build_schema(catalog).as_str()
    assert "type CustomerMarketingDomain {" in sdl
    assert "marketing: CustomerMarketingDomain\n" in sdl
    assert "Consent and segment of a customer. Source of truth is the marketing spoke." in sdl
    assert '"""Whether the customer subscribed to the newsletter."""' in sdl
    assert "newsletter: Boolean!" in sdl
    assert "score: Float\n" in sdl


def test_a_new_extension_is_served_once_its_table_has_rows(
    tmp_path: Path,
    stack: Stack,
    live_ids: list[str],
) -> None:
    catalog = load_catalog(_contracts(tmp_path, customer_marketing_domain=MARKETING))
    home = tmp_path / "home"
    shutil.copytree(stack.home / "lake", home / "lake")
    app = create_app(stack.settings.__class__(home=home), catalog)
    text = f'{{ customer(id: "{live_ids[0]}") {{ id marketing {{ newsletter score }} }} }}'
    # No table yet: the field is there and null.
    assert _post(app, text) == {"customer": {"id": live_ids[0], "marketing": None}}

    table = Lake(home / "lake", catalog).table("customer_marketing_domain")
    table.create_if_missing()
    table.append(
        table.contract.to_arrow(
            [
                {
                    "customer_id": live_ids[0],
                    "newsletter": True,
                    "score": 0.5,
                    "updated_at": datetime(2026, 1, 1, tzinfo=UTC),
                }
            ]
        )
    )
    asyncio.run(asyncio.sleep(REFRESH_INTERVAL_S + 0.1))
    assert _post(app, text) == {
        "customer": {"id": live_ids[0], "marketing": {"newsletter": True, "score": 0.5}}
    }


def test_a_new_entity_gets_its_own_queries(tmp_path: Path) -> None:
    catalog = load_catalog(
        _contracts(tmp_path, product_identity=PRODUCT, product_pricing_domain=PRODUCT_PRICING)
    )
    sdl = build_schema(catalog).as_str()
    assert "product(\n" in sdl
    assert "): Product\n" in sdl
    assert "): ProductConnection!\n" in sdl
    assert "pricing: ProductPricingDomain" in sdl
    assert "launchedOn: Date" in sdl
    assert "customers(" in sdl


def test_an_extension_name_that_clashes_is_refused(tmp_path: Path) -> None:
    clash = MARKETING.replace("extension_name: marketing", "extension_name: email")
    catalog = load_catalog(_contracts(tmp_path, customer_marketing_domain=clash))
    with pytest.raises(ContractError, match="extension_name 'email' clashes"):
        build_schema(catalog)


def _post(app: Any, text: str) -> dict[str, Any]:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app)
        headers = {"X-API-Key": key_of_role(app.state.keys_file, "admin")}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=headers
        ) as client:
            return await client.post("/graphql", json={"query": text})

    body = asyncio.run(go()).json()
    assert "errors" not in body, body
    return body["data"]
