"""Compiled answers: lookups by id and connection pages built from rows without the executor.

graphql-core resolves one customer with its extensions field by field: ~25 resolver calls,
argument conversion and strawberry's hooks around each, about 0.5 ms of CPU, and 20 ms for a
page of 100. A query made only of `<entity>(id: ...)` and `<entities>(...)` root fields that
select plain fields of the entity and of its extensions, cursors and pageInfo (what a dashboard
or a tool asks) needs none of that: once strawberry has parsed, validated and answered a query
text, its selection is compiled here into a list of (response key, column, serializer) and
later requests with that text are answered from the rows directly.

The compiled answer is the executor's answer: arguments and variables are coerced by
graphql-core's and strawberry's own functions, pages loaded by the connection's own loader,
values serialized by the schema's scalars, pii masked per role by the same `Access`, and the
request audited like any other (see `app.LakeGraphQL`). Whatever is not plain (directives,
introspection, totalCount, aggregates, asOf on a lookup, a null in a non-null field, a value a
scalar refuses, an argument the API refuses) is left to strawberry, which answers it, errors
included, as before.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow.compute as pc
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSyntaxError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_argument_values,
    get_named_type,
    get_variable_values,
    parse,
)
from strawberry.utils.str_converters import to_camel_case

from hubspoke_graphql import reads, wide
from hubspoke_graphql.access import Access
from hubspoke_graphql.arguments import Converters
from hubspoke_graphql.audit import fields_of
from hubspoke_graphql.columns import SERIALIZERS, TEXT_SCALARS, Serializer
from hubspoke_graphql.context import RequestContext
from hubspoke_graphql.limits import CACHE_SIZE, MAX_KEY_LENGTH
from hubspoke_graphql.schema import Connection, LakeSchema, Page
from hubspoke_graphql.snapshot import View
from hubspoke_graphql.types import ObjectType
from lake_schema import Contract

Row = dict[str, Any]
TYPENAME = "__typename"


class NotPlain(Exception):
    """This request needs the executor (the caller falls back to strawberry)."""


@dataclass(frozen=True)
class Leaf:
    """One scalar field of an object: where its value sits in the row and how it is sent."""

    key: str
    """Response key (the alias, or the field's name)."""
    field: str
    """Contract field name (masking is decided per contract field)."""
    column: str
    serialize: Callable[[Any], Any]
    nullable: bool
    columnwise: Serializer | None
    """The scalar's serialization of a whole Arrow column, where one reproduces it."""
    text: bool
    """Whether the scalar sends a str as it is (String, ID), a hash mask included."""

    def send(self, value: Any, access: Access, mask: str | None) -> Any:
        """`value` as the executor sends it, masked (`null` or `hash`) when the role may not
        read it; NotPlain where the executor would report an error instead."""
        if mask is not None:
            value = access.mask(mask, value)
        if value is None:
            if not self.nullable:
                raise NotPlain(self.key)
            return None
        try:
            sent = self.serialize(value)
        except (GraphQLError, TypeError, ValueError) as exc:
            raise NotPlain(self.key) from exc
        if sent is None:  # a scalar that returned null
            raise NotPlain(self.key)
        return sent


@dataclass(frozen=True)
class Shape:
    """The selection on one object type: its leaves, `__typename`s and extension objects."""

    type_name: str
    contract: Contract
    leaves: tuple[Leaf, ...]
    typenames: tuple[str, ...]
    extensions: tuple[tuple[str, str, Shape], ...]
    """Response key, the column that is null when the extension has no row, its shape."""
    order: tuple[str, ...]
    """Response keys in selection order (the executor answers in that order)."""

    def answer(self, row: Row, access: Access) -> dict[str, Any]:
        """This selection's values of `row`, pii masked for the role; NotPlain when the executor
        would report an error instead."""
        hidden = access.hidden(self.contract)
        values: dict[str, Any] = {
            leaf.key: leaf.send(row[leaf.column], access, hidden.get(leaf.field))
            for leaf in self.leaves
        }
        for key in self.typenames:
            values[key] = self.type_name
        for key, present, shape in self.extensions:
            values[key] = None if row[present] is None else shape.answer(row, access)
        return {key: values[key] for key in self.order}

    def answer_all(self, rows: Sequence[Row], access: Access) -> list[dict[str, Any]]:
        """`answer` of every row, computed a column at a time when the rows are held so."""
        if not isinstance(rows, wide.Rows):
            return [self.answer(row, access) for row in rows]
        hidden = access.hidden(self.contract)
        columns: dict[str, list[Any]] = {}
        for leaf in self.leaves:
            sent = None
            mask = hidden.get(leaf.field)
            if mask == "null" and leaf.nullable:  # masked away: none of its values is read
                sent = [None] * len(rows)
            elif mask == "hash" and leaf.text:
                sent = access.mask_all(mask, rows.column(leaf.column))
                if not leaf.nullable and None in sent:
                    raise NotPlain(leaf.key)
            elif leaf.columnwise is not None and mask is None:
                arrow = rows.table.column(leaf.column)
                if arrow.null_count and not leaf.nullable:
                    raise NotPlain(leaf.key)
                sent = leaf.columnwise(arrow)
            if sent is None:
                sent = [leaf.send(v, access, mask) for v in rows.column(leaf.column)]
            columns[leaf.key] = sent
        for key in self.typenames:
            columns[key] = [self.type_name] * len(rows)
        for key, present, shape in self.extensions:
            flags = rows.table.column(present)
            if not flags.null_count:  # every row has the extension
                columns[key] = shape.answer_all(rows, access)
                continue
            found = pc.indices_nonzero(flags.is_valid()).to_pylist()
            column: list[Any] = [None] * len(rows)
            for i, answer in zip(found, shape.answer_all(rows.select(found), access), strict=True):
                column[i] = answer
            columns[key] = column
        return _objects(self.order)([columns[k] for k in self.order])


@dataclass(frozen=True)
class Root:
    """One `<entity>(id: ...)` root field of a compiled operation."""

    key: str
    field: GraphQLField
    node: FieldNode
    identity: Contract
    shape: Shape


Items = tuple[tuple[str, str, Any], ...]
"""(response key, what it is, its detail) of a connection's selection, in selection order."""


@dataclass(frozen=True)
class PageRoot:
    """One `<entities>(...)` connection root field: its page's nodes, edges and pageInfo."""

    key: str
    field: GraphQLField
    node: FieldNode
    connection: Connection
    convert: Callable[[Mapping[str, Any]], dict[str, Any]]
    """The connection's arguments as its resolver takes them (strawberry's conversion)."""
    items: Items
    """Kinds: `typename` (name), `nodes` (Shape), `edges` (Items of the edge: `typename`,
    `cursor`, `node` (Shape)), `pageInfo` (Items: `typename`, `info` (PageInfo attribute))."""

    def answer(self, page: Page, access: Access) -> dict[str, Any]:
        """The selection's values of a loaded page."""
        values: dict[str, Any] = {}
        for key, kind, detail in self.items:
            if kind == "typename":
                values[key] = detail
            elif kind == "nodes":
                values[key] = detail.answer_all(page.rows, access)
            elif kind == "edges":
                values[key] = _edges(detail, page, access)
            else:
                values[key] = {
                    k: name if what == "typename" else getattr(page.page_info, name)
                    for k, what, name in detail
                }
        return values


def _edges(items: Items, page: Page, access: Access) -> list[dict[str, Any]]:
    columns: list[Sequence[Any]] = []
    for _, kind, detail in items:
        if kind == "typename":
            columns.append([detail] * len(page.rows))
        elif kind == "cursor":
            columns.append(page.cursors)
        else:
            columns.append(detail.answer_all(page.rows, access))
    return _objects(tuple(key for key, _, _ in items))(columns)


@functools.lru_cache(maxsize=4 * CACHE_SIZE)
def _objects(keys: tuple[str, ...]) -> Callable[[Sequence[Sequence[Any]]], list[dict[str, Any]]]:
    """A function making one dict per row, `keys` to the row's values, from value columns.

    Generated as a comprehension over a dict display with these keys: half the time of
    `dict(zip(keys, row))` per row, which was the largest single cost of a page's answer.
    Every column holds one value per row by construction, so zip needs no strict check. Keys
    are GraphQL response names (the parser admits only [_A-Za-z][_0-9A-Za-z]*), written as
    literals with repr.
    """
    names = [f"v{i}" for i in range(len(keys))]
    entries = ", ".join(f"{key!r}: {name}" for key, name in zip(keys, names, strict=True))
    source = f"lambda columns: [{{{entries}}} for {', '.join(names)}, in zip(*columns)]"
    return eval(source)  # the source holds only repr'd names, no value of a request


@dataclass(frozen=True)
class Plan:
    """A compiled operation: its root fields, and what the audit log records of it."""

    operation: OperationDefinitionNode
    type_name: str
    """Name of the root type (the value of a root `__typename`)."""
    roots: tuple[Root | PageRoot, ...]
    typenames: tuple[str, ...]
    order: tuple[str, ...]
    fields: list[str]
    """Every `Type.field` the operation selects (for the audit log)."""

    def operation_name(self, requested: str | None) -> str | None:
        """The operation's name: the request's operationName, else the document's."""
        return requested or (self.operation.name.value if self.operation.name else None)

    @property
    def pages(self) -> bool:
        """Whether the plan reads pages (queries worth keeping the answers of)."""
        return any(isinstance(r, PageRoot) for r in self.roots)


@dataclass
class Answer:
    """A compiled answer and what the audit log records of it."""

    data: dict[str, Any]
    operation: str | None
    fields: list[str]
    ids: list[str]


class Lookups:
    """Plans of the query texts seen, bounded like the parser and validation caches."""

    def __init__(self, schema: LakeSchema) -> None:
        self.strawberry = schema
        self.schema = schema._schema
        self._plans: OrderedDict[tuple[str, str | None], Plan | None] = OrderedDict()
        self._converters = Converters(schema)

    def plan(self, query: str, operation_name: str | None) -> Plan | None:
        """The plan of a query text compiled before, or None when the executor must answer."""
        return self._plans.get((query, operation_name))

    async def answer(
        self,
        plan: Plan,
        variables: dict[str, Any] | None,
        context: RequestContext,
        operation_name: str | None,
    ) -> Answer | None:
        """The plan's answer for these variables, or None when the executor must answer."""
        try:
            return await self._run(plan, variables, context, operation_name)
        except NotPlain:
            return None

    def learn(self, query: str, operation_name: str | None) -> None:
        """Compile a query text strawberry has just validated and answered without errors."""
        key = (query, operation_name)
        if key in self._plans:
            self._plans.move_to_end(key)
            return
        try:
            self._plans[key] = self._compile(parse(query), operation_name, query)
        except (NotPlain, GraphQLSyntaxError):
            self._plans[key] = None  # remembered, so it is not compiled again
        while len(self._plans) > CACHE_SIZE:
            self._plans.popitem(last=False)

    def _compile(self, document: DocumentNode, operation_name: str | None, query: str) -> Plan:
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        chosen = [
            o
            for o in operations
            if operation_name is None or (o.name is not None and o.name.value == operation_name)
        ]
        if len(chosen) != 1 or chosen[0].operation != OperationType.QUERY:
            raise NotPlain("not exactly one query operation")
        operation = chosen[0]
        if operation.directives:
            raise NotPlain("directives")
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        query_type = self.schema.query_type
        assert query_type is not None
        roots, typenames, order = [], [], []
        for node in _fields(operation.selection_set, query_type.name, fragments):
            key = (node.alias or node.name).value
            order.append(key)
            if node.name.value == TYPENAME:
                typenames.append(key)
                continue
            name = node.name.value
            field = query_type.fields.get(name)
            if field is None or node.selection_set is None:  # __schema, __type
                raise NotPlain(name)
            if (entity := self.strawberry.entities.get(name)) is not None:
                shape = _shape(entity, _object_type(field), node.selection_set, fragments)
                roots.append(Root(key, field, node, entity.contract, shape))
            elif (connection := self.strawberry.connections.get(name)) is not None:
                items = _page_items(connection, _object_type(field), node.selection_set, fragments)
                convert = self._converters.arguments(connection.field.arguments)
                roots.append(PageRoot(key, field, node, connection, convert, items))
            else:
                raise NotPlain(name)
        _unique(order)
        return Plan(
            operation,
            query_type.name,
            tuple(roots),
            tuple(typenames),
            tuple(order),
            fields_of(self.schema, query, document),
        )

    async def _run(
        self,
        plan: Plan,
        variables: dict[str, Any] | None,
        context: RequestContext,
        operation_name: str | None,
    ) -> Answer:
        coerced = get_variable_values(
            self.schema, plan.operation.variable_definitions, variables or {}
        )
        if isinstance(coerced, list):  # the executor reports these errors
            raise NotPlain("variables")
        values: dict[str, Any] = {key: plan.type_name for key in plan.typenames}
        ids: list[str] = []
        for root in plan.roots:
            try:
                args = get_argument_values(root.field, root.node, coerced)
            except GraphQLError as exc:  # a null for a non-null argument, say
                raise NotPlain("arguments") from exc
            if isinstance(root, PageRoot):
                page = await self._page(root, args, context)
                ids += wide.column_of(page.rows, reads.key_of(root.connection.entity.contract))
                values[root.key] = root.answer(page, context.access)
                continue
            row = _row(root, args, context.view)
            if row is None:
                values[root.key] = None
                continue
            ids.append(row[reads.key_of(root.identity)])
            values[root.key] = root.shape.answer(row, context.access)
        return Answer(
            {key: values[key] for key in plan.order},
            plan.operation_name(operation_name),
            plan.fields,
            list(dict.fromkeys(ids)),
        )

    async def _page(self, root: PageRoot, args: dict[str, Any], context: RequestContext) -> Page:
        """The page the connection's resolver would load, with the same converted arguments."""
        try:
            kwargs = root.convert(args)
            return await root.connection.load(context, **kwargs)
        except Exception as exc:  # InputError and the like: the executor reports them
            raise NotPlain("page") from exc


def _row(root: Root, args: dict[str, Any], view: View) -> Row | None:
    """The visible row a lookup by id answers with, or None."""
    key = args["id"]
    if args.get("asOf") is not None or args.get("asOfVersion") is not None:
        raise NotPlain("time travel")
    if len(key) > MAX_KEY_LENGTH:
        raise NotPlain("id too long")  # the executor says what is accepted
    index = view.indexes.get(root.identity.table_name)
    if index is None:
        raise NotPlain("no index")
    row = index.get(key)
    if row is None or not reads.visible(
        root.identity, row, include_deleted=args.get("includeDeleted", False)
    ):
        return None
    return row


def _page_items(
    connection: Connection,
    graphql_type: GraphQLObjectType,
    selection: SelectionSetNode,
    fragments: Mapping[str, FragmentDefinitionNode],
) -> Items:
    """The compiled selection on a connection type: nodes, edges, pageInfo, __typename."""
    items: list[tuple[str, str, Any]] = []
    for node in _fields(selection, graphql_type.name, fragments):
        key, name = (node.alias or node.name).value, node.name.value
        if name == TYPENAME:
            items.append((key, "typename", graphql_type.name))
            continue
        if node.selection_set is None or name not in ("nodes", "edges", "pageInfo"):
            raise NotPlain(name)
        inner = _object_type(graphql_type.fields[name])
        if name == "nodes":
            items.append(
                (key, name, _shape(connection.entity, inner, node.selection_set, fragments))
            )
        elif name == "edges":
            edge: list[tuple[str, str, Any]] = []
            for sub in _fields(node.selection_set, inner.name, fragments):
                sub_key, sub_name = (sub.alias or sub.name).value, sub.name.value
                if sub_name == TYPENAME:
                    edge.append((sub_key, "typename", inner.name))
                elif sub_name == "cursor" and sub.selection_set is None:
                    edge.append((sub_key, "cursor", None))
                elif sub_name == "node" and sub.selection_set is not None:
                    node_type = _object_type(inner.fields["node"])
                    shape = _shape(connection.entity, node_type, sub.selection_set, fragments)
                    edge.append((sub_key, "node", shape))
                else:
                    raise NotPlain(sub_name)
            _unique([k for k, _, _ in edge])
            items.append((key, name, tuple(edge)))
        else:
            info: list[tuple[str, str, str]] = []
            for sub in _fields(node.selection_set, inner.name, fragments):
                sub_key, sub_name = (sub.alias or sub.name).value, sub.name.value
                if sub_name == TYPENAME:
                    info.append((sub_key, "typename", inner.name))
                elif sub_name in _PAGE_INFO and sub.selection_set is None:
                    info.append((sub_key, "info", _PAGE_INFO[sub_name]))
                else:
                    raise NotPlain(sub_name)
            _unique([k for k, _, _ in info])
            items.append((key, name, tuple(info)))
    _unique([k for k, _, _ in items])
    return tuple(items)


_PAGE_INFO = {
    "hasNextPage": "has_next_page",
    "hasPreviousPage": "has_previous_page",
    "startCursor": "start_cursor",
    "endCursor": "end_cursor",
}


def _shape(
    entity: ObjectType,
    graphql_type: GraphQLObjectType,
    selection: SelectionSetNode,
    fragments: Mapping[str, FragmentDefinitionNode],
) -> Shape:
    """The compiled selection on an entity or extension type."""
    by_name = {to_camel_case(name): name for name in entity.attributes}
    leaves, typenames, extensions, order = [], [], [], []
    for node in _fields(selection, graphql_type.name, fragments):
        key, name = (node.alias or node.name).value, node.name.value
        order.append(key)
        if name == TYPENAME:
            typenames.append(key)
        elif name in by_name and node.selection_set is None:
            field = graphql_type.fields[name]
            scalar = get_named_type(field.type)
            leaves.append(
                Leaf(
                    key,
                    by_name[name],
                    entity.columns[by_name[name]],
                    scalar.serialize,  # type: ignore[union-attr]
                    not isinstance(field.type, GraphQLNonNull),
                    SERIALIZERS.get(scalar.name),
                    scalar.name in TEXT_SCALARS,
                )
            )
        elif name in entity.extensions and node.selection_set is not None:
            ext = entity.extensions[name]
            present = wide.present_column(ext.contract)
            field_type = _object_type(graphql_type.fields[name])
            extensions.append(
                (key, present, _shape(ext, field_type, node.selection_set, fragments))
            )
        else:
            raise NotPlain(name)
    _unique(order)
    return Shape(
        graphql_type.name,
        entity.contract,
        tuple(leaves),
        tuple(typenames),
        tuple(extensions),
        tuple(order),
    )


def _fields(
    selection: SelectionSetNode, type_name: str, fragments: Mapping[str, FragmentDefinitionNode]
) -> list[FieldNode]:
    """The fields of a selection with its fragments inlined; NotPlain for directives, arguments
    on fields, and fragments on another type."""
    found: list[FieldNode] = []
    for node in selection.selections:
        if node.directives:
            raise NotPlain("directives")
        if isinstance(node, FieldNode):
            found.append(node)
        elif isinstance(node, FragmentSpreadNode):
            fragment = fragments[node.name.value]
            if fragment.type_condition.name.value != type_name:
                raise NotPlain("fragment on another type")
            found += _fields(fragment.selection_set, type_name, fragments)
        elif isinstance(node, InlineFragmentNode):
            condition = node.type_condition
            if condition is not None and condition.name.value != type_name:
                raise NotPlain("fragment on another type")
            found += _fields(node.selection_set, type_name, fragments)
    return found


def _object_type(field: GraphQLField) -> GraphQLObjectType:
    named = get_named_type(field.type)
    if not isinstance(named, GraphQLObjectType):
        raise NotPlain(str(named))
    return named


def _unique(keys: Sequence[str]) -> None:
    # The executor merges repeated response keys; those few queries are left to it.
    if len(set(keys)) != len(keys):
        raise NotPlain("repeated response key")
