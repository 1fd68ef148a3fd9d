"""Schema evolution through contracts: what a contract change does to its lake table.

Adding a nullable field is applied in place (a Delta add-columns commit: old files are read with
nulls, nothing is rewritten). Everything else that changes an existing column is breaking and
refused before any write: a removed or renamed field, a renamed key, a changed type (narrowing
included), a new required field, a field made required.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from lake_schema.contract import Contract, ContractError

_SAME = {pa.large_string(): pa.string(), pa.string_view(): pa.string()}


class BreakingChange(ContractError):
    """A contract change the lake table cannot take in place; the message lists every reason."""


@dataclass(frozen=True)
class SchemaChange:
    """How a contract differs from the table the lake holds for it."""

    table: str
    added: tuple[str, ...]
    breaking: tuple[str, ...]

    @property
    def unchanged(self) -> bool:
        """True when the table already has exactly the contract's shape."""
        return not (self.added or self.breaking)

    def refuse_breaking(self) -> None:
        """Raise `BreakingChange` naming every breaking difference, if there is one."""
        if self.breaking:
            raise BreakingChange(
                f"{self.table}: the contract change is breaking and was not applied: "
                + "; ".join(self.breaking)
                + ". Publish it as a new table (a new major version) or revert it."
            )


def compare(contract: Contract, lake: pa.Schema) -> SchemaChange:
    """What applying `contract` to a table of schema `lake` would change."""
    wanted = contract.arrow_schema()
    breaking: list[str] = []
    keys = set(contract.key_fields)
    for column in lake:
        if column.name not in wanted.names:
            what = "key" if column.name in keys else "field"
            breaking.append(f"{what} {column.name!r} was removed or renamed")
    for key in keys - set(lake.names):
        breaking.append(f"key {key!r} is new: a key cannot change in place")
    added: list[str] = []
    for f in wanted:
        if f.name not in lake.names:
            if f.name in keys:
                continue
            if f.nullable:
                added.append(f.name)
            else:
                breaking.append(
                    f"new field {f.name!r} must be nullable: existing rows have no value for it"
                )
            continue
        have = lake.field(f.name)
        if _SAME.get(have.type, have.type) != f.type:
            breaking.append(f"field {f.name!r} changes type from {have.type} to {f.type}")
        elif have.nullable and not f.nullable:
            breaking.append(f"field {f.name!r} becomes required; existing rows may hold nulls")
    return SchemaChange(contract.table_name, tuple(added), tuple(breaking))
