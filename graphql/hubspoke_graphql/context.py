"""What one GraphQL request carries: who asks, the view it reads, and what it touched."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from strawberry.dataloader import DataLoader

from hubspoke_graphql import reads
from hubspoke_graphql.access import Access
from hubspoke_graphql.audit import AuditLog
from hubspoke_graphql.limits import INTERRUPT_REPEAT_S
from hubspoke_graphql.snapshot import Interruptible, View
from hubspoke_graphql.timetravel import TimeTravel
from lake_schema import Contract

Row = dict[str, Any]
T = TypeVar("T")
P = ParamSpec("P")


@dataclass
class RequestContext:
    """Every resolver of a request reads the same view, so one answer is one consistent state."""

    view: View
    access: Access
    time_travel: TimeTravel
    audit: AuditLog | None = None
    read_threads: Executor | None = None
    """The process's threads for lake queries (asyncio's default pool when None)."""
    touched: list[str] = field(default_factory=list)
    """Ids of the entities whose rows the answer holds (for the audit log)."""
    fields: list[str] = field(default_factory=list)
    """Every `Type.field` the operation selects (for the audit log)."""
    operation: str | None = None
    """The operation's name, from the request or the document (for the audit log)."""
    counted: int = 0
    """Rows counted or aggregated without being returned (for the audit log)."""
    loaders: dict[str, DataLoader[str, Row | None]] = field(default_factory=dict)

    def rows(self, identity: Contract) -> DataLoader[str, Row | None]:
        """The request's loader of joined rows by key: several lookups in one request, one query."""
        loader = self.loaders.get(identity.table_name)
        if loader is None:
            loader = self.loaders[identity.table_name] = DataLoader(
                load_fn=lambda keys: self._load(identity, keys)
            )
        return loader

    async def read(self, query: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`query(*args, **kwargs)` on the read threads: a blocking DuckDB query off the loop,
        interrupted if the request is stopped (its time limit) while it runs."""
        read = Interruptible()
        call = functools.partial(read.run, functools.partial(query, *args, **kwargs))
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.read_threads, call)
        except asyncio.CancelledError:
            _interrupt(read, loop)
            raise

    async def view_at(self, identity: Contract, version: int | None, at: datetime | None) -> View:
        """The live view, or the lake as it stood at a version or time."""
        if version is None and at is None:
            return self.view
        return await asyncio.to_thread(self.time_travel.view, identity, version=version, at=at)

    async def _load(self, identity: Contract, keys: Sequence[str]) -> list[Row | None]:
        found = await self.read(reads.by_keys, self.view, identity, keys)
        by_key = {row[reads.key_of(identity)]: row for row in found}
        return [by_key.get(key) for key in keys]


def _interrupt(read: Interruptible, loop: asyncio.AbstractEventLoop) -> None:
    """Interrupt `read`, again every few milliseconds until its query has let go of its cursor
    (an interruption just before the query starts is lost)."""
    if read.interrupt():
        loop.call_later(INTERRUPT_REPEAT_S, _interrupt, read, loop)
