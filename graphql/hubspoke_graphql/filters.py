"""`where`, `orderBy` and `groupBy` inputs generated from the contracts, compiled to DuckDB SQL.

Every comparison is null-safe (a comparison with a missing value is false, never unknown), so
`not` is the exact complement of what it wraps. Values are always bound parameters, cast to the
column's contract type inside the SQL.
"""

# No `from __future__ import annotations`: the generated inputs are annotated with run-time classes.
import enum
import keyword
import re
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from typing import Any

import strawberry
from strawberry.utils.str_converters import to_camel_case

from hubspoke_graphql import wide
from hubspoke_graphql.limits import MAX_FILTER_TERMS, MAX_FILTER_VALUES, InputError
from lake_schema import Contract
from lake_schema.contract import Field

Visible = Callable[[Contract, Field], bool]
"""Whether the request's role may read (and so filter, order and group on) a field."""


@strawberry.enum(description="Sort direction; nulls come last ascending and first descending.")
class SortDirection(enum.Enum):
    ASC = "ASC"
    DESC = "DESC"


@dataclass(frozen=True)
class Column:
    """One filterable column of an entity's joined table."""

    contract: Contract
    field: Field
    name: str
    """Column in the joined table."""
    path: str
    """How a client names it: `name`, `sales.accountValue`."""

    @property
    def sql_type(self) -> str:
        """The DuckDB type bound values are cast to."""
        return duckdb_type(self.field)


@dataclass(frozen=True)
class SortKey:
    """One ORDER BY term; nulls last ascending, first descending."""

    column: str
    ascending: bool
    sql_type: str

    def order_sql(self, reverse: bool = False) -> str:
        """The ORDER BY term, or its mirror image for paging backwards."""
        asc = self.ascending != reverse
        return f"{wide.quote(self.column)} {'ASC NULLS LAST' if asc else 'DESC NULLS FIRST'}"


def duckdb_type(field: Field) -> str:
    """The DuckDB type of a contract field."""
    if (shape := decimal_shape(field.type)) is not None:
        return f"DECIMAL({shape[0]},{shape[1]})"
    return {
        "string": "VARCHAR",
        "object": "VARCHAR",
        "int64": "BIGINT",
        "float64": "DOUBLE",
        "boolean": "BOOLEAN",
        "timestamp": "TIMESTAMPTZ",
        "date": "DATE",
    }[field.type]


def decimal_shape(type_name: str) -> tuple[int, int] | None:
    """(precision, scale) of a decimal type, as a contract (`decimal(18,2)`) or DuckDB
    (`DECIMAL(18,2)`) names it, else None."""
    m = re.fullmatch(r"decimal\((\d+),\s*(\d+)\)", type_name, re.IGNORECASE)
    return (int(m[1]), int(m[2])) if m else None


def scalar_of(field: Field) -> Any:
    """The Python type strawberry maps to the field's GraphQL scalar."""
    if field.type.startswith("decimal"):
        return Decimal
    return {
        "string": str,
        "object": str,
        "int64": int,
        "float64": float,
        "boolean": bool,
        "timestamp": datetime,
        "date": date,
    }[field.type]


EXISTS = "exists"
"""The attribute of an extension's where input that asks whether the customer has a row in it."""

_OPS = {"eq": "=", "ne": "=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


def _filter_input(name: str, scalar: Any) -> type:
    ordered = scalar is not bool
    ops = ["eq", "ne", "in_"] + (["lt", "lte", "gt", "gte"] if ordered else [])
    if scalar is str:
        ops.append("contains")
    annotations: dict[str, Any] = {
        op: (list[scalar] if op == "in_" else scalar) | None for op in ops
    }
    annotations["is_null"] = bool | None
    described = {
        "eq": "Equal to.",
        "ne": "Not equal to (a missing value counts as different).",
        "in_": f"One of (at most {MAX_FILTER_VALUES} values).",
        "lt": "Less than.",
        "lte": "Less than or equal to.",
        "gt": "Greater than.",
        "gte": "Greater than or equal to.",
        "contains": "Contains this text (case-sensitive).",
        "is_null": "true: the value is missing; false: it is present.",
    }
    namespace: dict[str, Any] = {
        op: strawberry.field(
            default=None, name="in" if op == "in_" else None, description=described[op]
        )
        for op in annotations
    }
    namespace["__annotations__"] = annotations
    cls = types.new_class(name, (), {}, lambda ns: ns.update(namespace))
    return strawberry.input(
        cls, name=name, description=f"Conditions on one {name[:-6]} value; all given must hold."
    )


_FILTERS = {
    scalar: _filter_input(f"{label}Filter", scalar)
    for scalar, label in [
        (str, "String"),
        (int, "Int"),
        (float, "Float"),
        (bool, "Boolean"),
        (Decimal, "Decimal"),
        (datetime, "DateTime"),
        (date, "Date"),
    ]
}


@dataclass
class EntityInputs:
    """The generated inputs of one entity and what each of their attributes means."""

    where: type
    order_by: type
    field_enum: type[enum.Enum]
    columns: dict[str, Column]
    """Joined column name -> column."""
    numeric: list[Column]
    """Columns min/max/sum/avg apply to."""
    leaves: dict[type, dict[str, Column]]
    """Generated input class -> its attribute -> column, for field attributes."""
    nested: dict[type, dict[str, type]]
    """Generated input class -> its attribute -> nested extension input class."""
    presence: dict[type, str]
    """An extension's where input class -> the joined column null when it holds no row."""


def entity_inputs(
    entity_name: str, identity: Contract, extensions: Sequence[Contract]
) -> EntityInputs:
    """The where/orderBy/field inputs of an entity, from its identity and extension contracts."""
    leaves: dict[type, dict[str, Column]] = {}
    nested: dict[type, dict[str, type]] = {}
    presence: dict[type, str] = {}
    columns: dict[str, Column] = {}

    def leaf_columns(contract: Contract, prefix: str | None) -> dict[str, Column]:
        found = {}
        for f in contract.fields:
            if prefix is not None and f.name in contract.key_fields:
                continue  # an extension's key is the entity's id
            name = f.name if prefix is None else wide.column(contract, f.name)
            path = to_camel_case(f.name) if prefix is None else f"{prefix}.{to_camel_case(f.name)}"
            found[_attr(f.name)] = columns.setdefault(name, Column(contract, f, name, path))
        return found

    def make(
        name: str,
        description: str,
        fields: dict[str, Column],
        kind: str,
        subs: dict[str, tuple[Contract, type]],
        recursive: bool,
    ) -> type:
        annotations: dict[str, Any] = {}
        namespace: dict[str, Any] = {}
        for attr, col in fields.items():
            annotations[attr] = (
                _FILTERS[scalar_of(col.field)] if kind == "where" else SortDirection
            ) | None
            namespace[attr] = strawberry.field(
                default=None, name=to_camel_case(col.field.name), description=col.field.description
            )
        for attr, (ext, cls) in subs.items():
            annotations[attr] = cls | None
            namespace[attr] = strawberry.field(
                default=None, name=to_camel_case(attr), description=ext.description
            )
        cls = types.new_class(name, (), {}, lambda ns: ns.update(namespace))
        if recursive:
            cls.__annotations__ = annotations | {
                "and_": list[cls] | None,  # type: ignore[valid-type]
                "or_": list[cls] | None,  # type: ignore[valid-type]
                "not_": cls | None,
            }
            cls.and_ = strawberry.field(
                default=None, name="and", description="Every one of these holds."
            )
            cls.or_ = strawberry.field(
                default=None, name="or", description="At least one of these holds."
            )
            cls.not_ = strawberry.field(default=None, name="not", description="This does not hold.")
        else:
            if kind == "where":  # an extension's: whether the customer has a row in it at all
                annotations[EXISTS] = bool | None
                setattr(
                    cls,
                    EXISTS,
                    strawberry.field(
                        default=None,
                        description="true: only customers with a row in this extension;"
                        " false: only those without one.",
                    ),
                )
            cls.__annotations__ = annotations
        strawberry.input(cls, name=name, description=description)
        leaves[cls] = fields
        nested[cls] = {a: c for a, (_, c) in subs.items()}
        return cls

    subs_where: dict[str, tuple[Contract, type]] = {}
    subs_order: dict[str, tuple[Contract, type]] = {}
    for ext in extensions:
        assert ext.extension_name is not None
        ext_fields = leaf_columns(ext, to_camel_case(ext.extension_name))
        label = f"{ext.name}"
        ext_where = make(
            f"{label}Where",
            f"Conditions on the {ext.extension_name} extension; a customer without one matches"
            " none but isNull and `exists: false`.",
            ext_fields,
            "where",
            {},
            False,
        )
        presence[ext_where] = wide.present_column(ext)
        subs_where[_attr(ext.extension_name)] = (ext, ext_where)
        subs_order[_attr(ext.extension_name)] = (
            ext,
            make(
                f"{label}OrderBy",
                f"Sort by one field of the {ext.extension_name} extension.",
                ext_fields,
                "order",
                {},
                False,
            ),
        )
    id_fields = leaf_columns(identity, None)
    where = make(
        f"{entity_name}Where",
        f"Conditions on {entity_name} fields and extensions, combined with and, or, not.",
        id_fields,
        "where",
        subs_where,
        True,
    )
    order_by = make(
        f"{entity_name}OrderBy",
        "Sort by exactly one field; pass a list to sort by several.",
        id_fields,
        "order",
        subs_order,
        False,
    )
    members = {_enum_member(c): c.name for c in columns.values()}
    field_enum = strawberry.enum(
        enum.Enum(f"{entity_name}Field", members),  # type: ignore[misc]
        description=f"A field of {entity_name} or of one of its extensions, to group by.",
    )
    numeric = [
        c
        for c in columns.values()
        if c.field.type in ("int64", "float64") or c.field.type.startswith("decimal")
    ]
    return EntityInputs(where, order_by, field_enum, columns, numeric, leaves, nested, presence)


def _enum_member(column: Column) -> str:
    return column.name.replace("__", "_").upper()


def _attr(name: str) -> str:
    # Contract names are snake_case and may be Python keywords (`from`, `class`).
    return f"{name}_" if keyword.iskeyword(name) else name


@dataclass
class Compiled:
    """A SQL condition and its bound parameters."""

    sql: str
    params: list[Any]


def compile_where(where: Any, inputs: EntityInputs, visible: Visible) -> Compiled:
    """The condition of a `where` input (TRUE when it is empty)."""
    if where is not None and (terms := _terms(where, inputs)) > MAX_FILTER_TERMS:
        raise InputError(
            f"where has {terms} conditions and and/or/not nodes; at most {MAX_FILTER_TERMS} are"
            " accepted (a list of values is one `in` condition)"
        )
    params: list[Any] = []
    sql = _where(where, inputs, visible, params) if where is not None else "TRUE"
    return Compiled(sql, params)


def _terms(where: Any, inputs: EntityInputs) -> int:
    """How many nodes a where input holds: itself, its conditions and its nested inputs."""
    cls, count = type(where), 1
    for attr in inputs.leaves[cls]:
        if (condition := getattr(where, attr)) is not None:
            count += sum(value is not None for value in vars(condition).values())
    for attr in inputs.nested[cls]:
        if (sub := getattr(where, attr)) is not None:
            count += _terms(sub, inputs)
    if cls in inputs.presence and getattr(where, EXISTS) is not None:
        count += 1
    for child in [*(getattr(where, "and_", None) or []), *(getattr(where, "or_", None) or [])]:
        count += _terms(child, inputs)
    if (negated := getattr(where, "not_", None)) is not None:
        count += _terms(negated, inputs)
    return count


def _where(where: Any, inputs: EntityInputs, visible: Visible, params: list[Any]) -> str:
    terms: list[str] = []
    cls = type(where)
    for attr, col in inputs.leaves[cls].items():
        if (condition := getattr(where, attr)) is not None:
            _check_visible(col, visible, "where")
            terms += _leaf(col, condition, params)
    for attr in inputs.nested[cls]:
        if (sub := getattr(where, attr)) is not None:
            terms.append(_where(sub, inputs, visible, params))
    if cls in inputs.presence and (exists := getattr(where, EXISTS)) is not None:
        terms.append(f"{wide.quote(inputs.presence[cls])} IS {'NOT ' if exists else ''}NULL")
    if getattr(where, "and_", None) is not None:
        terms += [_where(w, inputs, visible, params) for w in where.and_]
    if getattr(where, "or_", None) is not None:
        ors = [_where(w, inputs, visible, params) for w in where.or_]
        terms.append(f"({' OR '.join(ors)})" if ors else "FALSE")
    if getattr(where, "not_", None) is not None:
        terms.append(f"NOT ({_where(where.not_, inputs, visible, params)})")
    return f"({' AND '.join(terms)})" if terms else "TRUE"


def _leaf(col: Column, condition: Any, params: list[Any]) -> list[str]:
    name, cast = wide.quote(col.name), col.sql_type
    terms = []
    for op, sql_op in _OPS.items():
        value = getattr(condition, op, None)
        if value is None:
            continue
        params.append(_bindable(col, value))
        compare = f"coalesce({name} {sql_op} CAST(? AS {cast}), false)"
        terms.append(f"NOT {compare}" if op == "ne" else compare)
    if (values := getattr(condition, "in_", None)) is not None:
        if len(values) > MAX_FILTER_VALUES:
            raise InputError(
                f"where: {col.path}.in has {len(values)} values; at most {MAX_FILTER_VALUES} are accepted"
            )
        params.append([_bindable(col, v) for v in values])
        terms.append(f"coalesce(list_contains(CAST(? AS {cast}[]), {name}), false)")
    if (text := getattr(condition, "contains", None)) is not None:
        params.append(text)
        terms.append(f"coalesce(contains({name}, ?), false)")
    if condition.is_null is not None:
        terms.append(f"{name} IS {'' if condition.is_null else 'NOT '}NULL")
    return terms


def _bindable(col: Column, value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        raise InputError(
            f"where: {col.path} needs a date-time with a UTC offset, got {value.isoformat()}"
        )
    if isinstance(value, Decimal) and (shape := decimal_shape(col.field.type)) is not None:
        _check_decimal(col.path, value, *shape)
    return value


_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)
"""Decimal arithmetic that neither rounds nor overflows (the default context keeps 28 digits)."""


def decimal_fits(value: Decimal, precision: int, scale: int) -> bool:
    """Whether `value` is exactly a value of DECIMAL(precision, scale): DuckDB would round the
    extra places (`gt: 1.005` comparing as `gt: 1.01`) or fail the query."""
    if not value.is_finite():
        return False
    exact = value.normalize(_EXACT)  # trailing zeros dropped, no digit rounded
    places = max(0, -int(exact.as_tuple().exponent))
    return places <= scale and max(0, exact.adjusted() + 1) <= precision - scale


def _check_decimal(path: str, value: Decimal, precision: int, scale: int) -> None:
    """InputError unless `value` fits the decimal type (see `decimal_fits`)."""
    if not value.is_finite():
        raise InputError(f"where: {path} needs a finite number, got {value}")
    if not decimal_fits(value, precision, scale):
        raise InputError(
            f"where: {path} is decimal({precision},{scale}): at most {precision - scale} digits"
            f" before the point and {scale} after, got {value}"
        )


def _check_visible(col: Column, visible: Visible, argument: str) -> None:
    if not visible(col.contract, col.field):
        raise InputError(
            f"{argument}: {col.path} is personal data this key's role may not read;"
            " it cannot be used to filter, sort or group"
        )


def compile_order(
    order_by: Sequence[Any] | None, inputs: EntityInputs, key: str, visible: Visible
) -> list[SortKey]:
    """The sort keys of an `orderBy` list, ending with the entity key so that the order is total."""
    keys: list[SortKey] = []
    for term in order_by or []:
        chosen = list(_chosen(term, inputs))
        if len(chosen) != 1:
            raise InputError(
                f"orderBy: each entry must name exactly one field, got {len(chosen)}"
                f" ({', '.join(c.path for c, _ in chosen) or 'none'}); pass a list to sort by several"
            )
        col, direction = chosen[0]
        _check_visible(col, visible, "orderBy")
        keys.append(SortKey(col.name, direction == SortDirection.ASC, col.sql_type))
    if key not in {k.column for k in keys}:
        keys.append(SortKey(key, True, inputs.columns[key].sql_type))
    return keys


def _chosen(term: Any, inputs: EntityInputs) -> list[tuple[Column, SortDirection]]:
    found = [
        (col, d)
        for attr, col in inputs.leaves[type(term)].items()
        if (d := getattr(term, attr)) is not None
    ]
    for attr in inputs.nested[type(term)]:
        if (sub := getattr(term, attr)) is not None:
            found += _chosen(sub, inputs)
    return found


def group_columns(
    group_by: Sequence[enum.Enum] | None, inputs: EntityInputs, visible: Visible
) -> list[Column]:
    """The columns of a `groupBy` list."""
    cols = [inputs.columns[member.value] for member in group_by or []]
    for col in cols:
        _check_visible(col, visible, "groupBy")
    return cols
