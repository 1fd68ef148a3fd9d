"""Ownership, freshness, retention and Z-order keys of contracts, and the dictionary built from them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from lake_schema import ContractError, load_catalog
from lake_schema.catalog import load_contract
from lake_schema.dictionary import DICTIONARY, main, render

HEAD = (
    "name: Orders\nkind: log\nowner: sales\nversion: 1.0.0\ndescription: d\nprimary_key: id\n"
    "fields:\n"
    "  - {name: id, type: string, nullable: false, privacy: public, description: k}\n"
    "  - {name: at, type: timestamp, nullable: false, privacy: internal, description: t}\n"
    "  - {name: body, type: string, nullable: false, privacy: pii, description: b}\n"
    "  - {name: note, type: string, nullable: true, privacy: pii, description: n}\n"
)


def test_contracts_state_owner_steward_freshness_retention_and_z_order() -> None:
    catalog = load_catalog()
    sales = catalog.extension("sales")
    assert sales.owner == "sales" and sales.steward == "sales-data@example.com"
    assert sales.freshness is not None and sales.freshness.max_age == timedelta(hours=26)
    assert sales.z_order == ("customer_id",)
    identity = catalog.identity("customer")
    assert identity.freshness is not None and identity.freshness.max_age == timedelta(minutes=5)
    log = catalog.get("identity_events")
    assert log.retention.expire is not None
    assert log.retention.expire.after == timedelta(days=90)
    assert log.retention.expire.set == {"data": "null"}
    assert all(c.retention.history == timedelta(days=7) for c in catalog.tables())
    assert all(c.steward for c in catalog)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("freshness: {max_age: 26 hours}\n", "must be a whole number followed by m, h or d"),
        ("retention: {history: -1d}\n", "must be a whole number followed by m, h or d"),
        ("retention: {keep: 7d}\n", "keep"),
        ("z_order: [customer_id]\n", "z_order column 'customer_id' is not a field"),
        ("steward: the sales team\n", "steward 'the sales team' must be an e-mail address"),
        ("owner: Sales Team\n", "owner 'Sales Team' must be a domain name in snake_case"),
        (
            "retention: {expire: {after: 90d, by: body, set: {note: null}}}\n",
            "retention.expire.by 'body' must be a timestamp field",
        ),
        (
            "retention: {expire: {after: 90d, by: at, set: {id: x}}}\n",
            "'id' is a key or the age field",
        ),
        (
            "retention: {expire: {after: 90d, by: at, set: {body: null}}}\n",
            "body is required but missing",
        ),
        (
            "retention: {expire: {after: 90d, by: at, set: {missing: x}}}\n",
            "'missing' is not a field",
        ),
    ],
)
def test_bad_governance_keys_are_refused_naming_the_file_and_the_value(
    tmp_path: Path, extra: str, message: str
) -> None:
    text = HEAD + extra
    if extra.startswith("owner:"):
        text = text.replace("owner: sales\n", "")
    path = tmp_path / "orders.yaml"
    path.write_text(text)
    with pytest.raises(ContractError, match=r"orders\.yaml") as err:
        load_contract(path)
    assert message in str(err.value)


def test_a_valid_expiry_loads(tmp_path: Path) -> None:
    path = tmp_path / "orders.yaml"
    path.write_text(
        HEAD + "retention: {history: 36h, expire: {after: 30d, by: at, set: {note: null}}}\n"
    )
    contract = load_contract(path)
    assert contract.retention.history == timedelta(hours=36)
    assert contract.retention.expire is not None
    assert contract.retention.expire.set == {"note": None}


def test_the_data_dictionary_is_current() -> None:
    assert DICTIONARY.read_text() == render(load_catalog()), (
        "docs/data_dictionary.md drifted from the contracts: run python -m lake_schema.dictionary"
    )


def test_the_dictionary_names_owners_stewards_privacy_and_retention() -> None:
    text = render(load_catalog())
    assert "| [customer_sales_domain](#customer_sales_domain) | extension | sales |" in text
    assert "sales-data@example.com" in text
    assert "| `email` | string | yes | pii |" in text
    assert "data after 90 days (by received_at)" in text
    assert "References `CustomerIdentity.id`." in text


def test_dictionary_check_fails_on_drift_and_write_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "dictionary.md"
    page.write_text("# stale\n")
    assert main(["--check", "--path", str(page)]) == 1
    assert "out of date" in capsys.readouterr().out
    assert main(["--path", str(page)]) == 0
    assert main(["--check", "--path", str(page)]) == 0
