"""The ``Sink`` protocol, and :class:`CursorSink`, the machinery every cursor-driven sink shares.

A sink takes every finalized block the feed delivers and puts it somewhere else (a database, a
message bus, an HTTP endpoint). What each one guarantees, and how:

* **Never blocks the feed or the other sinks.** ``publish(block)`` only appends to an in-memory
  outbox and returns; one background task per sink does the I/O. A sink whose target is down
  only grows its own outbox (bounded; oldest dropped first, see below).
* **In order, from its own cursor.** On every (re)connect the sink asks its *target* where it
  is (the newest block number it holds, or a cursor file for targets that cannot tell) and
  sends from the next number on, in increasing order, one batch at a time. A batch is written
  before the next one is sent, so nothing overtakes anything.
* **Idempotent by block number.** Writing a block the target already has is a no-op (a row's
  primary key, a subject's expected sequence, an idempotency key); a *different* hash at a number
  the target already has is refused loudly (:class:`SinkRefused`), never overwritten.
* **Catch-up after its own downtime or the target's.** Blocks the target lacks that are no
  longer in the outbox (the process was restarted; the outbox overflowed) are read back from the
  feed's store window (``store.get_range``), which survives SIGKILL. Only blocks that are in
  neither show up as a gap, counted in ``status()["gaps"]`` and logged.

A new sink subclasses :class:`CursorSink` and writes four small methods: ``_connect`` (returns
the target's cursor), ``_write`` (one batch, atomically or idempotently), ``_ping`` and
``_disconnect``. The Redis publisher predates this class and keeps its own drain loop (it runs a
Lua script that does the idempotence server-side) but implements the same :class:`Sink` protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable
from urllib.parse import urlsplit

from blockfeed.core.backoff import backoff
from blockfeed.errors import BlockfeedError, ConfigError, StoreError
from blockfeed.types import Block
from blockfeed.util.redact import redact_url

logger = logging.getLogger("blockfeed.sinks")

DEFAULT_OUTBOX_LIMIT = 100_000
"""Blocks a sink keeps in memory while its target is away (about 14 days of 12 s blocks)."""
DEFAULT_BATCH_SIZE = 500
DEFAULT_SUBSCRIBER_MAXSIZE = 10_000
DEFAULT_IDLE_PING_S = 5.0
DEFAULT_CLOSE_DRAIN_S = 2.0
DEFAULT_BACKOFF_INITIAL_S = 0.2
DEFAULT_BACKOFF_CAP_S = 10.0

ReconnectDelays = Callable[[], Iterable[float]]
"""A factory of retry delays (seconds) for one outage; called again after each recovery."""


def default_reconnect_delays() -> Iterable[float]:
    """Exponential backoff with full jitter: ``rng() * min(10 s, 0.2 s * 2**(k-1))``."""
    return backoff(initial_s=DEFAULT_BACKOFF_INITIAL_S, cap_s=DEFAULT_BACKOFF_CAP_S)


class SinkError(BlockfeedError):
    """Base of the errors a sink reports in ``status()["last_error"]`` and its log."""


class SinkRefused(SinkError):
    """The target refused a block for a reason that retrying will not fix by itself.

    The typical one: the target already holds a *different* hash at this number (another chain
    is written into it). The sink keeps the block queued, reports the error loudly and retries
    with backoff, so an operator who fixes the target sees it resume without a restart.
    """


@runtime_checkable
class Sink(Protocol):
    """What the feed, the gateway and the CLI use of a sink."""

    kind: str
    """Short name of the target type: ``redis``, ``postgresql``, ``nats``, ``webhook``."""
    url: str
    """The target URL with secrets masked; safe to print."""

    async def start(self) -> None: ...
    def attach(self, feed: Any, *, maxsize: int = DEFAULT_SUBSCRIBER_MAXSIZE) -> Any: ...
    async def publish(self, block: Block) -> None: ...
    async def flush(self, timeout_s: float) -> bool: ...
    async def aclose(self, *, drain_timeout_s: float | None = None) -> None: ...
    def status(self) -> dict[str, Any]: ...


class SinkStore(Protocol):
    """What a sink uses of :class:`blockfeed.store.CheckpointStore`: the recent-block window."""

    def window_bounds(self) -> tuple[int, int] | None: ...
    def get_range(self, start: int, limit: int) -> list[Block]: ...


class _Subscribable(Protocol):
    def subscribe(self, callback: Any, *, name: str, maxsize: int) -> Any: ...


def block_row(block: Block) -> dict[str, Any]:
    """The fields every sink stores for a block (``delivered_at`` and roots when known)."""
    header = block.header
    return {
        "number": block.number,
        "hash": block.hash,
        "parent_hash": block.parent_hash,
        "state_root": "0x" + header.state_root.hex() if header is not None else None,
        "extrinsics_root": "0x" + header.extrinsics_root.hex() if header is not None else None,
        "received_at": block.received_at,
        "delivered_at": block.delivered_at,
    }


class FeedAttachedSink:
    """What every sink does the same way around its own writer task: attach to a feed, wait
    for its outbox to empty, stop taking blocks (and drain) on close, ``async with``.

    A subclass owns ``_subscription``, ``_task``, the ``_empty``/``_closing``/``_wake`` events,
    ``_closed`` and ``_close_drain_s``, and defines ``start`` and ``aclose``; its ``aclose``
    calls :meth:`_stop_taking_blocks` first, then stops its tasks and disconnects.
    """

    kind = "sink"
    _subscription: Any
    _task: asyncio.Task[None] | None
    _empty: asyncio.Event
    _closing: asyncio.Event
    _wake: asyncio.Event
    _closed: bool
    _close_drain_s: float

    async def start(self) -> None:
        raise NotImplementedError

    async def publish(self, block: Block) -> None:
        raise NotImplementedError

    async def aclose(self, *, drain_timeout_s: float | None = None) -> None:
        raise NotImplementedError

    def _subscriber_name(self) -> str:
        """The name its feed subscription shows in the feed's logs."""
        return f"sink-{self.kind}"

    def attach(self, feed: _Subscribable, *, maxsize: int = DEFAULT_SUBSCRIBER_MAXSIZE) -> Any:
        """Subscribe to ``feed``: every block it delivers is published. Returns the subscription."""
        if self._subscription is not None:
            raise RuntimeError(f"this {type(self).__name__} is already attached to a feed")
        self._subscription = feed.subscribe(
            self.publish, name=self._subscriber_name(), maxsize=maxsize)
        return self._subscription

    async def flush(self, timeout_s: float) -> bool:
        """Wait until every queued block is in the target; False if ``timeout_s`` ran out."""
        try:
            await asyncio.wait_for(self._empty.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def _stop_taking_blocks(self, drain_timeout_s: float | None) -> bool:
        """The start of every ``aclose``: False if already closed; else unsubscribe, give the
        outbox ``drain_timeout_s`` (default ``close_drain_s``) to empty while the writer runs,
        then tell the writer to stop."""
        if self._closed:
            return False
        self._closed = True
        if self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None
        wait_s = self._close_drain_s if drain_timeout_s is None else drain_timeout_s
        task = self._task
        if task is not None and not task.done() and wait_s > 0:
            await self.flush(wait_s)
        self._closing.set()
        self._wake.set()
        return True

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class CursorSink(FeedAttachedSink):
    """A sink that sends blocks in order from its target's own cursor; subclass per target.

    ``publish(block)`` never waits. One task connects (``_connect`` returns the newest number
    the target holds), catches up from the store window if the target is behind the outbox,
    then writes the outbox oldest first in batches of ``batch_size``. Transient errors end the
    session; it reconnects after ``reconnect_delays`` (exponential backoff, full jitter).
    """

    kind = "sink"
    _transient: tuple[type[BaseException], ...] = (OSError, asyncio.TimeoutError)
    """Exceptions that mean "the target is away": reconnect quietly with backoff."""

    def __init__(
        self,
        url: str,
        *,
        store: SinkStore | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        outbox_limit: int = DEFAULT_OUTBOX_LIMIT,
        idle_ping_s: float = DEFAULT_IDLE_PING_S,
        close_drain_s: float = DEFAULT_CLOSE_DRAIN_S,
        reconnect_delays: ReconnectDelays = default_reconnect_delays,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1; got {batch_size!r}")
        if isinstance(outbox_limit, bool) or not isinstance(outbox_limit, int) or outbox_limit < 1:
            raise ConfigError(f"outbox_limit must be at least 1; got {outbox_limit!r}")
        self._secret_url = url
        self.url = redact_url(url)
        self._store = store
        self._batch_size = batch_size
        self._outbox_limit = outbox_limit
        self._idle_ping_s = idle_ping_s
        self._close_drain_s = close_drain_s
        self._reconnect_delays = reconnect_delays
        self._clock = clock

        self._outbox: deque[Block] = deque()
        self._queued_at: dict[int, float] = {}
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._task: asyncio.Task[None] | None = None
        self._subscription: Any = None
        self._closed = False
        self._connected = False

        self._cursor: int | None = None
        """The newest number the target is known to hold (None: empty or unknown)."""
        self._last_enqueued: int | None = None
        self._counts = {"published": 0, "dropped": 0, "gaps": 0, "ignored": 0, "caught_up": 0}
        self._errors = 0
        self._reconnects = 0
        self._ever_connected = False
        self._last_error: str | None = None
        self._last_logged_error: str | None = None
        self._lags_s: deque[float] = deque(maxlen=10_000)
        """Seconds from ``publish()`` to the target confirming, for recent live blocks."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- what a subclass writes ------------------------------------------------------------

    async def _connect(self) -> int | None:
        """Open the connection (and schema); return the newest number the target holds."""
        raise NotImplementedError

    async def _write(self, blocks: list[Block]) -> None:
        """Write ``blocks`` (consecutive, increasing) idempotently; raise to retry them."""
        raise NotImplementedError

    async def _ping(self) -> None:
        """Check the connection while idle (a dead target is noticed within ``idle_ping_s``)."""

    async def _disconnect(self) -> None:
        """Close the connection; must not raise."""

    def _describe(self, exc: BaseException) -> str:
        """A one-line, secret-free description of ``exc``."""
        text = f"{type(exc).__name__}: {str(exc).strip() or 'no detail'}"
        if self._secret_url and self._secret_url in text:
            text = text.replace(self._secret_url, self.url)
        try:
            password = urlsplit(self._secret_url).password
        except ValueError:
            password = None
        if password and len(password) >= 4:
            text = text.replace(password, "***")
        return text

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background task. Returns at once."""
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} is closed; create a new one")
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"sink:{self.kind}:{self.url}")

    async def publish(self, block: Block) -> None:
        """Queue ``block`` for the target. Never waits for it."""
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} is closed")
        if self._last_enqueued is not None and block.number <= self._last_enqueued:
            self._counts["ignored"] += 1
            return
        self._outbox.append(block)
        self._queued_at[block.number] = self._clock()
        self._last_enqueued = block.number
        dropped = 0
        while len(self._outbox) > self._outbox_limit:
            self._queued_at.pop(self._outbox.popleft().number, None)
            dropped += 1
        if dropped:
            self._counts["dropped"] += dropped
            logger.warning(
                "%s sink %s: outbox full, dropped the %d oldest blocks (the store "
                "window may still have them)",
                self.kind,
                self.url,
                dropped,
            )
        self._empty.clear()
        self._wake.set()

    async def aclose(self, *, drain_timeout_s: float | None = None) -> None:
        """Stop: unsubscribe, give the outbox ``close_drain_s`` to empty, disconnect."""
        if not await self._stop_taking_blocks(drain_timeout_s):
            return
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._disconnect()
        self._connected = False
        if self._outbox:
            logger.warning(
                "%s sink %s closed with %d blocks not written (the next start "
                "catches up from the store window)",
                self.kind,
                self.url,
                len(self._outbox),
            )

    # -- status ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """A JSON-ready snapshot for /status, /metrics and the dashboard; no secrets."""
        if self._last_enqueued is not None and self._cursor is not None:
            lag = max(0, self._last_enqueued - self._cursor)
        else:
            lag = len(self._outbox)
        return {
            "kind": self.kind,
            "url": self.url,
            "connected": self._connected,
            "lag_blocks": lag,
            "outbox_len": len(self._outbox),
            "last_enqueued": self._last_enqueued,
            "last_published": self._cursor,
            "published": self._counts["published"],
            "caught_up": self._counts["caught_up"],
            "dropped": self._counts["dropped"],
            "gaps": self._counts["gaps"],
            "ignored": self._counts["ignored"],
            "errors": self._errors,
            "reconnects": self._reconnects,
            "last_error": self._last_error,
        }

    def take_live_lags_s(self) -> list[float]:
        """Seconds from ``publish()`` to the target confirming, per block since the last call."""
        lags = list(self._lags_s)
        self._lags_s.clear()
        return lags

    # -- the drain task --------------------------------------------------------------------

    async def _run(self) -> None:
        """Connect, catch up, drain; on failure back off (full jitter) and do it again."""
        delays = iter(self._reconnect_delays())
        while not self._closing.is_set():
            healthy = False
            try:
                cursor = await self._connect()
                self._on_connected(cursor)
                healthy = True
                await self._drain()
            except SinkRefused as exc:
                self._record_error(str(exc))
            except self._transient as exc:
                self._record_error(
                    f"{self.kind} {self.url} unreachable: {self._describe(exc)}",
                    quiet=not healthy and self._last_error is not None,
                )
            except StoreError as exc:
                self._record_error(f"the store window could not be read: {exc}")
            except Exception as exc:  # a bug or an unexpected reply: keep going, say so loudly
                self._errors += 1
                self._last_error = self._describe(exc)
                logger.error(
                    "%s sink %s failed: %s", self.kind, self.url, self._last_error, exc_info=True
                )
            finally:
                self._connected = False
                await self._disconnect()
            if self._closing.is_set():
                return
            if healthy:
                delays = iter(self._reconnect_delays())
            await self._sleep(next(delays, DEFAULT_BACKOFF_CAP_S))

    async def _drain(self) -> None:
        """Write batches until closed; any error ends the session (the caller reconnects)."""
        while not self._closing.is_set():
            batch = await self._next_batch()
            if not batch:
                await self._idle()
                continue
            await self._write(batch)
            self._written(batch)

    async def _next_batch(self) -> list[Block]:
        """The next consecutive blocks after the cursor: from the store window, then the outbox."""
        cursor = self._cursor
        while self._outbox and cursor is not None and self._outbox[0].number <= cursor:
            self._queued_at.pop(self._outbox.popleft().number, None)  # the target has it
        self._update_empty()
        if not self._outbox:
            return []
        first = self._outbox[0].number
        if cursor is not None and first > cursor + 1:
            stored = await self._from_store(cursor + 1, first - 1)
            if stored:
                self._counts["caught_up"] += len(stored)
                return stored
            self._counts["gaps"] += 1
            logger.warning(
                "%s sink %s: blocks %d..%d are neither queued nor in the store "
                "window; the target will have a gap",
                self.kind,
                self.url,
                cursor + 1,
                first - 1,
            )
        batch: list[Block] = []
        for block in self._outbox:
            if len(batch) >= self._batch_size:
                break
            batch.append(block)
        return batch

    async def _from_store(self, start: int, upper: int) -> list[Block]:
        """Blocks ``start..upper`` (at most one batch) from the store window, if it has them."""
        store = self._store
        if store is None:
            return []
        bounds = await asyncio.to_thread(store.window_bounds)
        if bounds is None or bounds[0] > start or bounds[1] < start:
            return []
        limit = min(self._batch_size, upper - start + 1)
        blocks = await asyncio.to_thread(store.get_range, start, limit)
        out: list[Block] = []
        for block in blocks:
            if block.number != start + len(out) or block.number > upper:
                break
            out.append(block)
        return out

    def _written(self, batch: list[Block]) -> None:
        """Note that the target holds ``batch`` (a sink may call this per block inside _write)."""
        now = self._clock()
        old = self._cursor
        self._counts["published"] += sum(1 for b in batch if old is None or b.number > old)
        self._cursor = batch[-1].number if old is None else max(old, batch[-1].number)
        while self._outbox and self._outbox[0].number <= self._cursor:
            queued = self._queued_at.pop(self._outbox.popleft().number, None)
            if queued is not None:
                self._lags_s.append(now - queued)
        self._update_empty()

    async def _idle(self) -> None:
        """Wait for a new block; ping now and then so a dead target is noticed while idle."""
        self._wake.clear()
        if self._outbox or self._closing.is_set():
            return
        try:
            await asyncio.wait_for(self._wake.wait(), self._idle_ping_s)
        except TimeoutError:
            await self._ping()

    # -- bookkeeping -----------------------------------------------------------------------

    def _update_empty(self) -> None:
        if self._outbox:
            self._empty.clear()
        else:
            self._empty.set()

    def _on_connected(self, cursor: int | None) -> None:
        if cursor is not None and (self._cursor is None or cursor > self._cursor):
            self._cursor = cursor
        elif cursor is None and self._cursor is not None:
            logger.warning(
                "%s sink %s is empty but held block %d before; writing from the outbox on",
                self.kind,
                self.url,
                self._cursor,
            )
            self._cursor = None
        elif cursor is not None and self._cursor is not None and cursor < self._cursor:
            self._cursor = cursor  # the target lost blocks (restored from a backup): resend
        self._connected = True
        if self._ever_connected:
            self._reconnects += 1
        else:
            logger.info(
                "%s sink connected to %s; target holds up to block %s", self.kind, self.url, cursor
            )
        self._ever_connected = True
        self._last_logged_error = None

    def _record_error(self, message: str, *, quiet: bool = False) -> None:
        self._errors += 1
        self._last_error = message
        if message != self._last_logged_error and not quiet:
            logger.error("%s", message)
        self._last_logged_error = message

    async def _sleep(self, delay_s: float) -> None:
        """Sleep ``delay_s``, or less if the sink is closing."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), delay_s)
