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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from dataclasses import field as dataclass_field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import strawberry
from strawberry.types.field import StrawberryField
from strawberry.utils.str_converters import to_camel_case

from hubspoke_graphql import reads, wide
from hubspoke_graphql.access import Access
from lake_schema import Contract, ContractError
from lake_schema.contract import Field, Privacy

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
    """A generated strawberry type and how to build it from a row of the entity's joined table."""

    contract: Contract
    cls: type
    attributes: Mapping[str, str]
    """Contract field name -> Python attribute of `cls`."""
    columns: Mapping[str, str]
    """Contract field name -> column of the joined row holding its value."""
    extensions: Mapping[str, "ObjectType"] = dataclass_field(default_factory=dict)
    """GraphQL field name -> the extension type it returns (entity types only)."""

    def build(self, row: Mapping[str, Any], access: Access) -> Any:
        """An instance holding the row's values, pii masked for roles that may not read it."""
        values = {attr: row[self.columns[name]] for name, attr in self.attributes.items()}
        for name, mode in access.hidden(self.contract).items():
            if name in self.attributes:
                attr = self.attributes[name]
                values[attr] = access.mask(mode, values[attr])
        if ROW_ATTRIBUTE in self.cls.__annotations__:
            values[ROW_ATTRIBUTE] = row
        return self.cls(**values)


ROW_ATTRIBUTE = "hubspoke_row"
"""Private attribute of an entity object: its joined row, which its extension fields read."""


def pascal_case(snake: str) -> str:
    """`sales_order` -> `SalesOrder`."""
    return "".join(part.capitalize() for part in snake.split("_"))


def extension_type(contract: Contract) -> ObjectType:
    """The type of one extension contract; its key is left out, it is the parent's id."""
    _single_key(contract)
    fields = [f for f in contract.fields if f.name not in contract.key_fields]
    return _object_type(
        contract.name, contract, fields, {}, lambda name: wide.column(contract, name)
    )


def entity_type(identity: Contract, extensions: list[ObjectType]) -> ObjectType:
    """The type of an entity: its identity fields plus one field per extension contract."""
    _single_key(identity)
    resolvers: dict[str, StrawberryField] = {}
    by_field: dict[str, ObjectType] = {}
    for ext in extensions:
        name = ext.contract.extension_name or ext.contract.table_name
        if name in identity.field_names or name in resolvers:
            raise ContractError(
                f"{ext.contract.name}: extension_name {name!r} clashes with a field of"
                f" {identity.name} or another extension"
            )
        resolvers[_attribute(name)] = _extension_field(name, ext)
        by_field[to_camel_case(name)] = ext
    entity = _object_type(
        pascal_case(identity.entity or identity.name),
        identity,
        list(identity.fields),
        resolvers,
        lambda name: name,
    )
    return replace(entity, extensions=by_field)


def _extension_field(name: str, ext: ObjectType) -> StrawberryField:
    present = wide.present_column(ext.contract)

    def resolve(root: Any, info: strawberry.Info) -> ext.cls | None:  # type: ignore[name-defined]
        row = getattr(root, ROW_ATTRIBUTE)
        return None if row[present] is None else ext.build(row, info.context.access)

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
    column: Callable[[str], str],
) -> ObjectType:
    annotations = {_attribute(f.name): _annotation(contract, f) for f in fields}
    namespace: dict[str, Any] = {
        _attribute(f.name): strawberry.field(
            name=to_camel_case(f.name), description=_description(f)
        )
        for f in fields
    }
    namespace |= resolvers
    if resolvers:
        annotations[ROW_ATTRIBUTE] = strawberry.Private[Any]
    namespace["__annotations__"] = annotations
    cls = types.new_class(name, (), {}, lambda ns: ns.update(namespace))
    strawberry.type(cls, name=name, description=contract.description)
    return ObjectType(
        contract,
        cls,
        {f.name: _attribute(f.name) for f in fields},
        {f.name: column(f.name) for f in fields},
    )


def _description(field: Field) -> str:
    if field.privacy != Privacy.PII:
        return field.description
    shown = "a stable hash" if field.mask == "hash" else "null"
    return f"{field.description} Personal data: {shown} for roles that may not read it."


def _annotation(contract: Contract, field: Field) -> Any:
    if field.name in contract.key_fields and contract.kind == "identity":
        scalar: Any = strawberry.ID
    elif re.fullmatch(r"decimal\(\d+,\s*\d+\)", field.type):
        scalar = Decimal
    else:
        scalar = _SCALARS[field.type]
    # A pii value masked as null needs a nullable type, whatever the contract says.
    nullable = field.nullable or (field.privacy == Privacy.PII and field.mask == "null")
    return scalar | None if nullable else scalar


def _attribute(name: str) -> str:
    # Contract names are snake_case and may be Python keywords (`from`, `class`).
    return f"{name}_" if keyword.iskeyword(name) else name


def _single_key(contract: Contract) -> str:
    if len(contract.key_fields) != 1:
        raise ContractError(
            f"{contract.name}: the GraphQL API needs a single-field key, has {contract.key_fields}"
        )
    return reads.key_of(contract)
