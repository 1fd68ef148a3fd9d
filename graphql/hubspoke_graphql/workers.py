"""Several processes serving the API, each listening on the port with a socket of its own.

uvicorn's workers share one listening socket, and the worker that wakes first accepts every
pending connection: 16 keep-alive clients opened at once landed 16/0, 12/4 or 9/7 on two
workers, so one core queued requests while the other idled. With SO_REUSEPORT each worker
has its own socket and the kernel spreads new connections over them by address hash (8/8 in
most trials). Gunicorn's `--reuse-port` does the same.
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
from multiprocessing.connection import wait
from types import FrameType

import uvicorn

BACKLOG = 2048


def shared_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port that the other workers may bind too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _worker(factory: str, host: str, port: int) -> None:
    sock = shared_socket(host, port)
    sock.listen(BACKLOG)
    config = uvicorn.Config(factory, factory=True, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def run_workers(factory: str, host: str, port: int, workers: int) -> None:
    """Serve the ASGI app `factory` ("module:function") from `workers` processes until
    interrupted; when one worker dies the others are stopped and the error is raised."""
    # Bound (not listening: it accepts nothing) so that a port in use fails here, clearly.
    shared_socket(host, port).close()
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker, args=(factory, host, port), name=f"api-worker-{n}")
        for n in range(workers)
    ]
    for process in processes:
        process.start()

    def stop(signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests it is serving

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        wait([p.sentinel for p in processes])
    finally:
        stop()
        for process in processes:
            process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    failed = [p for p in processes if p.exitcode not in (0, -signal.SIGTERM)]
    if failed:
        raise RuntimeError(f"{failed[0].name} exited with code {failed[0].exitcode}")
