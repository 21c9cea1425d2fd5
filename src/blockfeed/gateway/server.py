"""Run the gateway app under uvicorn inside an asyncio program we control.

``blockfeed serve`` and ``blockfeed demo`` own their signals and their other tasks (the demo also
runs a devnode), so uvicorn runs as one task among several: we bind the socket ourselves (a busy
port is a plain ``OSError`` before anything starts, and port 0 works), and uvicorn's own signal
capture is turned off in favour of the caller's.

Bounds (see ``limits.py`` and ``protocol.py``): request heads are limited (431), open
connections stop below the open-file limit (uvicorn answers 503 past ``limit_concurrency``), and
accept() failures are logged once per interval instead of once per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from blockfeed.gateway.limits import (
    ThrottledMessages,
    connection_limit,
    install_accept_error_throttle,
)
from blockfeed.gateway.protocol import BoundedHttpToolsProtocol

CONCURRENCY_WARNING = "Exceeded concurrency limit."
"""uvicorn's warning for each connection refused with 503 at ``limit_concurrency``."""
GC_THRESHOLDS = (50_000, 20, 10)
"""Young-generation threshold raised from 700: a block fanned out to 10,000 SSE clients allocates
tens of thousands of short-lived objects; with the default, the collector runs mid-fan-out,
promotes in-flight objects and soon triggers full collections that pause every client for up
to a second. (bench/fanout.py: 10,000-client p99 ~1.5 s -> ~0.8 s on 2 cores.)"""
DEFAULT_STARTUP_TIMEOUT_S = 30.0
DEFAULT_SHUTDOWN_TIMEOUT_S = 10.0
SHUTDOWN_GRACE_S = 2
"""Open SSE streams never finish by themselves; uvicorn cancels them after this many seconds."""


def tune_gc_for_fanout() -> None:
    """Process-wide GC thresholds for a gateway process (``serve``, ``demo``); see above."""
    gc.set_threshold(*GC_THRESHOLDS)


def freeze_startup_objects() -> None:
    """Move everything allocated so far (modules, app, routes) out of the collector's sight.

    Full collections then walk only what the running service allocates: with 2,000 streams a
    gen-2 pass took 134 ms, a stall every client and ``/health`` feel (bench/hardening_gateway.py).
    """
    gc.collect()
    gc.freeze()


class GatewayStartError(RuntimeError):
    """The app could not start (its lifespan failed; uvicorn has logged why)."""


class _CallerOwnsSignals(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True, slots=True)
class RunningServer:
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket; raises ``OSError`` (e.g. address in use) with a clear errno."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


@contextlib.asynccontextmanager
async def running_server(
    app: Any,
    *,
    host: str,
    port: int,
    log_level: str = "warning",
    startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
    shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S,
    before_shutdown: Callable[[], Any] | None = None,
    limit_concurrency: int | None = None,
) -> AsyncIterator[RunningServer]:
    """Serve ``app`` until the block exits; yields where it listens (the real port for 0).

    ``before_shutdown`` runs first on exit: the gateway passes ``hub.close_all`` so open event
    streams end at once instead of holding the shutdown for the grace period.
    ``limit_concurrency`` defaults to what the open-file limit allows (``connection_limit``).
    """
    install_accept_error_throttle(asyncio.get_running_loop())
    noise = ThrottledMessages((CONCURRENCY_WARNING,))
    logging.getLogger("uvicorn.error").addFilter(noise)
    sock = bind(host, port)
    config = uvicorn.Config(
        app,
        log_level=log_level,
        log_config=None,  # the caller configured logging; uvicorn's loggers propagate to it
        lifespan="on",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        access_log=False,
        http=BoundedHttpToolsProtocol,
        limit_concurrency=limit_concurrency or connection_limit(),
    )
    server = _CallerOwnsSignals(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="blockfeed-gateway")
    try:
        async with asyncio.timeout(startup_timeout_s):
            while not server.started:
                if task.done():
                    break
                await asyncio.sleep(0.02)
        if not server.started:
            with contextlib.suppress(Exception, SystemExit):  # uvicorn exits on lifespan failure
                task.result()
            raise GatewayStartError("the gateway failed to start (see the log above)")
        yield RunningServer(host=host, port=sock.getsockname()[1])
    finally:
        if before_shutdown is not None:
            before_shutdown()
        server.should_exit = True
        with contextlib.suppress(Exception, SystemExit):
            await asyncio.wait_for(task, shutdown_timeout_s)
        sock.close()
        logging.getLogger("uvicorn.error").removeFilter(noise)
        logging.getLogger("uvicorn.error").removeFilter(noise)
