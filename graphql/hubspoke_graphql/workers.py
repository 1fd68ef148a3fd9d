"""Several processes serving the API on one port, each new connection handed to the least busy.

A worker is one core's worth of Python, and a keep-alive client stays on the worker that took
its connection, so how connections split decides how evenly the cores work. uvicorn's workers
share one listening socket, and the worker that wakes first accepts every pending connection: 16
keep-alive clients opened at once landed 16/0 or 12/4 on two workers. SO_REUSEPORT spreads them
by address hash, which is no better than chance: five runs split them 11/5, 10/6, 9/7, 6/10 and
13/3, and the clients of the busier worker waited for up to 13 requests each (page p99 113 ms
against 79 ms at 10/6). Here the parent process accepts every connection and passes it (the
file descriptor, over a Unix socket) to the worker with the fewest open connections, counted
from what it handed out and what the workers report closed: 16 clients split 8/8 every time.

Work that is no request's (writing the audit log) goes back to the parent through
`parent_outbox`, so that it does not share a worker's interpreter with the requests. The parent
then runs at a lower CPU priority (`PARENT_NICENESS`): its bursts (an audit flush is 20-100 ms
of CPU) wait for the workers' requests instead of interrupting them. Measured alternating with
and without, 16 clients on 2 cores, while the audit log flushed every second: by id p99 8.8 ->
7.7 ms; with a flush every 10 s (now) the difference is within the noise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, MutableSequence
from multiprocessing.connection import Connection, wait
from types import FrameType
from typing import Any

import uvicorn

log = logging.getLogger(__name__)

BACKLOG = 2048
ACCEPT_RETRY_S = 0.1
STOP_TIMEOUT_S = 30.0
"""How long a worker may take to finish its requests once told to stop, before it is killed."""
DRAIN_TIMEOUT_S = 10.0
"""How long the parent waits, once the workers are gone, for the messages they sent last."""
PARENT_NICENESS = 10
"""The parent's nice value once its workers have started (they keep the one they had); an
unprivileged process cannot raise it again, so its last flush at stop runs at it too."""

_outbox: Connection | None = None
"""In a worker: the write end of its pipe to the parent process."""


def parent_outbox() -> Connection | None:
    """In a worker of `run_workers`, the pipe whose messages (`send`) the parent hands to its
    `on_message`; None in any other process."""
    return _outbox


def listening_socket(host: str, port: int) -> socket.socket:
    """The API's listening socket; binding fails here, clearly, when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


class _HandedServer(uvicorn.Server):
    """A uvicorn server listening on nothing: it serves the connections its inbox delivers."""

    def __init__(
        self, config: uvicorn.Config, inbox: socket.socket, closed: MutableSequence[int], index: int
    ) -> None:
        super().__init__(config)
        self._inbox = inbox
        self._closed = closed
        self._index = index

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])
        loop = asyncio.get_running_loop()
        counted = self._counted_protocol()
        adopting: set[asyncio.Task[Any]] = set()

        def adopt() -> None:
            try:
                message, fds, _, _ = socket.recv_fds(self._inbox, 1, 64)
            except OSError:
                message, fds = b"", []
            if not message:  # the parent is gone: finish the open requests and stop
                loop.remove_reader(self._inbox.fileno())
                self.should_exit = True
                return
            for fd in fds:
                connection = socket.socket(fileno=fd)
                task = loop.create_task(loop.connect_accepted_socket(counted, connection))
                adopting.add(task)  # the loop holds tasks weakly
                task.add_done_callback(adopting.discard)

        loop.add_reader(self._inbox.fileno(), adopt)

    def _counted_protocol(self) -> Any:
        """uvicorn's HTTP protocol for this server, counting its closed connections."""
        base: Any = self.config.http_protocol_class
        closed, index = self._closed, self._index
        server_state, app_state = self.server_state, self.lifespan.state

        class Counted(base):  # type: ignore[misc,valid-type]
            def connection_lost(self, exc: Exception | None) -> None:
                super().connection_lost(exc)
                closed[index] += 1  # only this worker writes its slot

        return lambda: Counted(config=self.config, server_state=server_state, app_state=app_state)


def _worker(
    factory: str,
    inbox: socket.socket,
    closed: MutableSequence[int],
    index: int,
    outbox: Connection | None,
) -> None:
    global _outbox
    _outbox = outbox  # before the factory builds the app, which asks for it
    config = uvicorn.Config(factory, factory=True, log_level="warning", access_log=False)
    _HandedServer(config, inbox, closed, index).run()


def _hand_out(
    listener: socket.socket,
    outboxes: list[socket.socket],
    closed: MutableSequence[int],
    stopping: threading.Event,
) -> None:
    """Accept connections until stopping, each to the worker with the fewest open."""
    handed = [0] * len(outboxes)
    turn = 0
    while True:
        try:
            connection, _ = listener.accept()
        except OSError as exc:
            if stopping.is_set():
                return
            # Out of file descriptors, say: the pending connections wait in the backlog.
            log.warning("accepting a connection failed (%s); retrying", exc)
            time.sleep(ACCEPT_RETRY_S)
            continue
        with connection:
            open_now = [handed[i] - closed[i] for i in range(len(outboxes))]
            fewest = min(open_now)
            # Among the least busy, in turn, so equal workers alternate.
            chosen = next(
                i for i in (*range(turn, len(outboxes)), *range(turn)) if open_now[i] == fewest
            )
            turn = (chosen + 1) % len(outboxes)
            try:
                socket.send_fds(outboxes[chosen], [b"c"], [connection.fileno()])
            except OSError as exc:  # a worker gone: run_workers sees it and stops the others
                log.warning("handing a connection to worker %d failed (%s)", chosen, exc)
                continue
            handed[chosen] += 1


def _yield_cores() -> None:
    """Lower this process's CPU priority to PARENT_NICENESS, every thread of it (Linux keeps a
    nice value per thread; threads started later inherit their starter's)."""
    tasks = "/proc/self/task"
    threads = [int(t) for t in os.listdir(tasks)] if os.path.isdir(tasks) else [0]
    for thread in threads:
        # A thread that ended meanwhile; its id taken since by another user's thread.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            current = os.getpriority(os.PRIO_PROCESS, thread)
            os.setpriority(os.PRIO_PROCESS, thread, max(current, PARENT_NICENESS))


def _receive(pipes: list[Connection], on_message: Callable[[Any], None]) -> None:
    """Hand every message the workers send to `on_message` until each pipe reaches its end."""
    open_pipes = list(pipes)
    while open_pipes:
        for pipe in wait(open_pipes):
            assert isinstance(pipe, Connection)
            try:
                message = pipe.recv()
            except EOFError:  # the worker is gone, and all it sent was read
                open_pipes.remove(pipe)
                continue
            except Exception:  # a worker killed mid-message: no whole message follows
                log.exception("reading a worker's messages failed; the rest of them are lost")
                open_pipes.remove(pipe)
                continue
            try:
                on_message(message)
            except Exception:  # one message that fails must not stop the others
                log.exception("handling a message from a worker failed")


def run_workers(
    factory: str,
    host: str,
    port: int,
    workers: int,
    on_message: Callable[[Any], None] | None = None,
) -> None:
    """Serve the ASGI app `factory` ("module:function") from `workers` processes until
    interrupted; when one worker dies the others are stopped and the error is raised.

    What a worker sends on `parent_outbox()` is handed to `on_message` in a thread of this
    process, in the order the worker sent it, until the workers are gone. Each worker has a pipe
    of its own, written synchronously: what a worker sent before exiting is read, and one
    killed mid-message loses only its own last message.
    """
    listener = listening_socket(host, port)
    context = multiprocessing.get_context("spawn")
    closed = context.RawArray("q", workers)
    pipes = [context.Pipe(duplex=False) for _ in range(workers)] if on_message else []
    pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(workers)]
    processes = [
        context.Process(
            target=_worker,
            args=(factory, theirs, closed, n, pipes[n][1] if pipes else None),
            name=f"api-worker-{n}",
        )
        for n, (_, theirs) in enumerate(pairs)
    ]
    for process in processes:
        process.start()
    for _, theirs in pairs:
        theirs.close()
    _yield_cores()  # after the workers started: they would inherit it
    receiver = None
    if on_message is not None:
        for _, writer in pipes:
            writer.close()  # the workers hold the write ends: a pipe ends when its worker exits
        receiver = threading.Thread(
            target=_receive,
            args=([reader for reader, _ in pipes], on_message),
            name="api-outbox",
            daemon=True,
        )
        receiver.start()
    outboxes = [ours for ours, _ in pairs]
    stopping = threading.Event()
    dealer = threading.Thread(
        target=_hand_out,
        args=(listener, outboxes, closed, stopping),
        name="api-dealer",
        daemon=True,
    )
    dealer.start()

    def stop(signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        # New connections first: a stopping worker handed one more would wait for it to close.
        if not stopping.is_set():
            stopping.set()
            listener.shutdown(socket.SHUT_RDWR)  # wakes the dealer's accept (close alone does not)
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests it is serving

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # Until a worker exits or the server is told to stop; the workers' grace period below.
        while not wait([p.sentinel for p in processes], timeout=0.5) and not stopping.is_set():
            pass
    finally:
        stop()
        listener.close()
        for process in processes:
            process.join(STOP_TIMEOUT_S)
            if process.is_alive():  # stuck past the grace period: it would hold up the parent
                log.warning("%s did not stop within %s s; killing it", process.name, STOP_TIMEOUT_S)
                process.kill()
                process.join()
        dealer.join(5)
        for handing in outboxes:
            handing.close()
        if receiver is not None:
            receiver.join(DRAIN_TIMEOUT_S)
            if receiver.is_alive():
                log.warning("workers' messages still unread after %s s", DRAIN_TIMEOUT_S)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    failed = [p for p in processes if p.exitcode not in (0, -signal.SIGTERM)]
    if failed:
        raise RuntimeError(f"{failed[0].name} exited with code {failed[0].exitcode}")
