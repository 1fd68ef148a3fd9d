"""The compiled pages' argument converters give what strawberry's `convert_arguments` gives."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import pytest
from graphql import OperationDefinitionNode, get_argument_values, get_variable_values, parse
from hubspoke_graphql.arguments import Converters
from hubspoke_graphql.schema import LakeSchema, build_schema
from hypothesis import given, settings
from hypothesis import strategies as st
from strawberry.types.arguments import convert_arguments

from lake_schema import load_catalog

PAGE = """
query ($where: CustomerWhere, $orderBy: [CustomerOrderBy!], $first: Int, $after: String,
       $last: Int, $limit: Int, $offset: Int, $all: Boolean!, $asOf: DateTime) {
  customers(where: $where, orderBy: $orderBy, first: $first, after: $after, last: $last,
            limit: $limit, offset: $offset, includeDeleted: $all, asOf: $asOf) { nodes { id } }
}
"""

_text = st.text("abc%_'é\\", max_size=4)
_money = st.decimals(min_value=-(10**6), max_value=10**6, places=2).map(str)
_instant = st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat())
_LEAVES = st.one_of(
    st.builds(lambda op, v: {"name": {op: v}}, st.sampled_from(["eq", "ne", "contains"]), _text),
    st.builds(lambda vs: {"id": {"in": vs}}, st.lists(_text, max_size=3)),
    st.builds(lambda b: {"email": {"isNull": b}}, st.booleans()),
    st.builds(lambda op, v: {"createdAt": {op: v}}, st.sampled_from(["lt", "gte"]), _instant),
    st.builds(lambda v: {"version": {"gt": v}}, st.integers(-(2**31), 2**31 - 1)),
    st.builds(
        lambda op, v: {"sales": {"accountValue": {op: v}}}, st.sampled_from(["gt", "lte"]), _money
    ),
    st.builds(lambda v: {"sales": {"salesRep": {"isNull": v}}}, st.booleans()),
    st.builds(lambda vs: {"support": {"supportTier": {"in": vs}}}, st.lists(_text, max_size=3)),
    st.just({"sales": None}),
    st.just({}),
)
_WHERE = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: {"and": xs}),
        st.lists(inner, max_size=3).map(lambda xs: {"or": xs}),
        inner.map(lambda x: {"not": x}),
    ),
    max_leaves=6,
)
_ORDER = st.lists(
    st.one_of(
        st.builds(lambda d: {"name": d}, st.sampled_from(["ASC", "DESC"])),
        st.builds(lambda d: {"sales": {"accountValue": d}}, st.sampled_from(["ASC", "DESC"])),
    ),
    max_size=2,
)
_VARIABLES = st.fixed_dictionaries(
    {"all": st.booleans()},
    optional={
        "where": st.one_of(st.none(), _WHERE),
        "orderBy": st.one_of(st.none(), _ORDER),
        "first": st.integers(0, 1000),
        "after": st.one_of(st.none(), _text),
        "last": st.integers(0, 1000),
        "limit": st.integers(0, 1000),
        "offset": st.integers(0, 10**6),
        "asOf": st.one_of(st.none(), _instant),
    },
)


@pytest.fixture(scope="module")
def schema() -> LakeSchema:
    return build_schema(load_catalog())


@settings(max_examples=200, deadline=None)
@given(variables=_VARIABLES)
def test_converted_arguments_match_strawberry(
    schema: LakeSchema, variables: dict[str, Any]
) -> None:
    operation = parse(PAGE).definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    graphql_schema = schema._schema
    coerced = get_variable_values(graphql_schema, operation.variable_definitions, variables)
    assert not isinstance(coerced, list), coerced
    field = graphql_schema.query_type.fields["customers"]
    node = operation.selection_set.selections[0]
    args = get_argument_values(field, node, coerced)
    arguments = schema.connections["customers"].field.arguments

    expected = convert_arguments(
        args,
        arguments,
        scalar_registry=schema.schema_converter.scalar_registry,
        config=schema.config,
    )
    got = Converters(schema).arguments(arguments)(args)
    assert got == expected
    assert repr(got) == repr(expected)  # the same types all the way down, not only equal values


def test_one_converter_serves_many_calls(schema: LakeSchema) -> None:
    arguments = schema.connections["customers"].field.arguments
    convert = Converters(schema).arguments(arguments)
    first = convert({"where": {"name": {"eq": "Ada"}}, "includeDeleted": False})
    second = convert({"where": {"name": {"eq": "Grace"}}, "includeDeleted": True})
    assert first["where"].name.eq == "Ada" and second["where"].name.eq == "Grace"
    assert second["include_deleted"] is True
