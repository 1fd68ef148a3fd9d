"""Every limit and security setting of the GraphQL API, in one place."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import (
    GraphQLError,
    NoSchemaIntrospectionCustomRule,
    OperationDefinitionNode,
    validate,
)
from strawberry.extensions import (
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.types import ExecutionContext

DEFAULT_PAGE_SIZE = 100
"""Rows a connection returns when `first` is not given."""
MAX_PAGE_SIZE = 1000
"""Largest `first` accepted: bounds the rows and the batched keys of one page."""
MAX_FILTER_VALUES = 1000
"""Values one `in` condition accepts."""
MAX_FILTER_TERMS = 1000
"""Conditions and and/or/not nodes one `where` holds at most: variables are not counted by the
token limit, and a where of 100,000 terms took 14 s of one worker."""
MAX_VARIABLE_VALUES = 5000
"""JSON values (objects and lists included) a request's variables hold: graphql-core coerces each
before any resolver runs (a where of 60,000 nodes took 3.8 s to reach the term limit's refusal)."""
MAX_REQUEST_BYTES = 1 << 20
"""Largest request body read (a query at the token limit with a few full `in` lists is ~100 kB)."""
MAX_GROUPS = 1000
"""Groups one aggregate returns at most (the largest first by count)."""
REQUEST_TIMEOUT_S = 10.0
"""Time one request may take; it then ends with a clear error and its DuckDB query is interrupted."""
INTERRUPT_REPEAT_S = 0.005
"""How often a stopped request's query is interrupted again until it has ended."""
ANSWER_CACHE_SIZE = 512
"""Answers kept per process for repeated questions on an unchanged view (dashboards, pages)."""
TIME_TRAVEL_VIEWS = 4
"""Past states of the lake (asOf, asOfVersion) kept loaded at once; the least recently used goes."""
MAX_CURSOR_LENGTH = 512
"""Longer `after` values are refused before they are decoded."""
MAX_KEY_LENGTH = 256
"""Longer ids are refused: real keys are at most 64 characters (see the IdentityEvent contract)."""
MAX_QUERY_DEPTH = 8
"""The deepest real query (customers/edges/node/sales/field) has depth 5."""
MAX_ALIASES = 15
"""Aliases multiply work (15 aliased connections of 1000 rows each at most)."""
MAX_TOKENS = 2000
"""Bounds the parser's work on a query text before validation starts."""
CACHE_SIZE = 256
"""Entries of the parser and validation caches (unbounded caches grow with every new text)."""
REFRESH_INTERVAL_S = 0.1
"""How often at most the snapshot asks the lake whether a table has a new Delta version."""


def variables_refusal(variables: Any) -> str | None:
    """Why a request's decoded variables are refused (more than MAX_VARIABLE_VALUES values), or
    None; counts no further than the limit."""
    pending, seen = [variables], 0
    while pending:
        value = pending.pop()
        seen += 1
        if seen > MAX_VARIABLE_VALUES:
            return (
                f"variables hold more than {MAX_VARIABLE_VALUES} values (objects and lists"
                " included); ask for less in one request"
            )
        if isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return None


class InputError(GraphQLError):
    """A request argument the API cannot use; the message says what is accepted."""

    def __init__(self, message: str) -> None:
        super().__init__(message, extensions={"code": "BAD_USER_INPUT"})


def is_unexpected(error: GraphQLError) -> bool:
    """True for errors raised by our code rather than reported to the client on purpose."""
    # Parse and validation errors carry no original error; InputError and scalar
    # serialisation errors are GraphQLErrors: all of those are meant for the client.
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


def is_client_error(error: GraphQLError) -> bool:
    """True for parse and validation errors and InputError: the client's to fix, not ours."""
    return error.original_error is None or isinstance(error.original_error, InputError)


class IntrospectionPerRole(SchemaExtension):
    """Refuses `__schema` and `__type` to roles whose introspection is switched off."""

    def on_validate(self) -> Iterator[None]:
        """Adds the refusal to the validation errors when the role may not introspect."""
        # Runs after ValidationCache (see schema_extensions) has validated and before strawberry
        # looks at the errors, which it does before the extensions' code after `yield`.
        ctx = self.execution_context
        access = getattr(ctx.context, "access", None)
        if access is not None and not access.introspection and ctx.graphql_document is not None:
            refused = validate(
                ctx.schema._schema, ctx.graphql_document, [NoSchemaIntrospectionCustomRule]
            )
            if refused:
                ctx.pre_execution_errors = [
                    *(ctx.pre_execution_errors or []),
                    GraphQLError(
                        f"introspection is switched off for role {access.role!r}"
                        " (HUBSPOKE_INTROSPECTION_ROLES)",
                        extensions={"code": "FORBIDDEN"},
                    ),
                ]
        yield


_NOT_KNOWN = object()


def ambiguous_operations(ctx: ExecutionContext) -> list[str]:
    """The operations of a document that holds several and was sent without `operationName`
    (the spec's GetOperation refuses it), else []."""
    # strawberry names the first operation when none was asked for: the asked name is its own.
    # Should a strawberry release rename it, nothing is ambiguous (and the test fails).
    asked = getattr(ctx, "_provided_operation_name", _NOT_KNOWN)
    document = ctx.graphql_document
    if document is None or asked is not None:
        return []
    names = [
        d.name.value if d.name else "(anonymous)"
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode)
    ]
    return names if len(names) > 1 else []


class OneOperationOrItsName(SchemaExtension):
    """Refuses a document of several operations sent without `operationName`, as the GraphQL
    spec asks (GetOperation): strawberry would run the first one."""

    def on_validate(self) -> Iterator[None]:
        """Adds the refusal to the validation errors when the operation to run is ambiguous."""
        ctx = self.execution_context
        if names := ambiguous_operations(ctx):
            ctx.pre_execution_errors = [
                *(ctx.pre_execution_errors or []),
                GraphQLError(
                    f"the document holds {len(names)} operations ({', '.join(names)}):"
                    " name the one to run with operationName",
                    extensions={"code": "BAD_USER_INPUT"},
                ),
            ]
        yield


def schema_extensions() -> list[SchemaExtension]:
    """The strawberry extensions that enforce the limits above, and the audit trail."""
    from hubspoke_graphql.audit import Audit  # the audit reads the limits too

    return [
        Audit(),
        MaxTokensLimiter(max_token_count=MAX_TOKENS),
        ParserCache(maxsize=CACHE_SIZE),
        ValidationCache(maxsize=CACHE_SIZE),
        QueryDepthLimiter(max_depth=MAX_QUERY_DEPTH),
        MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
        IntrospectionPerRole(),
        OneOperationOrItsName(),
        MaskErrors(should_mask_error=is_unexpected),
    ]
