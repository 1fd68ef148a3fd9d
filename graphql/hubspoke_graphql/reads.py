"""The read queries of the API against a snapshot view: one function per question asked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hubspoke_graphql.snapshot import View, quote
from lake_schema import Contract

SOFT_DELETE_FIELD = "deleted"
"""An identity contract with this boolean field soft-deletes: deleted rows are hidden by default."""


def key_of(contract: Contract) -> str:
    """The single key field of an identity or extension contract."""
    return contract.key_fields[0]


def page(
    view: View,
    identity: Contract,
    *,
    after: str | None,
    limit: int,
    include_deleted: bool,
) -> list[dict[str, Any]]:
    """Up to `limit` identity rows with a key greater than `after`, in key order."""
    key = quote(key_of(identity))
    conditions = _visible(identity, include_deleted)
    params: list[Any] = []
    if after is not None:
        conditions.append(f"{key} > ?")
        params.append(after)
    sql = f"SELECT * FROM {quote(identity.table_name)}{_where(conditions)} ORDER BY {key} LIMIT ?"
    return view.fetch(sql, [*params, limit])


def count(view: View, identity: Contract, *, include_deleted: bool) -> int:
    """How many identity rows a connection over all pages holds."""
    conditions = _visible(identity, include_deleted)
    rows = view.fetch(f"SELECT count(*) AS n FROM {quote(identity.table_name)}{_where(conditions)}")
    return int(rows[0]["n"])


def visible(identity: Contract, row: dict[str, Any], *, include_deleted: bool) -> bool:
    """Whether a connection or a lookup shows this identity row."""
    return include_deleted or not row.get(SOFT_DELETE_FIELD, False)


def by_keys(view: View, contract: Contract, keys: Sequence[str]) -> list[dict[str, Any]]:
    """Every row of `contract`'s table whose key is in `keys`, in one query."""
    sql = f"SELECT * FROM {quote(contract.table_name)} WHERE {quote(key_of(contract))} = ANY(?)"
    return view.fetch(sql, [list(keys)])


def _visible(identity: Contract, include_deleted: bool) -> list[str]:
    if include_deleted or SOFT_DELETE_FIELD not in identity.field_names:
        return []
    return [f"NOT {quote(SOFT_DELETE_FIELD)}"]


def _where(conditions: list[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""
