"""The ASGI app serving /graphql (with GraphiQL) over a lake snapshot, and the uvicorn runner."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
import sys
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import asynccontextmanager, nullcontext
from typing import Any

import orjson
import uvicorn
from cross_web import HTTPException  # what strawberry's ASGI handler raises and catches
from graphql import GraphQLError, get_operation_ast, parse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLRequestData
from strawberry.http.async_base_view import AsyncHTTPRequestAdapter
from strawberry.types import ExecutionResult

from hubspoke.config import Settings
from hubspoke.lake import Lake
from hubspoke.stack import HomeNotFound
from hubspoke_graphql.access import (
    Access,
    ApiKeys,
    create_keys_file,
    key_from_headers,
    load_keys,
    roles,
)
from hubspoke_graphql.audit import AUDIT_TABLE, AuditLog, fields_of
from hubspoke_graphql.context import RequestContext
from hubspoke_graphql.graphiql import ROUTE, offline_page
from hubspoke_graphql.graphiql import fetch as fetch_graphiql
from hubspoke_graphql.limits import (
    ANSWER_CACHE_SIZE,
    MAX_REQUEST_BYTES,
    REQUEST_TIMEOUT_S,
    variables_refusal,
)
from hubspoke_graphql.lookups import Lookups
from hubspoke_graphql.schema import LakeSchema, build_schema
from hubspoke_graphql.snapshot import Snapshot, View
from hubspoke_graphql.timetravel import TimeTravel
from hubspoke_graphql.workers import parent_outbox, run_workers
from lake_schema import Catalog, load_catalog

log = logging.getLogger(__name__)


COMPILED = "compiled"
"""First element of the key of a compiled answer, kept as its JSON body."""


class LakeGraphQL(GraphQL[RequestContext, None]):
    """Strawberry's ASGI handler over the snapshot's current view, with a time limit per request."""

    def __init__(
        self,
        schema: LakeSchema,
        snapshot: Snapshot,
        time_travel: TimeTravel,
        audit: AuditLog,
        ide_html: str | None,
        read_threads: Executor,
    ) -> None:
        super().__init__(schema, graphql_ide="graphiql" if ide_html else None)
        self.ide_html = ide_html or ""
        self.snapshot = snapshot
        self.time_travel = time_travel
        self.audit = audit
        self.read_threads = read_threads
        """Threads running the requests' lake queries (see Settings.api_read_threads)."""
        self.answers: OrderedDict[tuple[Any, ...], tuple[Any, ...]] = OrderedDict()
        """Answers given on recent views: a view never changes, so neither do they. A compiled
        answer is kept as its JSON body (one untracked bytes object, where its dicts would add
        hundreds of objects for every full garbage collection to walk: 20-70 ms pauses under
        load); the executor's as its ExecutionResult, under a key of its own."""
        self.lookups = Lookups(schema)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A query compiled before is answered here, before strawberry reads the request (its
        HTTP handling costs more than a lookup's answer); everything else goes through strawberry."""
        if scope["type"] != "http" or scope["method"] != "POST":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope, receive)  # keeps the body it read for strawberry
        response = await self._compiled(request)
        if response is None:
            try:  # what strawberry's __call__ does around `run`
                response = await self.run(request)
            except HTTPException as exc:
                response = PlainTextResponse(exc.reason, status_code=exc.status_code)
        await response(scope, receive, send)

    async def _compiled(self, request: Request) -> Response | None:
        """The answer of a POSTed query whose text is compiled (see lookups), else None."""
        content_type = request.headers.get("content-type", "")
        if content_type.partition(";")[0].strip().lower() != "application/json":
            return None
        try:
            data = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict) or data.get("extensions") is not None:
            return None
        query, name, variables = data.get("query"), data.get("operationName"), data.get("variables")
        if not isinstance(name, str | None) or not isinstance(variables, dict | None):
            return None
        if variables_refusal(variables) is not None:
            return None  # strawberry's parse_http_body refuses it
        plan = self.lookups.plan(query, name) if isinstance(query, str) else None
        if plan is None:
            return None
        view = self.snapshot.fresh() or await asyncio.to_thread(self.snapshot.current)
        context = self._context(view, request.state.access)
        # Pages are kept like the executor's answers; a lookup is cheaper to answer again.
        pages = plan.pages
        asked = _answer_key(view, context.access, query, name, variables) if pages else None
        if asked is not None and (kept := self._kept_body(asked, context.access)) is not None:
            body = kept
        else:
            # Lookups by id answer from memory at once: only pages wait for a read thread.
            limit = asyncio.timeout(REQUEST_TIMEOUT_S) if pages else nullcontext()
            try:
                async with limit:
                    found = await self.lookups.answer(plan, variables, context, name)
            except TimeoutError:
                # Answered here: run again by the executor, the query would take a second read
                # thread while the first still runs.
                self.audit.record(
                    role=context.access.role,
                    operation=plan.operation_name(name),
                    fields=plan.fields,
                    outcome="error",
                )
                return Response(
                    orjson.dumps({"data": None, "errors": [_timed_out().formatted]}),
                    media_type="application/json",
                )
            if found is None:
                return None
            self.audit.record(
                role=context.access.role,
                operation=found.operation,
                fields=found.fields,
                customer_ids=found.ids,
                customer_count=len(found.ids),
                outcome="ok",
            )
            body = orjson.dumps({"data": found.data})
            if asked is not None:
                self._keep((COMPILED, *asked), body, found.operation, found.fields, found.ids, 0)
        return Response(body, media_type="application/json")

    @property
    def graphql_ide_html(self) -> str:
        """GraphiQL loading its files from this API (see `graphiql.py`)."""
        return self.ide_html

    async def get_context(
        self,
        request: Request | WebSocket,
        response: Response | WebSocket,
    ) -> RequestContext:
        """A context over the current view; checking the lake for changes runs in a thread."""
        view = self.snapshot.fresh() or await asyncio.to_thread(self.snapshot.current)
        return self._context(view, request.state.access)

    def _context(self, view: View, access: Access) -> RequestContext:
        """A request's context over `view`, its queries on this process's read threads."""
        return RequestContext(view, access, self.time_travel, self.audit, self.read_threads)

    async def execute_operation(
        self,
        request: Any,
        request_adapter: Any,
        request_data: Any,
        context: RequestContext,
        root_value: Any,
        sub_response: Any,
    ) -> Any:
        """The operation's answer: from the answers of this view when asked before, else executed
        within the time limit (and compiled for the next time when it is plain, see lookups)."""
        single = _single(request_data)
        key = (
            _answer_key(
                context.view,
                context.access,
                single.query,
                single.operation_name,
                single.variables,
            )
            if single is not None
            else None
        )
        if key is not None and (kept := self._kept(key, context.access)) is not None:
            return kept
        try:
            # asyncio.timeout, unlike wait_for, runs the operation without a task of its own.
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                result = await super().execute_operation(
                    request, request_adapter, request_data, context, root_value, sub_response
                )
        except TimeoutError:
            # Cancelled, the audit extension records nothing: the record is made here.
            operation, fields = _operation_of(self.schema, request_data)
            self.audit.record(
                role=context.access.role, operation=operation, fields=fields, outcome="error"
            )
            return ExecutionResult(data=None, errors=[_timed_out()])
        if single is not None and isinstance(result, ExecutionResult) and not result.errors:
            self.lookups.learn(single.query, single.operation_name)
        if key is not None and isinstance(result, ExecutionResult) and not result.errors:
            ids = list(dict.fromkeys(context.touched))
            self._keep(key, result, context.operation, context.fields, ids, context.counted)
        return result

    def _kept_body(self, asked: tuple[Any, ...], access: Access) -> bytes | None:
        """The JSON body of an answer kept for this question: the compiled path's, else the
        executor's (which answers a query text first), audited as a new read; else None."""
        body = self._kept((COMPILED, *asked), access)
        if body is not None:
            return body
        kept = self._kept(asked, access)
        # Kept only without errors; the schema adds no response extensions.
        return None if kept is None else orjson.dumps({"data": kept.data})

    def _kept(self, key: tuple[Any, ...], access: Access) -> Any:
        """An answer kept for this question on this view (an ExecutionResult, or for a key
        starting with COMPILED a JSON body), audited as a new read; else None."""
        hit = self.answers.get(key)
        if hit is None:
            return None
        self.answers.move_to_end(key)
        result, operation, fields, ids, counted = hit
        self.audit.record(
            role=access.role,
            operation=operation,
            fields=fields,
            customer_ids=ids,
            customer_count=max(len(ids), counted),
            outcome="ok",
        )
        return result

    def _keep(
        self,
        key: tuple[Any, ...],
        result: ExecutionResult | bytes,
        operation: str | None,
        fields: list[str],
        ids: list[str],
        counted: int,
    ) -> None:
        """Keep an answer for the same question on the same view (the oldest kept goes)."""
        self.answers[key] = (result, operation, fields, ids, counted)
        while len(self.answers) > ANSWER_CACHE_SIZE:
            self.answers.popitem(last=False)

    def encode_json(self, data: object) -> bytes:  # type: ignore[override]
        """orjson: several times faster than json for the pages the API returns."""
        return orjson.dumps(data)

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        """Strawberry's, refusing (400) variables too large to coerce (see MAX_VARIABLE_VALUES)."""
        parsed = await super().parse_http_body(request)
        for data in parsed if isinstance(parsed, list) else [parsed]:
            if (refusal := variables_refusal(data.variables)) is not None:
                raise HTTPException(400, refusal)
        return parsed

    def decode_json(self, data: str | bytes) -> object:
        """orjson: a body nested deeper than 1024 levels is a JSONDecodeError, which strawberry
        answers with 400 (json's RecursionError was a 500)."""
        return orjson.loads(data)


def _timed_out() -> GraphQLError:
    """The error of a request stopped at the time limit."""
    return GraphQLError(
        f"the request took longer than {REQUEST_TIMEOUT_S:g} s and was stopped;"
        " ask for fewer rows or a narrower where",
        extensions={"code": "TIMEOUT"},
    )


def _operation_of(schema: LakeSchema, request_data: Any) -> tuple[str | None, list[str]]:
    """The name and the selected `Type.field`s of a request's operation (strawberry has parsed
    its text already); None and [] for a batch."""
    if isinstance(request_data, list) or not isinstance(request_data.query, str):
        return None, []
    document = parse(request_data.query)
    operation = get_operation_ast(document, request_data.operation_name)
    name = operation.name.value if operation is not None and operation.name else None
    return name or request_data.operation_name, fields_of(
        schema._schema, request_data.query, document
    )


def _single(request_data: Any) -> Any:
    """The request's one operation when it has a query text and no protocol extensions."""
    if isinstance(request_data, list) or not isinstance(request_data.query, str):
        return None
    return None if request_data.extensions else request_data


def _answer_key(
    view: View, access: Access, query: str, operation_name: str | None, variables: Any
) -> tuple[Any, ...] | None:
    """What decides an answer: the view, the role, the query and its variables."""
    try:
        encoded = orjson.dumps(variables, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return None
    return (view.serial, access.role, query, operation_name, encoded)


class KeyGate:
    """Lets a request through only with a valid API key, which decides its role."""

    def __init__(
        self, app: LakeGraphQL, keys: ApiKeys, introspection_roles: set[str], ide: bool
    ) -> None:
        self.app = app
        self.keys = keys
        self.introspection_roles = introspection_roles
        self.ide = ide
        self.access: dict[str, Access] = {}
        """One Access per role, shared by its requests: its masks are worked out once."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # no subscriptions: the lake is read by queries
            await send({"type": "websocket.close", "code": 1008})
            return
        request = Request(scope)
        if self._is_ide_page(request):
            # The page holds no data, and its queries send a key like any other client.
            scope.setdefault("state", {})["access"] = Access("none", b"", introspection=False)
            await self.app(scope, receive, send)
            return
        role = self.keys.role_of(key_from_headers(request.headers))
        if role is None:
            self.app.audit.record(role="none", operation=None, outcome="refused")
            await _unauthorized(request)(scope, receive, send)
            return
        access = self.access.get(role)
        if access is None:
            access = self.access[role] = Access(
                role, self.keys.mask_secret, role in self.introspection_roles
            )
        scope.setdefault("state", {})["access"] = access
        length = request.headers.get("content-length", "0")
        if not length.isdigit() or int(length) > MAX_REQUEST_BYTES:
            await self._too_large(access, "request body", length)(scope, receive, send)
            return
        if (size := len(scope["query_string"])) > MAX_REQUEST_BYTES:  # a GET's query is there
            await self._too_large(access, "query string", str(size))(scope, receive, send)
            return
        try:
            await self.app(scope, _bounded(receive), send)
        except BodyTooLarge:  # a chunked body, counted as it came
            body = f"over {MAX_REQUEST_BYTES}"
            await self._too_large(access, "request body", body)(scope, receive, send)

    def _too_large(self, access: Access, what: str, size: str) -> Response:
        self.app.audit.record(role=access.role, operation=None, outcome="refused")
        message = f"the {what} is {size} bytes; at most {MAX_REQUEST_BYTES} are read"
        body = {
            "data": None,
            "errors": [{"message": message, "extensions": {"code": "PAYLOAD_TOO_LARGE"}}],
        }
        return Response(orjson.dumps(body), status_code=413, media_type="application/json")

    def _is_ide_page(self, request: Request) -> bool:
        return (
            self.ide
            and request.method == "GET"
            and "query" not in request.query_params
            and "text/html" in request.headers.get("accept", "")
        )


class BodyTooLarge(Exception):
    """A request body grew past MAX_REQUEST_BYTES while it was read."""


def _bounded(receive: Receive) -> Receive:
    """`receive`, raising BodyTooLarge once the body read passes MAX_REQUEST_BYTES."""
    read = 0

    async def bounded() -> Message:
        nonlocal read
        message = await receive()
        if message["type"] == "http.request":
            read += len(message.get("body", b""))
            if read > MAX_REQUEST_BYTES:
                raise BodyTooLarge
        return message

    return bounded


def _unauthorized(request: Request) -> Response:
    sent = key_from_headers(request.headers) is not None
    message = (
        "the API key is not valid"
        if sent
        else "an API key is required: send Authorization: Bearer KEY or X-API-Key: KEY"
    )
    body = {
        "data": None,
        "errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}],
    }
    return Response(
        orjson.dumps(body),
        status_code=401,
        media_type="application/json",
        headers={"WWW-Authenticate": 'Bearer realm="hubspoke"'},
    )


def create_app(settings: Settings, catalog: Catalog | None = None) -> Starlette:
    """The API of the lake under `settings.home`: GraphQL and GraphiQL at /graphql."""
    root = settings.home / "lake"
    if not root.is_dir():
        raise HomeNotFound(
            f"no Hubspoke lake at {root.resolve()}; create one with"
            f" `hubspoke demo --no-serve --home {settings.home}` or `hubspoke init`"
        )
    catalog = catalog or load_catalog()
    keys_file = settings.keys_file
    if not keys_file.exists():
        create_keys_file(keys_file)
        log.warning("created API keys (admin, analyst) in %s", keys_file.resolve())
    keys = load_keys(keys_file, roles(catalog))
    contracts = [c for i in catalog.identities() for c in [i, *catalog.extensions(i.entity)]]
    lake = Lake(root, catalog)
    snapshot = Snapshot(
        lake,
        contracts,
        query_threads=settings.api_query_threads,
        read_threads=settings.api_read_threads,
    )
    time_travel = TimeTravel(lake, snapshot.query_hooks, read_threads=settings.api_read_threads)
    audit_table = lake.table(AUDIT_TABLE)
    audit_table.create_if_missing()
    # In a worker of several, the parent writes the audit log (see workers.py).
    audit = AuditLog(audit_table, outbox=parent_outbox())
    introspection = set(settings.introspection_roles)
    ide_html = offline_page(settings.graphiql_assets) if introspection else None
    read_threads = ThreadPoolExecutor(settings.api_read_threads, thread_name_prefix="lake-read")
    graphql_app = LakeGraphQL(
        build_schema(catalog), snapshot, time_travel, audit, ide_html, read_threads
    )

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(snapshot.current)  # load before the first request
        # What is loaded now lives as long as the process: out of the collector's sight, a
        # full collection no longer walks it (tens of ms that the requests meanwhile waited).
        gc.freeze()
        stop = threading.Event()
        follower = threading.Thread(target=snapshot.follow, args=(stop,), daemon=True)
        follower.start()
        try:
            yield
        finally:
            stop.set()
            follower.join()
            read_threads.shutdown(wait=False)
            audit.close()

    app = Starlette(
        routes=[
            Route("/graphql", KeyGate(graphql_app, keys, introspection, bool(introspection))),
            Mount(ROUTE, StaticFiles(directory=settings.graphiql_assets, check_dir=False)),
            Route("/", lambda _: RedirectResponse("/graphql")),
        ],
        lifespan=lifespan,
    )
    app.state.snapshot = snapshot
    app.state.audit = audit
    app.state.read_threads = read_threads
    app.state.keys_file = keys_file
    return app


def app_from_env() -> Starlette:
    """The app of the home the environment names (the factory each uvicorn worker calls)."""
    settings = Settings.from_env().recorded()
    share_the_gil(settings)
    return create_app(settings)


def share_the_gil(settings: Settings) -> None:
    """Make this serving process's threads hand the GIL over sooner (see
    Settings.api_switch_interval_ms): a read thread's query then waits less for the event loop."""
    sys.setswitchinterval(settings.api_switch_interval_ms / 1000)


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Serve the API with uvicorn until interrupted; several workers each hold a snapshot and
    serve the connections the parent hands them (see `workers.py`).

    GraphiQL's files are fetched on first use, so the page works without a CDN.
    """
    try:
        fetch_graphiql(settings.graphiql_assets)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        log.warning("GraphiQL will load its files from unpkg: %s", exc)
    if workers == 1:
        share_the_gil(settings)
        uvicorn.run(
            create_app(settings), host=host, port=port, log_level="warning", access_log=False
        )
        return
    # Built here to fail with a clear error rather than in every worker; its audit log writes
    # the records the workers hand over.
    audit = create_app(settings).state.audit
    os.environ["HUBSPOKE_HOME"] = str(settings.home.resolve())
    try:
        run_workers("hubspoke_graphql.app:app_from_env", host, port, workers, audit.take)
    finally:
        audit.close()
