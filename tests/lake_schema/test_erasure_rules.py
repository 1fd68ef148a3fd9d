"""Contract `erasure:` rules: every table holding personal data has one, and bad rules are refused."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from lake_schema import Contract, Privacy, load_catalog


def contract(erasure: dict[str, Any], ids_type: str = "string") -> Contract:
    return Contract.model_validate(
        {
            "name": "AuditLog",
            "kind": "log",
            "owner": "hub",
            "version": "1.0.0",
            "description": "x",
            "primary_key": "request_id",
            "fields": [
                {"name": "request_id", "type": "string", "nullable": False, "privacy": "public",
                 "description": "x"},
                {"name": "ids", "type": ids_type, "nullable": False, "privacy": "internal",
                 "description": "x"},
                {"name": "note", "type": "string", "nullable": True, "privacy": "pii",
                 "description": "x"},
            ],
            "erasure": erasure,
        }
    )  # fmt: skip


def test_every_table_with_personal_data_says_how_a_person_leaves_it() -> None:
    for c in load_catalog().tables():
        personal = any(f.privacy is Privacy.PII for f in c.fields) or c.kind == "extension"
        # Tables that only name people by id (the API's audit log) say so too.
        names_people = any(f.name in {"customer_id", "customer_ids"} for f in c.fields)
        assert (c.erasure is not None) == (personal or names_people), c.name


def test_a_list_column_rule_is_accepted() -> None:
    rule = contract({"match": "ids", "remove_from_list": True}, "list<string>").erasure
    assert rule is not None and rule.action == "remove_from_list"


@pytest.mark.parametrize(
    ("erasure", "ids_type", "message"),
    [
        ({"match": "nope"}, "string", "'nope', which is not a field"),
        ({"match": "ids", "redact": {"nope": None}}, "string", "'nope', which is not a field"),
        ({"match": "ids", "remove_from_list": True}, "string", "remove_from_list is for list"),
        ({"match": "ids"}, "list<string>", "required on them"),
        ({"match": "ids", "redact": {"request_id": "x"}}, "string", "cannot redact the key"),
        (
            {"match": "ids", "redact": {"note": None}, "remove_from_list": True},
            "string",
            "not both",
        ),
        ({"match": "ids", "colour": "red"}, "string", "colour"),
    ],
    ids=[
        "unknown-match",
        "unknown-redact",
        "list-on-text",
        "list-without-rule",
        "key",
        "both",
        "typo",
    ],
)
def test_bad_rules_are_refused_naming_what_is_wrong(
    erasure: dict[str, Any], ids_type: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        contract(erasure, ids_type)
