"""Read blocks back out of a Redis stream: exactly once, in order, across restarts on both ends.

``async for block in consume(url, stream, after=N)`` yields block ``N + 1``, ``N + 2``, ...
(``after=None``: from the newest block in the stream). It keeps the last ID it yielded and asks
``XREAD`` only for IDs above it, so reconnecting after a Redis restart, or starting a new
consumer with ``after=<last number>``, neither repeats nor skips a block. Every block is checked
against the one before (consecutive number, parent hash) and its header against its hash; a
hole raises :class:`StreamGap` unless ``allow_gaps=True``, and a broken link always raises.

Consumer groups (``group=``, ``consumer=``) share the work between readers: each block goes to
one of them and is acknowledged (``XACK``) when the reader asks for the next block (or with
:meth:`StreamConsumer.ack` when ``auto_ack=False``). A restarted reader with the same consumer
name first gets the blocks it had been given but not acknowledged, so groups are at-least-once.
A reader that never comes back would strand its pending blocks, so every reader also claims
(``XAUTOCLAIM``) entries another consumer has left unacknowledged for ``claim_idle_s``; claimed
blocks are verified against their hash but, being older than what the reader has seen, are not
checked for order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from types import TracebackType
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import ResponseError as RedisResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from blockfeed.errors import BlockfeedError, ConfigError
from blockfeed.sinks._redis_base import (
    DEFAULT_BACKOFF_CAP_S,
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
from blockfeed.sinks._stream_entries import (
    ChainCheck,
    StreamGapFound,
    block_from_entry,
    number_of_id,
    read_position,
)
from blockfeed.types import Block
from blockfeed.util.redact import redact_url

logger = logging.getLogger("blockfeed.redis")

DEFAULT_READ_COUNT = 100
DEFAULT_READ_BLOCK_S = 5.0
DEFAULT_CLAIM_IDLE_S = 60.0
"""A group's pending entry idle this long belongs to a dead consumer: another one claims it."""
"""How long one ``XREAD BLOCK`` waits for new entries before asking again."""
READ_TIMEOUT_MARGIN_S = 5.0
"""A blocked read that has not answered this long after its BLOCK time is a dead connection."""

_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)

FROM_FIRST = -1
"""``after=FROM_FIRST`` starts at the oldest block the stream still holds, whatever its number."""

Entry = tuple[str, dict[str, Any]]


class StreamConsumer:
    """An async iterator of :class:`Block` read from a Redis stream written by RedisPublisher.

    * ``after``: yield blocks numbered above it; ``None`` starts at the newest block in the
      stream (or the first one to arrive); ``-1`` (:data:`FROM_FIRST`) at the oldest one. In
      group mode it is where a *new* group starts.
    * ``after_hash``: the hash of block ``after``, to check the first block's parent link
      (looked up in the stream when not given).
    * ``allow_gaps``: on a hole (trimmed, or never published), log it, call ``on_gap`` and go
      on instead of raising :class:`StreamGap`.
    * ``max_outage_s``: after the first successful connection, Redis outages are retried with
      backoff and full jitter; this bounds how long (``None``: forever). The *first* connection
      is not retried: an unreachable Redis at start raises :class:`RedisUnavailable` at once.

    Close it (``aclose()`` or ``async with``) to release the connection at once; a consumer left
    after ``break`` is closed when it is garbage collected.
    """

    def __init__(
        self,
        url: str,
        stream: str = DEFAULT_STREAM,
        *,
        after: int | None = None,
        after_hash: str | None = None,
        group: str | None = None,
        consumer: str | None = None,
        auto_ack: bool = True,
        allow_gaps: bool = False,
        on_gap: Callable[[StreamGap], None] | None = None,
        read_count: int = DEFAULT_READ_COUNT,
        read_block_s: float = DEFAULT_READ_BLOCK_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        max_outage_s: float | None = None,
        reconnect_delays: ReconnectDelays = default_reconnect_delays,
        claim_idle_s: float | None = DEFAULT_CLAIM_IDLE_S,
    ) -> None:
        self._url = check_redis_url(url)
        self.stream = check_stream_name(stream)
        if (group is None) != (consumer is None):
            raise ConfigError("consumer groups need both a group name and a consumer name")
        if group is not None and (not group.strip() or not (consumer or "").strip()):
            raise ConfigError("group and consumer names must be non-empty")
        if after is not None and (isinstance(after, bool) or after < FROM_FIRST):
            raise ConfigError(
                f"after must be a block number, or -1 for the stream's first block; got {after!r}"
            )
        if read_count < 1 or read_block_s <= 0:
            raise ConfigError("read_count must be at least 1 and read_block_s positive")
        if claim_idle_s is not None and not claim_idle_s > 0:
            raise ConfigError(f"claim_idle_s must be positive, or None; got {claim_idle_s!r}")
        self.url = redact_url(url)
        """The Redis URL with credentials masked; safe to print."""
        self.group = group
        self.consumer = consumer
        self._after = after
        self._after_hash = after_hash
        self._auto_ack = auto_ack
        self._allow_gaps = allow_gaps
        self._on_gap = on_gap
        self._read_count = read_count
        self._read_block_ms = max(1, int(read_block_s * 1000))
        self._connect_timeout_s = connect_timeout_s
        self._command_timeout_s = read_block_s + READ_TIMEOUT_MARGIN_S
        self._max_outage_s = max_outage_s
        self._reconnect_delays = reconnect_delays

        self._client: Any = make_client(
            url, connect_timeout_s=connect_timeout_s, command_timeout_s=self._command_timeout_s
        )
        self._gen: AsyncGenerator[Block, None] | None = None
        self._check = ChainCheck(last_number=None, last_hash=None, consecutive=group is None)
        self._last_id = "0-0"
        """The ID of the last entry yielded (or the position to read after)."""
        self._to_ack: list[str] = []
        self._reading_pending = group is not None
        self._pending_cursor = "0"
        self._claim_idle_s = claim_idle_s
        self._claim_cursor = "0-0"
        self._next_claim_at = 0.0
        self._claiming = False
        """True while the current batch holds entries claimed from another consumer."""
        self._claimed = 0
        self._connected = False
        self._ever_connected = False
        self._outage_since: float | None = None
        self._delays: Iterator[float] = iter(())
        self._gaps = 0
        self._reconnects = 0
        self._last_error: str | None = None

    def __repr__(self) -> str:
        return f"StreamConsumer({self.url!r}, stream={self.stream!r}, group={self.group!r})"

    @property
    def last_number(self) -> int | None:
        """The number of the last block yielded: what to pass as ``after=`` next time."""
        return self._check.last_number

    def status(self) -> dict[str, Any]:
        """A JSON-ready snapshot; never contains credentials."""
        return {
            "url": self.url,
            "stream": self.stream,
            "group": self.group,
            "consumer": self.consumer,
            "connected": self._connected,
            "last_number": self._check.last_number,
            "gaps": self._gaps,
            "reconnects": self._reconnects,
            "unacked": len(self._to_ack),
            "claimed": self._claimed,
            "last_error": self._last_error,
        }

    # -- iteration ---------------------------------------------------------------------------

    def __aiter__(self) -> StreamConsumer:
        return self

    async def __anext__(self) -> Block:
        if self._gen is None:
            self._gen = self._blocks()
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        """Stop reading and close the connection (acknowledgements due are sent first)."""
        if self._gen is not None:
            await self._gen.aclose()
        else:
            await self._client.aclose()

    async def __aenter__(self) -> StreamConsumer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def ack(self, *blocks: Block | int) -> None:
        """Acknowledge blocks in group mode (for ``auto_ack=False``); retried after outages."""
        if self.group is None:
            raise ConfigError("ack() is only for consumer groups (group=..., consumer=...)")
        for item in blocks:
            number = item.number if isinstance(item, Block) else int(item)
            self._to_ack.append(read_position(number))
        try:
            await self._flush_acks()
        except _CONNECTION_ERRORS:
            pass  # kept in _to_ack; sent after the reconnect, before the next read
        except RedisError as exc:
            raise self._refused(exc) from None

    async def _blocks(self) -> AsyncGenerator[Block, None]:
        try:
            await self._start()
            while True:
                for entry_id, fields in await self._read():
                    block = self._accept(entry_id, fields)
                    if block is None:
                        continue
                    yield block
                    if self.group is not None and self._auto_ack:
                        self._to_ack.append(entry_id)
        finally:
            try:
                if self._to_ack:
                    await asyncio.wait_for(self._flush_acks(), self._connect_timeout_s)
            except (*_CONNECTION_ERRORS, TimeoutError, RedisError):
                pass  # unacknowledged entries stay pending and come back after a restart
            finally:
                self._connected = False
                await self._client.aclose()

    async def _start(self) -> None:
        """First connection (not retried), then the start position and, for groups, the group."""
        try:
            await self._client.ping()
            if self.group is not None:
                await self._ensure_group(self._after)
            else:
                await self._set_start()
        except _CONNECTION_ERRORS as exc:
            raise RedisUnavailable(
                f"cannot reach Redis at {self.url}: {describe_error(exc, self._url)}"
            ) from None
        except RedisError as exc:
            raise self._refused(exc) from None
        self._connected = self._ever_connected = True

    async def _set_start(self) -> None:
        if self._after is None:
            top = await self._client.xrevrange(self.stream, "+", "-", count=1)
            if top:
                self._last_id = read_position(number_of_id(str(top[0][0])) - 1)
            return
        self._last_id = read_position(self._after)
        if self._after == FROM_FIRST:
            return
        last_hash = self._after_hash
        if last_hash is None:
            entry = await self._client.xrange(self.stream, self._last_id, self._last_id, count=1)
            if entry and entry[0][1]:
                last_hash = block_from_entry(entry[0][0], entry[0][1], stream=self.stream).hash
        self._check = ChainCheck(last_number=self._after, last_hash=last_hash)

    async def _ensure_group(self, after: int | None) -> None:
        """Create the group (and the stream) unless it exists; an existing group keeps its place."""
        if self._check.last_number is not None:
            start = self._last_id
        elif after is not None:
            start = read_position(after)
        else:
            top = await self._client.xrevrange(self.stream, "+", "-", count=1)
            start = read_position(number_of_id(str(top[0][0])) - 1) if top else "0-0"
        try:
            await self._client.xgroup_create(self.stream, self.group, id=start, mkstream=True)
        except RedisResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # -- reading with reconnects -------------------------------------------------------------

    async def _read(self) -> list[Entry]:
        """The next batch of entries; rides out Redis outages (backoff with full jitter)."""
        while True:
            raise_if_cancel_was_swallowed()
            try:
                await self._flush_acks()
                entries = await (self._read_group() if self.group else self._read_stream())
                raise_if_cancel_was_swallowed()
            except _CONNECTION_ERRORS as exc:
                await self._outage(exc)
                continue
            except RedisResponseError as exc:
                if self.group is not None and "NOGROUP" in str(exc):
                    await self._recreate_group()
                    continue
                raise self._refused(exc) from None
            except RedisError as exc:
                raise self._refused(exc) from None
            self._recovered()
            if entries:
                return entries

    async def _read_stream(self) -> list[Entry]:
        reply = await self._client.xread(
            {self.stream: self._last_id}, count=self._read_count, block=self._read_block_ms
        )
        return _entries(reply)

    async def _read_group(self) -> list[Entry]:
        self._claiming = False
        if self._reading_pending:
            # Entries this consumer was given but never acknowledged: before a restart, or in
            # a reply lost with the connection. They come first, in ID order.
            reply = await self._client.xreadgroup(
                self.group,
                self.consumer,
                {self.stream: self._pending_cursor},
                count=self._read_count,
            )
            entries = _entries(reply)
            if entries:
                self._pending_cursor = entries[-1][0]
                return entries
            self._reading_pending = False
        claimed = await self._claim()
        if claimed:
            return claimed
        reply = await self._client.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: ">"},
            count=self._read_count,
            block=self._read_block_ms,
        )
        return _entries(reply)

    async def _claim(self) -> list[Entry]:
        """Take over entries another consumer left pending for ``claim_idle_s`` (XAUTOCLAIM).

        One sweep walks the whole pending list a batch at a time; the next sweep starts half
        an idle period after the last one ended.
        """
        now = time.monotonic()
        if self._claim_idle_s is None or now < self._next_claim_at:
            return []
        reply = await self._client.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            int(self._claim_idle_s * 1000),
            start_id=self._claim_cursor,
            count=self._read_count,
        )
        next_id = str(reply[0]) if reply else "0-0"
        self._claim_cursor = next_id
        if next_id == "0-0":
            self._next_claim_at = now + self._claim_idle_s / 2
        entries = _entries([[self.stream, reply[1]]]) if reply and len(reply) > 1 else []
        entries = [(entry_id, fields) for entry_id, fields in entries if fields]
        if entries:
            self._claiming = True
            self._claimed += len(entries)
            logger.warning(
                "Redis consumer %r claimed %d blocks another consumer of group %r left "
                "unacknowledged for %g s",
                self.consumer,
                len(entries),
                self.group,
                self._claim_idle_s,
            )
        return entries

    async def _recreate_group(self) -> None:
        """The group vanished (Redis restarted without persistence): create it where we are."""
        logger.warning(
            "Redis consumer group %r on %r is gone; recreating it", self.group, self.stream
        )
        try:
            await self._ensure_group(self._after)
        except _CONNECTION_ERRORS as exc:
            await self._outage(exc)
        except RedisError as exc:
            raise self._refused(exc) from None

    async def _flush_acks(self) -> None:
        if self._to_ack and self.group is not None:
            ids = list(self._to_ack)
            await self._client.xack(self.stream, self.group, *ids)
            del self._to_ack[: len(ids)]

    async def _outage(self, exc: BaseException) -> None:
        """Wait before the next attempt; give up after ``max_outage_s``."""
        self._connected = False
        message = f"Redis {self.url} unreachable: {describe_error(exc, self._url)}"
        self._last_error = message
        now = time.monotonic()
        if self._outage_since is None:
            self._outage_since = now
            self._delays = iter(self._reconnect_delays())
            logger.warning("%s; consumer of %r retrying", message, self.stream)
        if self.group is not None:
            self._reading_pending = True
            self._pending_cursor = self._last_id
        if self._max_outage_s is not None and now - self._outage_since > self._max_outage_s:
            raise RedisUnavailable(f"{message} for over {self._max_outage_s:g} s; giving up")
        await asyncio.sleep(next(self._delays, DEFAULT_BACKOFF_CAP_S))

    def _recovered(self) -> None:
        self._connected = True
        if self._outage_since is not None:
            logger.info(
                "Redis consumer of %r reconnected after %.1f s; resuming after %s",
                self.stream,
                time.monotonic() - self._outage_since,
                self._last_id,
            )
            self._outage_since = None
            self._reconnects += 1

    def _refused(self, exc: RedisError) -> BlockfeedError:
        return BlockfeedError(
            f"Redis failed on stream {self.stream!r}: {describe_error(exc, self._url)}"
        )

    # -- checking entries --------------------------------------------------------------------

    def _accept(self, entry_id: str, fields: dict[str, Any] | None) -> Block | None:
        """Decode and check one entry; ``None`` for a pending entry that was deleted meanwhile."""
        if not fields:
            number = number_of_id(entry_id)
            self._report_gap(StreamGap(self.stream, number, number + 1))
            self._to_ack.append(entry_id)
            self._last_id = max(self._last_id, entry_id, key=_id_key)
            return None
        block = block_from_entry(entry_id, fields, stream=self.stream)
        if self._claiming:
            return block  # a dead consumer's older block: verified, but not part of our order
        try:
            self._check.expect(block)
        except StreamGapFound as gap:
            self._report_gap(StreamGap(self.stream, gap.expected, gap.found))
            self._check.accept_gap(block)
        self._last_id = entry_id
        return block

    def _report_gap(self, gap: StreamGap) -> None:
        if not self._allow_gaps:
            raise gap
        self._gaps += 1
        logger.warning("%s", gap)
        if self._on_gap is not None:
            self._on_gap(gap)


consume = StreamConsumer
"""``async for block in consume(url, stream, after=N)``: the documented name for a
:class:`StreamConsumer` (same arguments, same object)."""


def _id_key(entry_id: str) -> tuple[int, int]:
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq or 0)


def _entries(reply: Any) -> list[Entry]:
    """Entries from an XREAD/XREADGROUP reply, whatever shape this redis-py version returns."""
    if not reply:
        return []
    streams = reply.values() if isinstance(reply, dict) else (item[1] for item in reply)
    out: list[Entry] = []
    for entries in streams:
        if (
            entries
            and isinstance(entries[0], list)
            and entries[0]
            and isinstance(entries[0][0], (list, tuple))
        ):
            entries = entries[0]  # older RESP3 shape: {stream: [[entries]]}
        for entry in entries or ():
            entry_id, fields = entry[0], entry[1]
            if isinstance(fields, (list, tuple)):
                fields = dict(zip(fields[::2], fields[1::2], strict=False))
            out.append((str(entry_id), fields or {}))
    return out
