"""Dagster metadata derived from contracts and lake tables, never typed by hand."""

from collections.abc import Iterable

import dagster as dg

from hubspoke.lake import LakeTable
from lake_schema import Contract
from lake_schema.contract import format_duration

FIRST_KEYS = 20
"""How many offending keys a check shows; enough to start looking, small enough for the UI."""


def owners(contract: Contract) -> list[str]:
    """The owning team of a contract, and its data steward when the contract names one."""
    return [f"team:{contract.owner}", *([contract.steward] if contract.steward else [])]


def column_schema(contract: Contract) -> dg.TableSchema:
    """The contract's fields as a Dagster column schema, with privacy class as a column tag."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=f.name,
                type=f.type,
                description=f.description,
                constraints=dg.TableColumnConstraints(
                    nullable=f.nullable, unique=contract.key_fields == (f.name,)
                ),
                tags={"privacy": f.privacy.value},
            )
            for f in contract.fields
        ]
    )


def definition_metadata(contract: Contract) -> dict[str, dg.MetadataValue]:
    """What the catalog shows about a table before it is ever materialized."""
    return {
        "dagster/column_schema": dg.MetadataValue.table_schema(column_schema(contract)),
        "dagster/table_name": dg.MetadataValue.text(contract.table_name),
        "contract": dg.MetadataValue.text(contract.name),
        "contract_version": dg.MetadataValue.text(contract.version),
        **governance(contract),
    }


def governance(contract: Contract) -> dict[str, dg.MetadataValue]:
    """Who answers for a table and how long it keeps what: steward, freshness, retention."""
    retention = contract.retention
    shown = {
        "steward": contract.steward,
        "freshness": format_duration(contract.freshness.max_age) if contract.freshness else None,
        "retention_history": format_duration(retention.history),
        "retention_expires": (
            f"{', '.join(retention.expire.set)} after {format_duration(retention.expire.after)}"
            f" (by {retention.expire.by})"
            if retention.expire
            else None
        ),
        "z_order": ", ".join(contract.z_order) or None,
        "change_feed": "on" if contract.change_feed else "off",
    }
    return {k: dg.MetadataValue.text(v) for k, v in shown.items() if v is not None}


def asset_tags(contract: Contract) -> dict[str, str]:
    """Tags the catalog filters on: owning domain, kind of table, whether it holds PII."""
    return {
        "domain": contract.owner,
        "table_kind": contract.kind,
        "privacy": "pii" if any(f.privacy == "pii" for f in contract.fields) else "no-pii",
    }


def table_spec(contract: Contract) -> dg.AssetSpec:
    """The asset spec of a lake table: key, description, owners, kinds, schema and tags."""
    return dg.AssetSpec(
        key=contract.table_name,
        description=contract.description,
        group_name=contract.owner,
        owners=owners(contract),
        kinds={"delta"},
        metadata=definition_metadata(contract),
        tags=asset_tags(contract),
    )


def table_state(table: LakeTable) -> dict[str, dg.MetadataValue]:
    """A lake table's Delta version and row count after a write."""
    return {
        "delta_version": dg.MetadataValue.int(table.version()),
        "dagster/row_count": dg.MetadataValue.int(table.count()),
    }


def first_keys(keys: Iterable[str]) -> dg.MetadataValue:
    """The first offending keys, as a list the UI shows in full."""
    return dg.MetadataValue.json(list(keys)[:FIRST_KEYS])
