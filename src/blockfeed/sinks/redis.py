"""Redis Streams distribution: publish finalized blocks into one stream; read them anywhere.

Why exactly once, in order, with several publishers and restarts on both sides:

* **IDs are block numbers.** Block ``n`` is the entry ``<n>-0`` (genesis ``0-1``). Redis keeps a
  stream's IDs strictly increasing and refuses an ID at or below its last one, so an entry for a
  number can exist at most once, and entries are in number order by construction.
* **Publishers add through one script** (:mod:`._add_script`), which Redis runs atomically: a
  block already in the stream (added by another instance, or by this one before a crash whose
  reply was lost) is recognised by its ID and its hash and skipped; a block whose parent hash
  does not match the top entry is never added; a batch stops at the first block that cannot be
  added, so no later block can overtake it.
* **Nothing is lost while Redis is away.** :meth:`RedisPublisher.publish` only appends to an
  outbox (in memory, or the SQLite store's outbox table, which survives SIGKILL); one task drains
  it oldest first and drops a block only after the script confirmed it is in the stream. On every
  (re)connect the publisher first reads the stream's top entry and, with a store, re-publishes
  from the store's recent-block window whatever lies between that top and the outbox (the blocks
  a crash caught after the checkpoint but before the outbox).
* **A stream carries one chain.** The stream's meta hash (``<stream>:meta``, field ``genesis``)
  records the genesis hash of the chain in it; the first publisher that knows its chain records
  it. A publisher for another chain refuses loudly (an error log line, ``status()["wrong_chain"]``
  and a ``sink_wrong_chain`` event to its hooks) and publishes nothing, instead of adding its
  blocks "after a gap" when it happens to be ahead. To reuse a stream name for another chain,
  delete both keys.
* **Consumers read from their own last ID** (:mod:`.redis_consumer`): ``XREAD`` returns only IDs
  above it, and the consumer checks that numbers are consecutive and parent-linked, raising
  :class:`StreamGap` (trimmed or never published) or :class:`VerificationError` instead of ever
  skipping silently. After a Redis restart it resumes from the same ID.

What is *not* guaranteed: a stream trimmed by ``MAXLEN`` past a reader's position, an outbox that
overflowed (oldest dropped), or a Redis restarted without persistence before a slow reader caught
up: each shows up as a reported gap, never as a silent skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from redis.exceptions import RedisError
from redis.exceptions import ResponseError as RedisResponseError

from blockfeed.errors import ConfigError, StoreError
from blockfeed.sinks import _add_script as script
from blockfeed.sinks._outbox import (
    DEFAULT_OUTBOX_LIMIT,
    MemoryOutbox,
    Outbox,
    OutboxStore,
    StoreOutbox,
)
from blockfeed.sinks._redis_base import (
    DEFAULT_BACKOFF_CAP_S,
    DEFAULT_COMMAND_TIMEOUT_S,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_STREAM,
    ReconnectDelays,
    RedisUnavailable,
    StreamGap,
    check_redis_url,
    check_stream_name,
    default_reconnect_delays,
    describe_error,
    make_client,
    raise_if_cancel_was_swallowed,
)
from blockfeed.sinks._stream_entries import entry_fields, stream_id
from blockfeed.sinks.base import FeedAttachedSink
from blockfeed.sinks.redis_consumer import FROM_FIRST, StreamConsumer, consume
from blockfeed.types import Block, FeedEvent, SinkWrongChain
from blockfeed.util.redact import redact_url

__all__ = [
    "DEFAULT_STREAM",
    "FROM_FIRST",
    "RedisPublisher",
    "RedisUnavailable",
    "StreamConsumer",
    "StreamGap",
    "consume",
]

logger = logging.getLogger("blockfeed.redis")

DEFAULT_MAXLEN = 100_000
"""About 14 days of 12 s blocks; ``MAXLEN ~`` lets Redis trim in whole nodes (cheap)."""
DEFAULT_BATCH_SIZE = 256
"""Blocks per script call while catching up: one round trip, a millisecond or so of Redis time."""
DEFAULT_IDLE_PING_S = 5.0
"""When idle, ping this often so ``status()["connected"]`` is true to within this long."""
DEFAULT_CLOSE_DRAIN_S = 2.0
"""On close, wait this long for the outbox to empty (a persistent outbox keeps the rest)."""


WRONG_CHAIN_EVENT = SinkWrongChain.kind
"""Event kind sent to the publisher's hooks when the stream belongs to another chain."""

EventHook = Callable[[FeedEvent], Any]


class PublisherStore(OutboxStore, Protocol):
    """What the publisher uses of :class:`blockfeed.store.CheckpointStore`."""

    def bound_chain(self) -> str | None: ...
    def checkpoint(self) -> tuple[int, str] | None: ...
    def window_bounds(self) -> tuple[int, int] | None: ...
    def get_range(self, start: int, limit: int) -> list[Block]: ...


class _Subscription(Protocol):
    def cancel(self) -> None: ...


class _Refused(Exception):
    """The stream refused a block for a reason that reconnecting will not fix."""


class _WrongChain(_Refused):
    """The stream records another chain's genesis hash."""

    def __init__(self, message: str, recorded: str) -> None:
        super().__init__(message)
        self.recorded = recorded


class RedisPublisher(FeedAttachedSink):
    """Publishes every block it is given into one Redis stream, exactly once, in order.

    One implementation of the :class:`~blockfeed.sinks.base.Sink` protocol (``--sink redis://``).

    ``publish(block)`` never waits for Redis: it appends to the outbox and returns. A background
    task (``await start()``, or ``async with``) drains the outbox through the add script and,
    when Redis is unreachable, reconnects with exponential backoff and full jitter, then catches
    up in order. Blocks must be given in increasing number order (a feed does that); a block at
    or below the newest one already given is ignored.

    * ``store``: the feed's :class:`~blockfeed.store.CheckpointStore`; makes the outbox
      persistent (bounded by the store's ``outbox_max``) and lets a restarted publisher
      re-publish recent blocks the stream is missing. Without it the outbox is an in-memory
      deque of at most ``outbox_limit`` blocks. Either way the oldest are dropped when full.
    * ``maxlen``: ``XADD MAXLEN ~`` cap on the stream's length (``None``: no cap).
    * ``reconnect_delays``: a factory of retry delays (seconds) for one outage; the default is
      exponential backoff with full jitter, 0.2 s doubling up to 5 s.
    * ``genesis_hash``: the chain this publisher feeds; default: the one ``store`` is bound to
      (the feed records it at start). The stream records it and refuses other chains; with
      neither, the stream's chain is not checked.
    """

    kind = "redis"
    """The :class:`~blockfeed.sinks.base.Sink` protocol's name for this target type."""

    def __init__(
        self,
        url: str,
        stream: str = DEFAULT_STREAM,
        *,
        store: PublisherStore | None = None,
        maxlen: int | None = DEFAULT_MAXLEN,
        outbox_limit: int = DEFAULT_OUTBOX_LIMIT,
        batch_size: int = DEFAULT_BATCH_SIZE,
        repair_from_store: bool = True,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        command_timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S,
        idle_ping_s: float = DEFAULT_IDLE_PING_S,
        close_drain_s: float = DEFAULT_CLOSE_DRAIN_S,
        reconnect_delays: ReconnectDelays = default_reconnect_delays,
        genesis_hash: str | None = None,
    ) -> None:
        self._url = check_redis_url(url)
        self.stream = check_stream_name(stream)
        if maxlen is not None and maxlen < 1:
            raise ConfigError(f"maxlen must be at least 1, or None for no cap; got {maxlen!r}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1; got {batch_size!r}")
        self.url = redact_url(url)
        """The Redis URL with credentials masked; safe to print."""
        self._store = store
        self._genesis = _check_genesis(genesis_hash)
        self._hooks: list[EventHook] = []
        self._wrong_chain: str | None = None
        """The genesis the stream records, while it is not ours."""
        self._outbox: Outbox = (
            MemoryOutbox(limit=outbox_limit)
            if store is None
            else StoreOutbox(store, limit=outbox_limit)
        )
        self._maxlen = str(maxlen or 0)
        self._batch_size = batch_size
        self._repair_from_store = repair_from_store
        self._connect_timeout_s = connect_timeout_s
        self._command_timeout_s = command_timeout_s
        self._idle_ping_s = idle_ping_s
        self._close_drain_s = close_drain_s
        self._reconnect_delays = reconnect_delays

        self._wake = asyncio.Event()
        self._persist_wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._empty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._persister: asyncio.Task[None] | None = None
        self._client: Any = make_client(
            url, connect_timeout_s=connect_timeout_s, command_timeout_s=command_timeout_s
        )
        self._subscription: _Subscription | None = None
        self._closed = False
        self._connected = False
        self._ever_connected = False
        self._outage_since: float | None = None

        self._last_enqueued: int | None = None
        self._last_published: int | None = None
        self._counts = {
            "published": 0, "duplicates": 0, "dropped": 0, "gaps": 0, "ignored": 0,
            "wrong_chain": 0,
        }
        self._errors = 0
        self._reconnects = 0
        self._last_error: str | None = None
        self._last_logged_error: str | None = None

    def __repr__(self) -> str:
        return f"RedisPublisher({self.url!r}, stream={self.stream!r})"

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background task that drains the outbox into Redis. Returns at once."""
        if self._closed:
            raise RuntimeError("this RedisPublisher is closed; create a new one")
        if self._task is None:
            self._update_empty()
            self._task = asyncio.create_task(self._run(), name=f"redis-publisher:{self.stream}")
            if self._outbox.persistent:
                self._persister = asyncio.create_task(
                    self._persist_loop(), name=f"redis-outbox:{self.stream}"
                )

    def _subscriber_name(self) -> str:
        return "redis"

    def add_event_hook(self, hook: EventHook) -> None:
        """Call ``hook(event)`` for the publisher's events (today: ``sink_wrong_chain``)."""
        self._hooks.append(hook)

    async def publish(self, block: Block) -> None:
        """Queue ``block`` for the stream. Never waits for Redis."""
        if self._closed:
            raise RuntimeError("this RedisPublisher is closed")
        if self._last_enqueued is not None and block.number <= self._last_enqueued:
            self._counts["ignored"] += 1
            return
        self._count_dropped(self._outbox.push(block))
        self._last_enqueued = block.number
        self._empty.clear()
        self._wake.set()
        self._persist_wake.set()

    async def aclose(self, *, drain_timeout_s: float | None = None) -> None:
        """Stop: unsubscribe, give the outbox ``close_drain_s`` to empty, close the connection."""
        if not await self._stop_taking_blocks(drain_timeout_s):
            return
        for running in (self._task, self._persister):
            if running is not None:
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
        try:
            self._count_dropped(await self._outbox.persist())
        except StoreError as exc:
            self._record_error(f"the store failed; queued blocks not saved: {exc}")
        with contextlib.suppress(Exception):
            await self._client.aclose()
        self._connected = False
        left = len(self._outbox)
        if left:
            where = "kept in the store for the next start" if self._outbox.persistent else "lost"
            logger.warning(
                "Redis publisher closed with %d blocks not in the stream (%s)", left, where
            )

    # -- status ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """A JSON-ready snapshot for /status and /metrics; never contains credentials."""
        outbox_len = len(self._outbox)
        if self._last_enqueued is not None and self._last_published is not None:
            lag = max(0, self._last_enqueued - self._last_published)
        else:
            lag = outbox_len
        return {
            "kind": self.kind,
            "url": self.url,
            "stream": self.stream,
            "connected": self._connected,
            "lag_blocks": lag,
            "outbox_len": outbox_len,
            "outbox_persistent": self._outbox.persistent,
            "last_enqueued": self._last_enqueued,
            "last_published": self._last_published,
            "published": self._counts["published"],
            "duplicates": self._counts["duplicates"],
            "dropped": self._counts["dropped"],
            "gaps": self._counts["gaps"],
            "ignored": self._counts["ignored"],
            "errors": self._errors,
            "reconnects": self._reconnects,
            "last_error": self._last_error,
            "genesis": self._genesis,
            "wrong_chain": self._wrong_chain is not None,
            "stream_genesis": self._wrong_chain,
            "wrong_chain_refusals": self._counts["wrong_chain"],
        }

    # -- the drain task ----------------------------------------------------------------------

    async def _run(self) -> None:
        """Connect, check the stream, drain; on failure back off (full jitter) and do it again."""
        delays = iter(self._reconnect_delays())
        client = self._client
        add = client.register_script(script.ADD_BLOCKS_LUA)
        while not self._closing.is_set():
            raise_if_cancel_was_swallowed()
            healthy = False
            try:
                await client.ping()
                await self._check_chain(client)
                top = await self._stream_top(client)
                self._on_connected()
                healthy = True
                await self._drain(client, add, top)
            except (RedisError, OSError) as exc:
                self._on_connection_lost(exc)
            except _Refused as exc:
                self._refused(exc)
            except StoreError as exc:
                self._record_error(f"the store failed: {exc}")
            except Exception as exc:  # a bug: keep the outbox draining, but say so loudly
                self._errors += 1
                self._last_error = describe_error(exc, self._url)
                logger.error("Redis publisher failed unexpectedly: %s", self._last_error,
                             exc_info=True)  # fmt: skip
            finally:
                self._connected = False
            if self._closing.is_set():
                return
            if healthy:
                delays = iter(self._reconnect_delays())
            await self._sleep(next(delays, DEFAULT_BACKOFF_CAP_S))

    async def _drain(self, client: Any, add: Any, top: int | None) -> None:
        """Send the outbox oldest first until closed; Redis errors end the session."""
        refusals = iter(self._reconnect_delays())
        if top is not None and self._repair_from_store and self._store is not None:
            await self._repair(add, top)
        while not self._closing.is_set():
            raise_if_cancel_was_swallowed()
            try:
                self._count_dropped(await self._outbox.persist())
                batch = await self._outbox.peek(self._batch_size)
                if not batch:
                    await self._idle(client)
                    continue
                await self._add(add, batch)
                await self._outbox.drop_through(batch[-1].number)
                self._update_empty()
                refusals = iter(self._reconnect_delays())
            except _Refused as exc:
                self._refused(exc)
                await self._sleep(next(refusals, DEFAULT_BACKOFF_CAP_S))
            except StoreError as exc:
                self._record_error(f"outbox store failed: {exc}")
                await self._sleep(next(refusals, DEFAULT_BACKOFF_CAP_S))

    async def _idle(self, client: Any) -> None:
        """Wait for a new block; ping now and then so a dead Redis is noticed while idle."""
        self._wake.clear()
        if len(self._outbox) or self._closing.is_set():
            return
        try:
            await asyncio.wait_for(self._wake.wait(), self._idle_ping_s)
        except TimeoutError:
            await client.ping()

    async def _our_chain(self) -> str | None:
        """Our genesis hash: given, or the store's once the feed has bound it."""
        if self._genesis is None and self._store is not None:
            bound = await asyncio.to_thread(self._store.bound_chain)
            self._genesis = _check_genesis(bound)
        return self._genesis

    async def _check_chain(self, client: Any) -> None:
        """Refuse (before anything else) a stream that records another chain's genesis."""
        ours = await self._our_chain()
        if ours is None:
            return
        recorded = await client.hget(script.meta_key(self.stream), "genesis")
        if recorded is not None and str(recorded) != ours:
            raise self._wrong_chain_error(str(recorded))
        if self._wrong_chain is not None:
            logger.info("Redis stream %r: chain check passes again; publishing", self.stream)
            self._wrong_chain = None

    def _wrong_chain_error(self, recorded: str) -> _WrongChain:
        return _WrongChain(
            f"Redis stream {self.stream!r} carries the chain with genesis {recorded}, but this "
            f"publisher follows genesis {self._genesis}: not publishing into it (use another "
            "--stream for this chain)",
            recorded,
        )

    async def _stream_top(self, client: Any) -> int | None:
        """Read the stream's newest entry: what a (re)started publisher continues from."""
        try:
            entries = await client.xrevrange(self.stream, "+", "-", count=1)
        except RedisResponseError as exc:
            raise _Refused(
                f"cannot read Redis stream {self.stream!r}: {describe_error(exc, self._url)}"
            ) from exc
        if not entries:
            return None
        entry_id, fields = entries[0]
        number, _, _seq = str(entry_id).partition("-")
        if not fields or "hash" not in fields or not number.isdigit():
            raise _Refused(
                f"stream {self.stream!r} holds entries not written by blockfeed (newest "
                f"{entry_id}); publish into a stream of its own"
            )
        return int(number)

    async def _repair(self, add: Any, top: int) -> None:
        """Re-publish blocks the store has between the stream's top and the outbox."""
        store = self._store
        assert store is not None
        checkpoint = await asyncio.to_thread(store.checkpoint)
        bounds = await asyncio.to_thread(store.window_bounds)
        if checkpoint is None or bounds is None:
            return
        upper = min(checkpoint[0], bounds[1])
        self._count_dropped(await self._outbox.persist())
        first_queued = await self._outbox.peek(1)
        if first_queued:
            upper = min(upper, first_queued[0].number - 1)
        start = max(top + 1, bounds[0])
        if upper < start:
            return
        logger.info(
            "Redis stream %r ends at block %d; re-publishing blocks %d..%d from the store",
            self.stream,
            top,
            start,
            upper,
        )
        while start <= upper:
            limit = min(self._batch_size, upper - start + 1)
            stored = await asyncio.to_thread(store.get_range, start, limit)
            blocks = [b for b in stored if start <= b.number <= upper]
            if not blocks:
                return
            await self._add(add, blocks)
            start = blocks[-1].number + 1

    async def _add(self, add: Any, blocks: list[Block]) -> None:
        """Run the add script on ``blocks``; raise :class:`_Refused` where it stopped."""
        args: list[str | int] = [self._maxlen, await self._our_chain() or ""]
        for block in blocks:
            fields = entry_fields(block)
            args += [stream_id(block.number), block.number, block.hash, block.parent_hash]
            args.append(2 * len(fields))
            for name, value in fields.items():
                args += [name, value]
        try:
            reply = await add(keys=[self.stream, script.meta_key(self.stream)], args=args)
        except RedisResponseError as exc:
            raise _Refused(
                f"Redis refused the add script: {describe_error(exc, self._url)}"
            ) from exc
        codes = list(reply)
        failure = codes.pop() if codes and isinstance(codes[-1], str) else None
        if failure is not None and failure.startswith("chain "):
            raise self._wrong_chain_error(failure.removeprefix("chain "))
        for block, code in zip(blocks, codes, strict=False):
            self._tally(block, int(code))
        if failure is not None:
            done = len(codes)
            if done:
                await self._outbox.drop_through(blocks[done - 1].number)
                self._update_empty()
            raise _Refused(self._explain(blocks[done], failure))

    def _tally(self, block: Block, code: int) -> None:
        if code in (script.ADDED, script.ADDED_AFTER_GAP):
            self._counts["published"] += 1
            if code == script.ADDED_AFTER_GAP:
                self._counts["gaps"] += 1
                logger.warning(
                    "Redis stream %r: block %d added after a gap (blocks before it are missing)",
                    self.stream,
                    block.number,
                )
        else:
            self._counts["duplicates"] += 1
        if self._last_published is None or block.number > self._last_published:
            self._last_published = block.number

    def _explain(self, block: Block, failure: str) -> str:
        kind, _, detail = failure.partition(" ")
        where = f"Redis stream {self.stream!r}"
        if kind == "mismatch":
            return (
                f"{where} already has block {block.number} with hash {detail}, ours is "
                f"{block.hash}: a publisher feeds another chain into this stream; not publishing"
            )
        if kind == "parent":
            return (
                f"{where}: block {block.number} has parent {block.parent_hash}, but the stream's "
                f"block {block.number - 1} is {detail}: another chain is in this stream; "
                "not publishing"
            )
        if kind == "foreign":
            return (
                f"{where} holds entries not written by blockfeed (newest {detail}); publish "
                "into a stream of its own"
            )
        return (
            f"{where} refused block {block.number}: {describe_error(Exception(detail), self._url)}"
        )

    # -- bookkeeping -------------------------------------------------------------------------

    def _count_dropped(self, dropped: int) -> None:
        if dropped:
            self._counts["dropped"] += dropped
            logger.warning(
                "Redis outbox full (%d blocks): dropped the %d oldest; readers will see a gap",
                len(self._outbox),
                dropped,
            )

    async def _persist_loop(self) -> None:
        """Write queued blocks to the store in batches, whether or not Redis is reachable."""
        failures = iter(self._reconnect_delays())
        while True:
            await self._persist_wake.wait()
            self._persist_wake.clear()
            try:
                self._count_dropped(await self._outbox.persist())
                failures = iter(self._reconnect_delays())
            except StoreError as exc:
                self._record_error(f"the store failed; blocks stay queued in memory: {exc}")
                self._persist_wake.set()
                await self._sleep(next(failures, DEFAULT_BACKOFF_CAP_S))
                if self._closing.is_set():
                    return  # aclose() makes the last attempt

    def _update_empty(self) -> None:
        if len(self._outbox) == 0:
            self._empty.set()
        else:
            self._empty.clear()

    def _on_connected(self) -> None:
        self._connected = True
        if self._ever_connected:
            self._reconnects += 1
        outage_s = None
        if self._outage_since is not None:
            outage_s = time.monotonic() - self._outage_since
            self._outage_since = None
        if outage_s is not None or not self._ever_connected:
            logger.info(
                "Redis publisher connected to %s, stream %r%s; %d blocks to send",
                self.url,
                self.stream,
                f" after {outage_s:.1f} s" if outage_s is not None else "",
                len(self._outbox),
            )
        self._ever_connected = True
        self._last_logged_error = None

    def _on_connection_lost(self, exc: BaseException) -> None:
        message = f"Redis {self.url} unreachable: {describe_error(exc, self._url)}"
        self._errors += 1
        self._last_error = message
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            logger.warning(
                "%s; keeping %d blocks in the outbox, retrying", message, len(self._outbox)
            )
        else:
            logger.debug("%s; retrying", message)

    def _refused(self, exc: _Refused) -> None:
        """Record a refusal; a wrong chain is also counted and, once per episode, an event."""
        if isinstance(exc, _WrongChain):
            self._counts["wrong_chain"] += 1
            if self._wrong_chain is None:
                self._wrong_chain = exc.recorded
                self._emit(
                    SinkWrongChain(
                        at=time.time(),
                        reason=str(exc),
                        stream=self.stream,
                        stream_genesis=exc.recorded,
                        genesis=self._genesis,
                        redis=self.url,
                    )
                )
        self._record_error(str(exc))

    def _emit(self, event: FeedEvent) -> None:
        for hook in list(self._hooks):
            try:
                hook(event)
            except Exception:
                logger.exception("Redis publisher event hook raised on %s", event.kind)

    def _record_error(self, message: str) -> None:
        self._errors += 1
        self._last_error = message
        if message != self._last_logged_error:
            logger.error("%s", message)
            self._last_logged_error = message

    async def _sleep(self, delay_s: float) -> None:
        """Sleep ``delay_s``, or less if the publisher is closing."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), delay_s)


def _check_genesis(value: str | None) -> str | None:
    """A 0x-prefixed 32-byte hex hash, lower-cased; ConfigError for anything else."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 66 or not value.startswith("0x"):
        raise ConfigError(f"genesis_hash must be a 0x-prefixed 32-byte hex string, got {value!r}")
    try:
        bytes.fromhex(value[2:])
    except ValueError:
        raise ConfigError(f"genesis_hash is not valid hex: {value!r}") from None
    return value.lower()
