"""The Query type and the schema: for every entity, `<entity>(id)` and a `<entities>` connection."""

# No `from __future__ import annotations`: resolver annotations name classes made at run time.
import asyncio
import types
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError
from strawberry.types import ExecutionContext
from strawberry.types.field import StrawberryField
from strawberry.utils.str_converters import to_camel_case

from hubspoke_graphql import reads
from hubspoke_graphql.limits import (
    DEFAULT_PAGE_SIZE,
    MAX_KEY_LENGTH,
    MAX_PAGE_SIZE,
    InputError,
    is_client_error,
    schema_extensions,
)
from hubspoke_graphql.pagination import (
    Connection,
    Edge,
    PageInfo,
    check_first,
    decode_cursor,
    encode_cursor,
)
from hubspoke_graphql.types import ObjectType, entity_type, extension_type
from lake_schema import Catalog, load_catalog


def build_schema(catalog: Catalog | None = None) -> strawberry.Schema:
    """The API of every identity contract in `catalog` (the packaged contracts by default)."""
    catalog = catalog or load_catalog()
    fields: dict[str, StrawberryField] = {}
    for identity in catalog.identities():
        entity = entity_type(
            identity, [extension_type(c) for c in catalog.extensions(identity.entity)]
        )
        fields |= entity_queries(entity)
    namespace: dict[str, Any] = dict(fields)
    query = types.new_class("Query", (), {}, lambda ns: ns.update(namespace))
    strawberry.type(query, description="Entities of the lake: identity plus domain extensions.")
    return LakeSchema(query=query, extensions=schema_extensions())


class LakeSchema(strawberry.Schema):
    """A strawberry schema that logs only the errors its operators have to look at."""

    def process_errors(
        self,
        errors: list[GraphQLError],
        execution_context: ExecutionContext | None = None,
    ) -> None:
        """Log every error but client errors, which the client already got a clear message for."""
        ours = [e for e in errors if not is_client_error(e)]
        super().process_errors(ours, execution_context)


def plural(word: str) -> str:
    """English plural of an entity name (`customer` -> `customers`, `address` -> `addresses`)."""
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return f"{word}es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return f"{word[:-1]}ies"
    return f"{word}s"


def entity_queries(entity: ObjectType) -> dict[str, StrawberryField]:
    """The two root fields of one entity: one by id, and a page of all of them."""
    identity = entity.contract
    name = identity.entity or identity.table_name
    node = entity.cls
    IncludeDeleted = Annotated[
        bool, strawberry.argument(description="Also return soft-deleted rows.")
    ]

    async def one(
        info: strawberry.Info,
        id: Annotated[strawberry.ID, strawberry.argument(description=f"Id of the {name}.")],
        include_deleted: IncludeDeleted = False,
    ) -> node | None:  # type: ignore[valid-type]
        if len(id) > MAX_KEY_LENGTH:
            raise InputError(f"id must be at most {MAX_KEY_LENGTH} characters, got {len(id)}")
        # Through the loader, several aliased lookups in one request cost one query.
        row = await info.context.rows(identity).load(id)
        if row is None or not reads.visible(identity, row, include_deleted=include_deleted):
            return None
        return entity.build(row)

    async def page(
        info: strawberry.Info,
        first: Annotated[
            int | None, strawberry.argument(description=f"Page size, 0 to {MAX_PAGE_SIZE}.")
        ] = DEFAULT_PAGE_SIZE,
        after: Annotated[
            str | None,
            strawberry.argument(
                description="Cursor after which the page starts (an endCursor of the previous page)."
            ),
        ] = None,
        include_deleted: IncludeDeleted = False,
    ) -> Connection[node]:  # type: ignore[valid-type]
        limit = check_first(DEFAULT_PAGE_SIZE if first is None else first)
        start = None if after is None else decode_cursor(name, after)
        view = info.context.view
        rows = await asyncio.to_thread(
            reads.page,
            view,
            identity,
            after=start,
            limit=limit + 1,
            include_deleted=include_deleted,
        )
        key = reads.key_of(identity)
        edges = [
            Edge(cursor=encode_cursor(name, row[key]), node=entity.build(row))
            for row in rows[:limit]
        ]

        async def counter() -> int:
            return await asyncio.to_thread(
                reads.count, view, identity, include_deleted=include_deleted
            )

        page_info = PageInfo(
            has_next_page=len(rows) > limit, end_cursor=edges[-1].cursor if edges else None
        )
        return Connection(edges=edges, page_info=page_info, counter=counter)

    one.__name__, page.__name__ = to_camel_case(name), to_camel_case(plural(name))
    return {
        one.__name__: strawberry.field(
            resolver=one, description=f"One {name} by id; null when there is none."
        ),
        page.__name__: strawberry.field(
            resolver=page, description=f"Every {name}, a page at a time, in id order."
        ),
    }
