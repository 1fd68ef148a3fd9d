"""A closed-loop HTTP load generator: N keep-alive clients, each sending its next request on reply.

Run in its own process so that measuring does not share the server's interpreter. Written on
raw asyncio streams: an HTTP client library would cost more CPU per request than the servers
measured here.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class Outcome:
    """Latencies (seconds) of the answered requests, failures, and the wall time of the run."""

    latencies: list[float]
    failures: int
    first_failure: str
    seconds: float


async def _client(
    host: str,
    port: int,
    path: str,
    headers: dict[str, str],
    bodies: list[bytes],
    counter: list[int],
    total: int,
    out: Outcome,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    try:
        while counter[0] < total:
            n = counter[0]
            counter[0] += 1
            body = bodies[n % len(bodies)]
            request = (
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"{head}Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            started = time.perf_counter()
            writer.write(request)
            status, payload = await _response(reader)
            out.latencies.append(time.perf_counter() - started)
            if status != 200 or b'"errors"' in payload:
                out.failures += 1
                out.first_failure = out.first_failure or f"{status} {payload[:300]!r}"
    finally:
        writer.close()


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {
        k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)
    }
    if "content-length" in fields:
        return status, await reader.readexactly(int(fields["content-length"]))
    chunks = []
    while True:  # chunked
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return status, b"".join(chunks)
        chunks.append(chunk[:-2])


def drive(
    url: str,
    headers: dict[str, str],
    payloads: list[dict[str, Any]],
    *,
    concurrency: int,
    total: int,
) -> Outcome:
    """Send `total` requests (the payloads in turn) over `concurrency` connections."""
    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    bodies = [json.dumps(p).encode() for p in payloads]
    out = Outcome([], 0, "", 0.0)

    async def run() -> None:
        counter = [0]
        started = time.perf_counter()
        await asyncio.gather(
            *(
                _client(host, int(port), "/" + path, headers, bodies, counter, total, out)
                for _ in range(concurrency)
            )
        )
        out.seconds = time.perf_counter() - started

    asyncio.run(run())
    return out
