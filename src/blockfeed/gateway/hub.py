"""Fan-out of one feed subscription to many SSE clients.

The hub is the only feed subscriber the gateway has, however many browsers are connected. Each
block is encoded into its SSE frame once (``id: N / event: block / data: {...}``); every client
then gets a reference to the same bytes in its own bounded queue. Publishing never waits: a client
whose queue is full is *dropped* (its connection is closed; it can come back with
``Last-Event-ID``), so one slow reader cannot slow the feed or the other clients.

The hub also keeps a ring of the most recent frames so a reconnecting client is usually replayed
from memory without touching the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from blockfeed.gateway.limits import DEFAULT_MAX_CLIENTS, LogThrottle, ReplayPacer
from blockfeed.types import Block, FeedEvent

log = logging.getLogger(__name__)

DEFAULT_RING_SIZE = 2048
"""Recent block frames kept in memory for replay (the store covers older ones)."""
DEFAULT_CLIENT_QUEUE_SIZE = 1024
"""Frames a client may have pending before it is dropped as too slow."""
DEFAULT_WRITE_TIMEOUT_S = 30.0
"""A client whose socket accepts nothing for this long is dropped (it stopped reading)."""
STREAMS_PER_SLICE = 20
"""Stream setups per 20 ms slice (1,000 a second)."""
DROP_LOG_INTERVAL_S = 10.0
"""Drops are logged at most this often, with a count (2,000 stalled clients: one line)."""
DEFAULT_KEEPALIVE_S = 15.0
"""Idle streams get a comment this often, so proxies and browsers keep them open."""

EVENT_FRAME = -1
"""Queue items carry a block number; non-block frames (mode, feed events) use this marker."""
KEEPALIVE_FRAME = b": keep-alive\n\n"

QueueItem = tuple[int, bytes]


def _json(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), default=str)


def encode_frame(event: str, data: Any, *, event_id: int | None = None) -> bytes:
    """One SSE frame. ``data`` is JSON without newlines, so a single ``data:`` line suffices."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {_json(data)}\n\n".encode()


def block_payload(block: Block, epoch_length: int) -> dict[str, Any]:
    """The JSON a client receives for a block (also used by the /blocks routes)."""
    return block.to_dict(epoch_length=epoch_length)


def encode_block(block: Block, epoch_length: int) -> bytes:
    """The ``event: block`` frame, with ``id`` = block number so clients can resume."""
    return encode_frame("block", block_payload(block, epoch_length), event_id=block.number)


def event_payload(event: FeedEvent) -> dict[str, Any]:
    """The JSON shape of a feed event (SSE ``mode``/``feed`` events and /status)."""
    return event.to_dict()


class HubFull(Exception):
    """The gateway already serves its maximum number of SSE clients."""


class SseClient:
    """One connected SSE client: a bounded queue of frames plus wake-up and drop signals."""

    __slots__ = (
        "_items", "_maxsize", "_waiter", "dropped", "on_drop", "sent", "stalled", "writing_since"
    )

    def __init__(self, maxsize: int) -> None:
        self._items: deque[QueueItem] = deque()
        self._maxsize = maxsize
        self._waiter: asyncio.Future[None] | None = None
        self.dropped = False
        """True once the client fell too far behind; its response must end."""
        self.on_drop: Callable[[], Any] | None = None
        """Called once on a drop (the response cancels its writer, even mid-write)."""
        self.sent = 0
        self.writing_since: float | None = None
        """Loop time when the current socket write began; ``None`` between writes."""
        self.stalled = False
        """Dropped because a write made no progress for the write timeout."""

    @property
    def lag(self) -> int:
        """Frames queued but not yet written to the socket."""
        return len(self._items)

    def push(self, item: QueueItem) -> bool:
        """Queue a frame without waiting; ``False`` means the client was dropped just now."""
        if self.dropped:
            return False
        if len(self._items) >= self._maxsize:
            self.end()
            return False
        self._items.append(item)
        self._wake()
        return True

    def end(self) -> None:
        """Stop this client's stream now (too slow, or the server is shutting down)."""
        if self.dropped:
            return
        self._items.clear()
        self.dropped = True
        self._wake()
        if self.on_drop is not None:
            self.on_drop()

    def _wake(self) -> None:
        # A bare future rather than an asyncio.Event: this runs once per client per block.
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next_batch(self) -> list[QueueItem]:
        """Everything queued, waiting until there is something; empty once dropped."""
        while not self._items and not self.dropped:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        batch = list(self._items)
        self._items.clear()
        return batch


class SseHub:
    """Encodes each feed block once and hands it to every client's queue."""

    def __init__(
        self,
        *,
        epoch_length: int,
        ring_size: int = DEFAULT_RING_SIZE,
        client_queue_size: int = DEFAULT_CLIENT_QUEUE_SIZE,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S,
        pacer: ReplayPacer | None = None,
    ) -> None:
        self.epoch_length = epoch_length
        self.client_queue_size = client_queue_size
        self.max_clients = max_clients
        self.write_timeout_s = write_timeout_s
        self.pacer = pacer or ReplayPacer()
        """Shares replay work between clients (see ``limits.ReplayPacer``)."""
        self.admission = ReplayPacer(frames_per_slice=STREAMS_PER_SLICE)
        """New streams set up per slice, in arrival order: 2,000 clients reconnecting at once
        are set up over a second or two instead of in a few long loop iterations."""
        self._drop_log = LogThrottle(DROP_LOG_INTERVAL_S)
        self._clients: set[SseClient] = set()
        self._ring: deque[tuple[Block, bytes]] = deque(maxlen=ring_size)
        self.head: int | None = None
        """Number of the newest block published."""
        self.dropped_total = 0
        self.connections_total = 0
        self.blocks_published = 0
        self._last_fan_out = 0.0

    # --- feed side ------------------------------------------------------------------------------

    def publish_block(self, block: Block) -> None:
        """Feed subscriber callback: encode once, fan out, never wait, never raise."""
        if self.head is not None and block.number <= self.head:
            return  # the feed never repeats a block; be safe if a caller does
        frame = encode_block(block, self.epoch_length)
        if self._ring and block.number != self._ring[-1][0].number + 1:
            self._ring.clear()  # keep the ring contiguous so replay can index it
        self._ring.append((block, frame))
        self.head = block.number
        self.blocks_published += 1
        self._fan_out((block.number, frame))

    def publish_event(self, event: FeedEvent) -> None:
        """Feed event hook: events that carry a mode (mode changes, finality stalled/resumed)
        become ``event: mode``, the rest ``event: feed``."""
        payload = event_payload(event)
        name = "mode" if payload["new_mode"] is not None else "feed"
        self._fan_out((EVENT_FRAME, encode_frame(name, payload)))

    async def keep_alive(self, interval_s: float) -> None:
        """Send a comment to every client when nothing else was sent for ``interval_s``.

        One timer for the whole hub instead of one per client: idle proxies and browsers keep
        the stream open, and the per-client wait stays a plain event wait.
        """
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.0, self._last_fan_out + interval_s - loop.time()))
            if loop.time() - self._last_fan_out >= interval_s:
                self._fan_out((EVENT_FRAME, KEEPALIVE_FRAME))

    def _fan_out(self, item: QueueItem) -> None:
        with contextlib.suppress(RuntimeError):  # no running loop: called from sync test code
            self._last_fan_out = asyncio.get_running_loop().time()
        dropped = [client for client in self._clients if not client.push(item)]
        for client in dropped:
            self._clients.discard(client)
        if dropped:
            self._count_drops(len(dropped), "queue full")

    async def drop_stalled_writers(self) -> None:
        """Drop every client whose current write has waited ``write_timeout_s`` (not reading).

        One watchdog for the hub instead of a timeout around every write: a timeout per write
        would schedule and cancel a timer per client per block (10,000 per block at 10k clients).
        """
        loop = asyncio.get_running_loop()
        interval_s = max(0.05, self.write_timeout_s / 4)
        while True:
            await asyncio.sleep(interval_s)
            deadline = loop.time() - self.write_timeout_s
            for client in [c for c in self._clients if c.writing_since is not None]:
                since = client.writing_since
                if since is not None and since <= deadline:
                    self.drop_stalled(client)

    def drop_stalled(self, client: SseClient) -> None:
        """End a client whose socket took nothing for ``write_timeout_s``."""
        if client.dropped:
            return
        client.stalled = True
        client.end()
        self._clients.discard(client)
        self._count_drops(1, f"socket not read for {self.write_timeout_s:g} s")

    def _count_drops(self, count: int, reason: str) -> None:
        self.dropped_total += count
        reported = self._drop_log.hit(count)
        if reported:
            log.warning("dropped %d slow SSE client(s) (%s); they may resume with Last-Event-ID",
                        reported, reason)

    # --- client side ----------------------------------------------------------------------------

    def register(self) -> SseClient:
        """Add a client; it receives everything published from now on."""
        if len(self._clients) >= self.max_clients:
            raise HubFull(f"too many stream clients (limit {self.max_clients})")
        client = SseClient(self.client_queue_size)
        self._clients.add(client)
        self.connections_total += 1
        return client

    def close_all(self) -> None:
        """End every stream (server shutdown): open SSE responses never finish on their own."""
        clients, self._clients = self._clients, set()
        for client in clients:
            client.end()

    def unregister(self, client: SseClient) -> None:
        """Forget a client (idempotent)."""
        self._clients.discard(client)

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def lags(self) -> Iterable[int]:
        """Pending frames per client (for metrics)."""
        return (client.lag for client in self._clients)

    # --- the recent ring ------------------------------------------------------------------------

    def ring_bounds(self) -> tuple[int, int] | None:
        """First and last block number held in memory."""
        if not self._ring:
            return None
        return self._ring[0][0].number, self._ring[-1][0].number

    def ring_slice(self, start: int, limit: int) -> list[tuple[Block, bytes]]:
        """Up to ``limit`` consecutive (block, frame) pairs from ``start``, if the ring has it."""
        bounds = self.ring_bounds()
        if bounds is None or not bounds[0] <= start <= bounds[1] or limit <= 0:
            return []
        offset = start - bounds[0]
        end = min(offset + limit, len(self._ring))
        return [self._ring[i] for i in range(offset, end)]
