"""The Query type and the schema: for every entity, `<entity>(id)` and a `<entities>` connection."""

# No `from __future__ import annotations`: resolver annotations name classes made at run time.
import types
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError
from strawberry.types import ExecutionContext
from strawberry.types.field import StrawberryField
from strawberry.utils.str_converters import to_camel_case

from hubspoke_graphql import reads, wide
from hubspoke_graphql.context import RequestContext
from hubspoke_graphql.filters import (
    Column,
    EntityInputs,
    compile_order,
    compile_where,
    entity_inputs,
    group_columns,
)
from hubspoke_graphql.limits import (
    DEFAULT_PAGE_SIZE,
    MAX_GROUPS,
    MAX_KEY_LENGTH,
    MAX_PAGE_SIZE,
    InputError,
    is_client_error,
    schema_extensions,
)
from hubspoke_graphql.pagination import Cursors, Edge, PageInfo, window
from hubspoke_graphql.types import ObjectType, entity_type, extension_type
from lake_schema import Catalog, Contract, load_catalog


def build_schema(catalog: Catalog | None = None) -> "LakeSchema":
    """The API of every identity contract in `catalog` (the packaged contracts by default)."""
    catalog = catalog or load_catalog()
    fields: dict[str, StrawberryField] = {}
    entities: dict[str, ObjectType] = {}
    connections: dict[str, Connection] = {}
    for identity in catalog.identities():
        extensions = catalog.extensions(identity.entity)
        entity = entity_type(identity, [extension_type(c) for c in extensions])
        inputs = entity_inputs(entity.cls.__name__, identity, extensions)
        queries, connection = entity_queries(entity, inputs)
        fields |= queries
        entities[lookup_name(identity)] = entity
        connections[connection.field.python_name] = connection
    namespace: dict[str, Any] = dict(fields)
    query = types.new_class("Query", (), {}, lambda ns: ns.update(namespace))
    strawberry.type(query, description="Entities of the lake: identity plus domain extensions.")
    schema = LakeSchema(query=query, extensions=schema_extensions())
    schema.entities = entities
    schema.connections = connections
    return schema


class LakeSchema(strawberry.Schema):
    """A strawberry schema that knows its entities' root fields (for compiled answers, see
    lookups) and logs only the errors its operators have to look at."""

    entities: dict[str, ObjectType]
    """Root field of each entity's lookup by id -> the entity type it returns."""
    connections: dict[str, "Connection"]
    """Root field of each entity's connection -> the connection."""

    def process_errors(
        self,
        errors: list[GraphQLError],
        execution_context: ExecutionContext | None = None,
    ) -> None:
        """Log every error but client errors, which the client already got a clear message for."""
        ours = [e for e in errors if not is_client_error(e)]
        super().process_errors(ours, execution_context)


def lookup_name(identity: Contract) -> str:
    """The root field that looks one entity up by id (`customer`)."""
    return to_camel_case(identity.entity or identity.table_name)


def plural(word: str) -> str:
    """English plural of an entity name (`customer` -> `customers`, `address` -> `addresses`)."""
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return f"{word}es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return f"{word[:-1]}ies"
    return f"{word}s"


def numbers_type(entity_name: str, inputs: EntityInputs, suffix: str, description: str) -> type:
    """An object type with one Float field per numeric column of the entity."""
    attrs = {c.name: to_camel_case(c.name.replace("__", "_")) for c in inputs.numeric}
    namespace: dict[str, Any] = {
        attr: strawberry.field(name=name, description=inputs.columns[attr].field.description)
        for attr, name in attrs.items()
    }
    namespace["__annotations__"] = {attr: float | None for attr in attrs}
    cls = types.new_class(f"{entity_name}{suffix}", (), {}, lambda ns: ns.update(namespace))
    return strawberry.type(cls, name=f"{entity_name}{suffix}", description=description)


@dataclass(frozen=True)
class Page:
    """The rows of one page of a connection, their cursors, and where the page stands."""

    rows: Sequence[dict[str, Any]]
    cursors: Sequence[str]
    page_info: PageInfo
    selection: reads.Selection
    view: Any


@dataclass(frozen=True)
class Connection:
    """An entity's connection field and its page loader (for compiled answers, see lookups)."""

    entity: ObjectType
    field: StrawberryField
    load: Callable[..., Awaitable[Page]]
    """`load(context, **arguments)`: the page the field's resolver would answer."""


def entity_queries(
    entity: ObjectType, inputs: EntityInputs
) -> tuple[dict[str, StrawberryField], Connection]:
    """The two root fields of one entity (one by id, and a connection over all of them), and
    the connection's loader."""
    identity = entity.contract
    name = identity.entity or identity.table_name
    type_name = entity.cls.__name__
    node = entity.cls
    key = reads.key_of(identity)
    Numbers = numbers_type(type_name, inputs, "Numbers", "One value per numeric field.")
    stats = ("min", "max", "sum", "avg")

    @strawberry.type(
        name=f"{type_name}Aggregate",
        description="count and min/max/sum/avg of numeric fields, for one group (or all rows).",
    )
    class Aggregate:
        group: list[str | None] = strawberry.field(
            description="Values of the groupBy fields for this group, as text, in groupBy order."
        )
        count: int = strawberry.field(description="Rows in this group.")
        min: Numbers = strawberry.field(description="Smallest value of each numeric field.")  # type: ignore[valid-type]
        max: Numbers = strawberry.field(description="Largest value of each numeric field.")  # type: ignore[valid-type]
        sum: Numbers = strawberry.field(description="Sum of each numeric field.")  # type: ignore[valid-type]
        avg: Numbers = strawberry.field(description="Mean of each numeric field.")  # type: ignore[valid-type]

    def aggregate_of(row: dict[str, Any], group: list[Column]) -> Aggregate:
        values = {
            stat: Numbers(**{c.name: row[f"{stat}{i}"] for i, c in enumerate(inputs.numeric)})
            for stat in stats
        }
        keys = [None if row[f"g{i}"] is None else str(row[f"g{i}"]) for i in range(len(group))]
        return Aggregate(group=keys, count=row["n"], **values)

    FieldEnum = inputs.field_enum

    @strawberry.type(name=f"{type_name}Connection", description=f"A page of {plural(name)}.")
    class EntityConnection:
        edges: list[Edge[node]] = strawberry.field(
            description="The rows of this page, with cursors."
        )  # type: ignore[valid-type]
        page_info: PageInfo = strawberry.field(description="Where this page starts and ends.")
        selection: strawberry.Private[reads.Selection]
        view: strawberry.Private[Any]

        @strawberry.field(description="The rows of this page, without cursors.")
        def nodes(self) -> list[node]:  # type: ignore[valid-type]
            return [edge.node for edge in self.edges]

        @strawberry.field(description="How many rows all pages hold together.")
        async def total_count(self, info: strawberry.Info) -> int:
            n = await info.context.read(reads.count, self.view, self.selection)
            info.context.counted = max(info.context.counted, n)
            return n

        @strawberry.field(
            description="count, min, max, sum and avg over all pages, per group of the groupBy"
            f" fields (at most {MAX_GROUPS} groups, the largest first)."
        )
        async def aggregate(
            self,
            info: strawberry.Info,
            group_by: Annotated[
                list[FieldEnum] | None,  # type: ignore[valid-type]
                strawberry.argument(description="Fields to group by; none: one group of all rows."),
            ] = None,
        ) -> list[Aggregate]:
            group = group_columns(group_by, inputs, info.context.access.sees)
            rows = await info.context.read(
                reads.aggregate, self.view, self.selection, group, inputs.numeric, MAX_GROUPS
            )
            info.context.counted = max(info.context.counted, sum(r["n"] for r in rows))
            return [aggregate_of(r, group) for r in rows]

    IncludeDeleted = Annotated[
        bool, strawberry.argument(description="Also return soft-deleted rows.")
    ]
    AsOf = Annotated[
        datetime | None,
        strawberry.argument(
            description="Answer as the lake stood at this time (Delta time travel, merged state)."
        ),
    ]
    AsOfVersion = Annotated[
        int | None,
        strawberry.argument(
            description=f"Answer as the lake stood at this Delta version of {identity.table_name}."
        ),
    ]
    Where = inputs.where
    OrderBy = inputs.order_by

    async def one(
        info: strawberry.Info,
        id: Annotated[strawberry.ID, strawberry.argument(description=f"Id of the {name}.")],
        include_deleted: IncludeDeleted = False,
        as_of: AsOf = None,
        as_of_version: AsOfVersion = None,
    ) -> node | None:  # type: ignore[valid-type]
        if len(id) > MAX_KEY_LENGTH:
            raise InputError(f"id must be at most {MAX_KEY_LENGTH} characters, got {len(id)}")
        context = info.context
        index = context.view.indexes.get(identity.table_name)
        if as_of is None and as_of_version is None and index is not None:
            row = index.get(id)  # in memory: no query, no thread
        elif as_of is None and as_of_version is None:
            # Through the loader, several aliased lookups in one request cost one query.
            row = await context.rows(identity).load(id)
        else:
            view = await context.view_at(identity, as_of_version, as_of)
            found = await context.read(reads.by_keys, view, identity, [id])
            row = found[0] if found else None
        if row is None or not reads.visible(identity, row, include_deleted=include_deleted):
            return None
        context.touched.append(row[key])
        return entity.build(row, context.access)

    async def page(
        info: strawberry.Info,
        where: Annotated[
            Where | None,  # type: ignore[valid-type]
            strawberry.argument(description="Only rows matching these conditions."),
        ] = None,
        order_by: Annotated[
            list[OrderBy] | None,  # type: ignore[valid-type]
            strawberry.argument(description=f"Sort order; ties and the default go by {key}."),
        ] = None,
        first: Annotated[
            int | None,
            strawberry.argument(
                description=f"Page size from the start or after a cursor, 0 to {MAX_PAGE_SIZE}"
                f" (default {DEFAULT_PAGE_SIZE})."
            ),
        ] = None,
        after: Annotated[
            str | None,
            strawberry.argument(description="Cursor after which the page starts (an endCursor)."),
        ] = None,
        last: Annotated[
            int | None,
            strawberry.argument(description="Page size from the end or before a cursor."),
        ] = None,
        before: Annotated[
            str | None,
            strawberry.argument(description="Cursor before which the page ends (a startCursor)."),
        ] = None,
        limit: Annotated[
            int | None,
            strawberry.argument(description="Rows to return, for tools that page by offset."),
        ] = None,
        offset: Annotated[
            int | None,
            strawberry.argument(description="Rows to skip before limit."),
        ] = None,
        include_deleted: IncludeDeleted = False,
        as_of: AsOf = None,
        as_of_version: AsOfVersion = None,
    ) -> EntityConnection:
        context = info.context
        found = await load_page(
            context,
            where=where,
            order_by=order_by,
            first=first,
            after=after,
            last=last,
            before=before,
            limit=limit,
            offset=offset,
            include_deleted=include_deleted,
            as_of=as_of,
            as_of_version=as_of_version,
        )
        context.touched.extend(wide.column_of(found.rows, key))
        edges = [
            Edge(cursor=cursor, node=entity.build(row, context.access))
            for row, cursor in zip(found.rows, found.cursors, strict=True)
        ]
        return EntityConnection(
            edges=edges, page_info=found.page_info, selection=found.selection, view=found.view
        )

    async def load_page(context: RequestContext, **arguments: Any) -> Page:
        # `arguments`: the connection field's, by their Python names (as `page` receives them).
        sees = context.access.sees
        selection = reads.Selection(
            identity,
            compile_where(arguments["where"], inputs, sees),
            compile_order(arguments["order_by"], inputs, key, sees),
            arguments["include_deleted"],
        )
        paging = ("first", "after", "last", "before", "limit", "offset")
        win = window(name, selection.order, **{a: arguments[a] for a in paging})
        view = await context.view_at(identity, arguments["as_of_version"], arguments["as_of"])
        rows = await context.read(
            reads.page,
            view,
            selection,
            after=win.after,
            before=win.before,
            limit=win.limit + 1,
            offset=win.offset,
            backwards=win.backwards,
        )
        more = len(rows) > win.limit
        if more:
            rows = rows[1:] if win.backwards else rows[: win.limit]
        cursors = Cursors(name, selection.order, rows)
        page_info = PageInfo(
            has_next_page=win.before is not None if win.backwards else more,
            has_previous_page=more if win.backwards else (win.after is not None or win.offset > 0),
            start_cursor=cursors[0] if cursors else None,
            end_cursor=cursors[-1] if cursors else None,
        )
        return Page(rows, cursors, page_info, selection, view)

    one.__name__, page.__name__ = lookup_name(identity), to_camel_case(plural(name))
    connection = strawberry.field(
        resolver=page,
        description=f"Every {name}, a page at a time: filter with where, sort with orderBy,"
        " page with cursors (first/after, last/before) or limit/offset.",
    )
    fields = {
        one.__name__: strawberry.field(
            resolver=one, description=f"One {name} by id; null when there is none."
        ),
        page.__name__: connection,
    }
    return fields, Connection(entity, connection, load_page)
