"""The audit trail of the API: one record per request, buffered, appended to `api_audit_log`.

Records hold the role (never the key), the operation name, the fields selected and the ids
of the customers answered about, never a value read. They are appended every FLUSH_INTERVAL_S,
or sooner once FLUSH_RECORDS records or FLUSH_IDS customer ids wait, and on shutdown: one Delta
commit per flush instead of one per request. A record of a page of 100 holds 100 ids, about
9.5 KB in memory: the id bound keeps a burst of pages to ~50 MB.

Each flush adds a file, and a flush costs more the more files the table holds, because writing
opens the table: 20 ms at a few hundred files, 35 ms at 10,000, 100 ms at 50,000 (measured by
appending 500 records). Flushing every second made 86,400 files a day, and before the weekly
compaction a flush would have cost, extrapolating, over a second; every 10 s it is 8,640 a day,
and a daily compaction of this table (`pipelines.maintenance`) folds them into one file.

With several server processes, each worker hands its records to the parent every
FORWARD_INTERVAL_S and the parent alone writes the table. Done in a worker, a flush's CPU was
taken from the requests: by id, 10% of the throughput and a fifth of the p99 latency.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable
from graphql import DocumentNode, GraphQLSchema, TypeInfo, TypeInfoVisitor, Visitor, visit
from strawberry.extensions import SchemaExtension

from hubspoke.lake import Lake, LakeTable
from hubspoke_graphql.limits import CACHE_SIZE, ambiguous_operations
from lake_schema import Contract

AUDIT_TABLE = "api_audit_log"
FLUSH_INTERVAL_S = 10.0
FLUSH_RECORDS = 20_000
FLUSH_IDS = 500_000
FORWARD_INTERVAL_S = 0.1
log = logging.getLogger(__name__)


def reads_of(lake: Lake, customer_id: str) -> list[dict[str, Any]]:
    """Every audited request whose answer held `customer_id`, oldest first."""
    table = lake.table(AUDIT_TABLE)
    if not DeltaTable.is_deltatable(str(table.path)):
        return []
    found = table.read(
        columns=["at", "role", "operation", "fields", "customer_count", "outcome"],
        where=pl.col("customer_ids").list.contains(customer_id),
    )
    return sorted(found.to_pylist(), key=lambda r: r["at"])


class Outbox(Protocol):
    """Where a worker's records go for another process to write (a multiprocessing pipe)."""

    def send(self, obj: Any) -> None:
        """Send one batch of records, written before this returns."""


class AuditLog:
    """Buffers audit records in memory and appends them to the Delta table in the background,
    or hands them to `outbox` when another process writes the table."""

    def __init__(
        self, table: LakeTable, interval: float | None = None, outbox: Outbox | None = None
    ) -> None:
        self.table = table
        self._outbox = outbox
        if interval is None:
            interval = FLUSH_INTERVAL_S if outbox is None else FORWARD_INTERVAL_S
        self._interval = interval
        self._pending = _Pending()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(
        self,
        *,
        role: str,
        operation: str | None,
        outcome: str,
        fields: Sequence[str] = (),
        customer_ids: list[str] | None = None,
        customer_count: int = 0,
    ) -> None:
        """Queue one request's record (cheap: the write happens in the background); a request
        refused or stopped before it answered names no fields and no customers."""
        row = {
            # 128 random bits like uuid4, without uuid4's urandom system call per request.
            "request_id": f"{random.getrandbits(128):032x}",
            "at": datetime.now(UTC),
            "role": role,
            "operation": operation,
            "fields": fields,
            "customer_count": customer_count,
            "customer_ids": [] if customer_ids is None else customer_ids,
            "outcome": outcome,
        }
        self._queue(lambda pending: pending.add(row))

    def take(self, batch: _Pending) -> None:
        """Queue the records another process handed over, in its order."""
        self._queue(lambda pending: pending.extend(batch))

    def _queue(self, add: Callable[[_Pending], None]) -> None:
        if self._thread is None:
            self.start()
        with self._lock:
            add(self._pending)
            full = len(self._pending) >= FLUSH_RECORDS or self._pending.ids >= FLUSH_IDS
        if full:
            self._wake.set()

    def flush(self) -> int:
        """Append every queued record now (or hand them to the outbox); returns how many."""
        with self._flush_lock:
            with self._lock:
                rows, self._pending = self._pending, _Pending()
            if rows:
                try:
                    if self._outbox is not None:
                        self._outbox.send(rows)
                    else:
                        self.table.append(rows.to_arrow(self.table.contract), step="audit")
                except BaseException:
                    with self._lock:  # back in front, in order, for the next flush
                        rows.extend(self._pending)
                        self._pending = rows
                    raise
            return len(rows)

    def pending(self) -> list[dict[str, Any]]:
        """The records queued and not written yet, oldest first."""
        with self._lock:
            return list(self._pending)

    def start(self) -> None:
        """Flush in a background thread until `close`."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="audit-flush", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the background thread and write what is left."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the records stay queued for the next flush
                log.exception("audit flush failed; retrying")


class _Pending:
    """Queued records column by column, so that a flush is a few short Arrow calls.

    Converting thousands of records row by row holds the GIL for several milliseconds, which
    the requests served meanwhile wait for. A request's field list is one cached list shared
    by every request of its query text: each distinct list is kept once, and rows point at it.
    """

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = defaultdict(list)
        self.fields: list[list[str]] = []
        self.ids = 0
        """Customer ids the records hold, all together."""
        self._at: dict[int, int] = {}  # id of a list in `fields` -> its position

    def __len__(self) -> int:
        return len(self.columns["request_id"])

    def __getstate__(self) -> dict[str, Any]:
        # `_at` is keyed by object ids, which mean nothing in the process that unpickles it.
        return {"columns": dict(self.columns), "fields": self.fields, "ids": self.ids}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.columns = defaultdict(list, state["columns"])
        self.fields = state["fields"]
        self.ids = state["ids"]
        self._at = {id(fields): at for at, fields in enumerate(self.fields)}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        names = list(self.columns)
        for values in zip(*self.columns.values(), strict=True):
            row = dict(zip(names, values, strict=True))
            row["fields"] = self.fields[row["fields"]]
            yield row

    def add(self, row: dict[str, Any]) -> None:
        """Queue one record."""
        fields = row["fields"]
        at = self._at.get(id(fields))
        if at is None:
            at = self._at[id(fields)] = len(self.fields)
            self.fields.append(fields)
        for name, value in row.items():
            self.columns[name].append(at if name == "fields" else value)
        self.ids += len(row["customer_ids"])

    def extend(self, later: _Pending) -> None:
        """Queue the records of `later` after these."""
        for row in later:
            self.add(row)

    def to_arrow(self, contract: Contract) -> pa.Table:
        """The records in the contract's schema."""
        schema = contract.arrow_schema()
        arrays = []
        for f in schema:
            if f.name == "fields":
                at = pa.array(self.columns[f.name], pa.int32())
                arrays.append(pa.array(self.fields, f.type).take(at))
            else:
                arrays.append(pa.array(self.columns[f.name], f.type))
        return pa.Table.from_arrays(arrays, schema=schema)


class _Fields(Visitor):
    def __init__(self, type_info: TypeInfo) -> None:
        super().__init__()
        self.type_info = type_info
        self.found: set[str] = set()

    def enter_field(self, node: Any, *_: Any) -> None:
        parent = self.type_info.get_parent_type()
        if parent is not None and not node.name.value.startswith("__"):
            self.found.add(f"{parent.name}.{node.name.value}")


_FIELDS_CACHE: OrderedDict[tuple[int, str], list[str]] = OrderedDict()


def fields_of(schema: GraphQLSchema, query: str, document: DocumentNode) -> list[str]:
    """Every `Type.field` the document selects (cached per query text, like parsing)."""
    cached = _FIELDS_CACHE.get((id(schema), query))
    if cached is None:
        type_info = TypeInfo(schema)
        visitor = _Fields(type_info)
        visit(document, TypeInfoVisitor(type_info, visitor))
        cached = _FIELDS_CACHE[(id(schema), query)] = sorted(visitor.found)
        while len(_FIELDS_CACHE) > CACHE_SIZE:
            _FIELDS_CACHE.popitem(last=False)
    return cached


class Audit(SchemaExtension):
    """Records every operation, executed or refused, in the request's audit log."""

    def on_operation(self) -> Iterator[None]:
        """After the operation: one audit record of who read what about whom."""
        yield
        ctx = self.execution_context
        context = ctx.context
        audit: AuditLog | None = getattr(context, "audit", None)
        if audit is None:
            return
        document = ctx.graphql_document
        fields = (
            fields_of(ctx.schema._schema, ctx.query or "", document) if document is not None else []
        )
        result = ctx.result
        if ctx.pre_execution_errors:
            outcome = "refused"
        elif result is not None and getattr(result, "errors", None):
            outcome = "error"
        else:
            outcome = "ok"
        # A refused ambiguous document ran none of its operations (strawberry names the first).
        ambiguous = outcome == "refused" and ambiguous_operations(ctx)
        operation = None if ambiguous else ctx.operation_name
        context.fields = fields
        context.operation = operation
        ids = list(dict.fromkeys(context.touched))
        audit.record(
            role=context.access.role,
            operation=operation,
            fields=fields,
            customer_ids=ids,
            customer_count=max(len(ids), context.counted),
            outcome=outcome,
        )
