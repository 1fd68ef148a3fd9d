"""The ASGI app serving /graphql (with GraphiQL) over a lake snapshot, and the uvicorn runner."""

from __future__ import annotations

import asyncio
import logging
import subprocess

import strawberry
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from hubspoke.config import Settings
from hubspoke.lake import Lake
from hubspoke.stack import HomeNotFound
from hubspoke_graphql.context import RequestContext
from hubspoke_graphql.graphiql import ROUTE, offline_page
from hubspoke_graphql.graphiql import fetch as fetch_graphiql
from hubspoke_graphql.schema import build_schema
from hubspoke_graphql.snapshot import Snapshot
from lake_schema import Catalog, load_catalog


class LakeGraphQL(GraphQL[RequestContext, None]):
    """Strawberry's ASGI handler, giving every request the snapshot's current view."""

    def __init__(self, schema: strawberry.Schema, snapshot: Snapshot, ide_html: str) -> None:
        super().__init__(schema, graphql_ide="graphiql")
        self.snapshot = snapshot
        self.ide_html = ide_html

    @property
    def graphql_ide_html(self) -> str:
        """GraphiQL loading its files from this API (see `graphiql.py`)."""
        return self.ide_html

    async def get_context(
        self,
        request: Request | WebSocket,
        response: Response | WebSocket,
    ) -> RequestContext:
        """A context over the current view (checking the lake for changes runs in a thread)."""
        return RequestContext(await asyncio.to_thread(self.snapshot.current))


def create_app(settings: Settings, catalog: Catalog | None = None) -> Starlette:
    """The API of the lake under `settings.home`: GraphQL and GraphiQL at /graphql."""
    root = settings.home / "lake"
    if not root.is_dir():
        raise HomeNotFound(
            f"no Hubspoke lake at {root.resolve()}; create one with"
            f" `hubspoke demo --no-serve --home {settings.home}` or `hubspoke init`"
        )
    catalog = catalog or load_catalog()
    contracts = [c for i in catalog.identities() for c in [i, *catalog.extensions(i.entity)]]
    snapshot = Snapshot(Lake(root, catalog), contracts)
    app = Starlette(
        routes=[
            Route(
                "/graphql",
                LakeGraphQL(
                    build_schema(catalog), snapshot, offline_page(settings.graphiql_assets)
                ),
            ),
            Mount(ROUTE, StaticFiles(directory=settings.graphiql_assets, check_dir=False)),
            Route("/", lambda _: RedirectResponse("/graphql")),
        ]
    )
    app.state.snapshot = snapshot
    return app


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the API with uvicorn until interrupted (fetching GraphiQL's files on first use)."""
    try:
        fetch_graphiql(settings.graphiql_assets)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        logging.getLogger(__name__).warning("GraphiQL will load its files from unpkg: %s", exc)
    uvicorn.run(create_app(settings), host=host, port=port)
