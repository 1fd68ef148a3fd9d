"""strawberry's argument conversion, with each input type's fields resolved once.

`strawberry.types.arguments.convert_arguments` turns graphql-core's coerced argument values into
the resolver's input objects. It resolves every field's type and GraphQL name of every input type
on every call: for one `where` of a page query (`CustomerWhere` with its 20-odd fields, and the
filter types below it) that was ~0.55 ms, a tenth of the page's CPU. Here the fields of an input
type are looked up once per type; what a converter does with a value is what
`convert_argument` does: scalars and enums pass as graphql-core coerced them (as
`convert_argument` returns them), and every type other than input objects, lists and optionals
(`Maybe`, a relay `GlobalID`) is handed to `convert_argument` itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from strawberry.relay.types import GlobalID
from strawberry.scalars import is_scalar
from strawberry.types.arguments import StrawberryArgument, convert_argument
from strawberry.types.base import (
    StrawberryList,
    StrawberryMaybe,
    StrawberryOptional,
    has_object_definition,
)
from strawberry.types.enum import StrawberryEnumDefinition, has_enum_definition
from strawberry.types.lazy_type import LazyType
from strawberry.types.unset import UNSET

from hubspoke_graphql.schema import LakeSchema

Convert = Callable[[Any], Any]


class Converters:
    """Converters of the argument lists and input types of one schema."""

    def __init__(self, schema: LakeSchema) -> None:
        self._registry = schema.schema_converter.scalar_registry
        self._config = schema.config
        self._objects: dict[type, Convert] = {}

    def arguments(
        self, arguments: Sequence[StrawberryArgument]
    ) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
        """`convert_arguments` for this argument list: GraphQL values -> resolver keyword args."""
        names = self._config.name_converter
        known = [(names.from_argument(a), a.python_name, self._of(a.type)) for a in arguments]

        def convert(values: Mapping[str, Any]) -> dict[str, Any]:
            return {python: of(values[name]) for name, python, of in known if name in values}

        return convert

    def _of(self, type_: Any) -> Convert:
        if isinstance(type_, StrawberryOptional) and not isinstance(type_, StrawberryMaybe):
            return self._of(type_.of_type)  # None and UNSET pass through every converter below
        if isinstance(type_, LazyType):
            return self._of(type_.resolve_type())
        if isinstance(type_, StrawberryList):
            item = self._of(type_.of_type)
            return lambda value: (
                value if value is None or value is UNSET else [item(x) for x in value]
            )
        if has_object_definition(type_):
            return self._object(type_)
        if type_ is not GlobalID and (
            is_scalar(type_, self._registry)
            or has_enum_definition(type_)
            or isinstance(type_, StrawberryEnumDefinition)
        ):
            return _as_coerced  # what convert_argument returns for a leaf, after ~10 checks
        return partial(
            convert_argument, type_=type_, scalar_registry=self._registry, config=self._config
        )

    def _object(self, type_: type) -> Convert:
        found = self._objects.get(type_)
        if found is not None:
            return found
        fields: list[tuple[str, str, Convert]] = []

        def convert(value: Any) -> Any:
            if value is None or value is UNSET:
                return value
            return type_(
                **{python: of(value[name]) for name, python, of in fields if name in value}
            )

        # Registered before its fields are: input types refer to themselves (`and`, `or`, `not`).
        self._objects[type_] = convert
        definition = type_.__strawberry_definition__  # type: ignore[attr-defined]
        for field in definition.fields:
            of = self._of(field.resolve_type(type_definition=definition))
            fields.append((self._config.name_converter.from_field(field), field.python_name, of))
        return convert


def _as_coerced(value: Any) -> Any:
    """A scalar's or an enum's value, which graphql-core has already coerced."""
    return value
