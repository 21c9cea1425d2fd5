"""Resource bounds of the gateway: descriptors, replay work per moment, repeated log lines.

Everything here is small and pure enough to drive with a fake clock:

- the SSE client cap and the connection cap follow the process's open-file limit, keeping a
  reserve for the store, the feed's own sockets and ordinary requests such as ``/status``;
- :class:`ReplayPacer` shares replay work across clients, so 2,000 clients replaying 400 blocks
  each cannot hold the event loop (a held loop once made the feed falsely report DISCONNECTED);
- :class:`LogThrottle` turns a storm of identical warnings into one line per interval with a count.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import deque
from collections.abc import Awaitable, Callable

DEFAULT_MAX_CLIENTS = 20_000
"""The SSE client cap when the open-file limit is higher than this plus the reserves."""
FD_RESERVE_SSE = 128
"""Descriptors the SSE cap leaves free: store, feed sockets, logs, and other requests."""
FD_RESERVE_CONNECTIONS = 64
"""Descriptors left free below the connection cap (uvicorn answers 503 past it); the gap to
``FD_RESERVE_SSE`` is room for ``/status``, ``/health`` and ``/metrics`` while streams are full."""
MIN_SSE_CLIENTS = 16
UNLIMITED_FDS = 1 << 20
"""What an unlimited (RLIM_INFINITY) open-file limit counts as."""

REPLAY_FRAMES_PER_SLICE = 2048
"""Replayed frames all clients together may prepare and write per slice (about 1.2 MB of joins
and socket writes, a few ms of loop time): about 100,000 frames a second in all."""
REPLAY_SLICE_S = 0.02


def open_file_limit() -> int:
    """The soft RLIMIT_NOFILE of this process (unlimited counts as ``UNLIMITED_FDS``)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return UNLIMITED_FDS
    return int(soft)


def default_max_sse_clients(fd_limit: int | None = None) -> int:
    """SSE clients the process can hold without running out of descriptors (one each)."""
    limit = open_file_limit() if fd_limit is None else fd_limit
    return max(MIN_SSE_CLIENTS, min(DEFAULT_MAX_CLIENTS, limit - FD_RESERVE_SSE))


def connection_limit(fd_limit: int | None = None) -> int:
    """Open HTTP connections uvicorn may hold (``limit_concurrency``); above the SSE cap."""
    limit = open_file_limit() if fd_limit is None else fd_limit
    return max(default_max_sse_clients(limit) + 1, limit - FD_RESERVE_CONNECTIONS)


class ReplayPacer:
    """A budget of replayed frames per time slice, shared by every replaying client.

    Each client asks :meth:`take` before preparing a batch. Within a slice the first
    ``frames_per_slice`` frames go through at once; later callers queue up and one releaser
    lets them go, in order, slice by slice. So one loop iteration never does much more than a
    slice's budget of replay work, however many clients replay, and live blocks, ``/health``
    and the feed's timers keep their turn. Waiting costs nothing per client: only the releaser
    has a timer (2,000 sleeping clients waking every slice cost 40 ms of loop time each time).
    """

    def __init__(
        self,
        *,
        frames_per_slice: int = REPLAY_FRAMES_PER_SLICE,
        slice_s: float = REPLAY_SLICE_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if frames_per_slice < 1 or slice_s <= 0:
            raise ValueError("frames_per_slice must be >= 1 and slice_s > 0")
        self.frames_per_slice = frames_per_slice
        self.slice_s = slice_s
        self._clock = clock
        self._sleep = sleep
        self._slice_end = float("-inf")
        self._used = 0
        self._queue: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._releaser: asyncio.Task[None] | None = None
        self.waits = 0
        """How often a caller had to wait for a later slice (for tests and metrics)."""

    async def take(self, frames: int) -> None:
        """Return when ``frames`` more replayed frames fit in the current slice."""
        if not self._queue and self._grant(frames):
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((frames, waiter))
        self.waits += 1
        if self._releaser is None:
            self._releaser = asyncio.create_task(self._release(), name="blockfeed-replay-pacer")
        await waiter

    def _grant(self, frames: int) -> bool:
        now = self._clock()
        if now >= self._slice_end:
            self._slice_end = now + self.slice_s
            self._used = 0
        if self._used >= self.frames_per_slice:
            return False
        self._used += frames
        return True

    async def _release(self) -> None:
        try:
            while self._queue:
                await self._sleep(max(0.0, self._slice_end - self._clock()))
                while self._queue:
                    frames, waiter = self._queue[0]
                    if waiter.done():  # its client went away while waiting
                        self._queue.popleft()
                        continue
                    if not self._grant(frames):
                        break
                    self._queue.popleft()
                    waiter.set_result(None)
        finally:
            self._releaser = None


class LogThrottle:
    """At most one line per ``interval_s`` for a repeated condition; the next says how many.

    ``hit()`` returns the number of occurrences the caller should report now (this one plus the
    ones swallowed since the last line), or 0 to stay silent.
    """

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last: float | None = None
        self._pending = 0
        self.total = 0

    def hit(self, count: int = 1) -> int:
        self.total += count
        self._pending += count
        now = self._clock()
        if self._last is not None and now - self._last < self.interval_s:
            return 0
        self._last = now
        reported, self._pending = self._pending, 0
        return reported


ACCEPT_ERROR = "socket.accept() out of system resource"
ACCEPT_LOG_INTERVAL_S = 10.0


def install_accept_error_throttle(
    loop: asyncio.AbstractEventLoop,
    *,
    logger: logging.Logger | None = None,
    interval_s: float = ACCEPT_LOG_INTERVAL_S,
) -> LogThrottle:
    """Report accept() failures (EMFILE, ENFILE, ENOBUFS) as one line per interval.

    asyncio's server retries accept() up to ``backlog`` times per wake-up and logs a traceback
    for each failure: thousands of lines a second once descriptors run out, which also slows
    the process further. Other loop errors go to the handler that was there before.
    """
    out = logger or logging.getLogger("blockfeed.gateway")
    throttle = LogThrottle(interval_s, clock=loop.time)
    previous = loop.get_exception_handler()

    def handler(current: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        if context.get("message") == ACCEPT_ERROR:
            count = throttle.hit()
            if count:
                exc = context.get("exception")
                reason = getattr(exc, "strerror", None) or type(exc).__name__
                out.warning(
                    "cannot accept new connections: %s (%d time(s) since the last report); "
                    "raise the open-file limit (ulimit -n) or lower the number of clients",
                    reason,
                    count,
                )
            return
        if previous is not None:
            previous(current, context)
        else:
            current.default_exception_handler(context)

    loop.set_exception_handler(handler)
    return throttle


class ThrottledMessages(logging.Filter):
    """A logging filter: the given messages at most once per interval each, with a count.

    For library warnings we cannot change, such as uvicorn's "Exceeded concurrency limit.",
    logged once per refused connection (hundreds a second while a client swarm is refused).
    """

    def __init__(
        self,
        messages: tuple[str, ...],
        interval_s: float = ACCEPT_LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._throttles = {message: LogThrottle(interval_s, clock) for message in messages}

    def filter(self, record: logging.LogRecord) -> bool:
        throttle = self._throttles.get(str(record.msg))
        if throttle is None:
            return True
        count = throttle.hit()
        if not count:
            return False
        record.msg = f"{record.msg} ({count} time(s) since the last report)"
        return True
