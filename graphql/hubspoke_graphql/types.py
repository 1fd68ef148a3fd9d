"""Strawberry object types generated from the identity and extension contracts.

Scalar mapping: string -> String, int64 -> Int, float64 -> Float, boolean -> Boolean,
timestamp -> DateTime, date -> Date, decimal(P,S) -> Decimal (a string, exact), object -> String
(JSON text, as the lake stores it); an identity's key is an ID. GraphQL's Int is 32-bit: the int64
fields of today's contracts (versions, ticket counts) fit, and a value that does not fit fails its
field with a clear error instead of being rounded, which a Float would do above 2^53.
"""

# No `from __future__ import annotations`: the resolvers below are annotated with classes made
# at run time, which strawberry can only see when annotations are evaluated where they are written.
import keyword
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import strawberry
from strawberry.types.field import StrawberryField
from strawberry.utils.str_converters import to_camel_case

from hubspoke_graphql import reads
from lake_schema import Contract, ContractError
from lake_schema.contract import Field

_SCALARS: dict[str, Any] = {
    "string": str,
    "int64": int,
    "float64": float,
    "boolean": bool,
    "timestamp": datetime,
    "date": date,
    "object": str,
}


@dataclass(frozen=True)
class ObjectType:
    """A generated strawberry type and how to build it from a contract-shaped row."""

    contract: Contract
    cls: type
    attributes: Mapping[str, str]
    """Contract field name -> Python attribute of `cls`."""

    def build(self, row: Mapping[str, Any]) -> Any:
        """An instance holding the row's values."""
        return self.cls(**{attr: row[name] for name, attr in self.attributes.items()})


def pascal_case(snake: str) -> str:
    """`sales_order` -> `SalesOrder`."""
    return "".join(part.capitalize() for part in snake.split("_"))


def extension_type(contract: Contract) -> ObjectType:
    """The type of one extension contract; its key is left out, it is the parent's id."""
    _single_key(contract)
    fields = [f for f in contract.fields if f.name not in contract.key_fields]
    return _object_type(contract.name, contract, fields, {})


def entity_type(identity: Contract, extensions: list[ObjectType]) -> ObjectType:
    """The type of an entity: its identity fields plus one field per extension contract."""
    key = _single_key(identity)
    resolvers: dict[str, StrawberryField] = {}
    for ext in extensions:
        name = ext.contract.extension_name or ext.contract.table_name
        if name in identity.field_names or name in resolvers:
            raise ContractError(
                f"{ext.contract.name}: extension_name {name!r} clashes with a field of"
                f" {identity.name} or another extension"
            )
        resolvers[_attribute(name)] = _extension_field(name, key, ext)
    return _object_type(
        pascal_case(identity.entity or identity.name), identity, list(identity.fields), resolvers
    )


def _extension_field(name: str, key: str, ext: ObjectType) -> StrawberryField:
    async def resolve(root: Any, info: strawberry.Info) -> ext.cls | None:  # type: ignore[name-defined]
        row = await info.context.rows(ext.contract).load(getattr(root, _attribute(key)))
        return None if row is None else ext.build(row)

    resolve.__name__ = _attribute(name)
    return strawberry.field(
        resolver=resolve,
        name=to_camel_case(name),
        description=f"{ext.contract.description} Null when the {ext.contract.owner} domain"
        " holds no row for it.",
    )


def _object_type(
    name: str,
    contract: Contract,
    fields: list[Field],
    resolvers: dict[str, StrawberryField],
) -> ObjectType:
    annotations = {_attribute(f.name): _annotation(contract, f) for f in fields}
    namespace: dict[str, Any] = {
        _attribute(f.name): strawberry.field(name=to_camel_case(f.name), description=f.description)
        for f in fields
    }
    namespace |= resolvers
    namespace["__annotations__"] = annotations
    cls = types.new_class(name, (), {}, lambda ns: ns.update(namespace))
    strawberry.type(cls, name=name, description=contract.description)
    return ObjectType(contract, cls, {f.name: _attribute(f.name) for f in fields})


def _annotation(contract: Contract, field: Field) -> Any:
    if field.name in contract.key_fields and contract.kind == "identity":
        scalar: Any = strawberry.ID
    elif re.fullmatch(r"decimal\(\d+,\s*\d+\)", field.type):
        scalar = Decimal
    else:
        scalar = _SCALARS[field.type]
    return scalar | None if field.nullable else scalar


def _attribute(name: str) -> str:
    # Contract names are snake_case and may be Python keywords (`from`, `class`).
    return f"{name}_" if keyword.iskeyword(name) else name


def _single_key(contract: Contract) -> str:
    if len(contract.key_fields) != 1:
        raise ContractError(
            f"{contract.name}: the GraphQL API needs a single-field key, has {contract.key_fields}"
        )
    return reads.key_of(contract)
