"""The publisher's outbox: blocks handed to it but not yet known to be in the stream.

Ordered by block number, bounded, oldest dropped first when full (the stream keeps only the
newest ``MAXLEN`` entries anyway, so the oldest are the cheapest to lose; readers see the loss as
a gap they are told about, never as a silent skip). Two kinds behind one small interface: in
memory (lost with the process), or in the SQLite store (survives restarts and SIGKILL).

``push`` is synchronous and O(1) for both, so ``RedisPublisher.publish`` never waits: the store
outbox keeps new blocks in a short in-memory list and writes them in one transaction, off the
event loop, when ``persist()`` runs (an fsync per block would cost milliseconds each).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

from blockfeed.errors import ConfigError
from blockfeed.types import Block

DEFAULT_OUTBOX_LIMIT = 100_000


class OutboxStore(Protocol):
    """The slice of :class:`blockfeed.store.CheckpointStore` the persistent outbox uses."""

    def outbox_push(self, blocks: list[Block]) -> int | None: ...
    def outbox_peek(self, limit: int) -> list[Block]: ...
    def outbox_drop_through(self, number: int) -> int | None: ...
    def outbox_len(self) -> int: ...


class Outbox(Protocol):
    """Blocks waiting for Redis, oldest first."""

    persistent: bool

    def push(self, block: Block) -> int:
        """Append ``block``; return how many of the oldest blocks were dropped to make room."""
        ...

    async def persist(self) -> int:
        """Make pushed blocks durable (no-op in memory); return how many were dropped."""
        ...

    async def peek(self, limit: int) -> list[Block]:
        """Up to ``limit`` of the oldest blocks, in number order, without removing them."""
        ...

    async def drop_through(self, number: int) -> None:
        """Forget every block numbered ``number`` or lower (they are in the stream)."""
        ...

    def __len__(self) -> int: ...


def _check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"the outbox limit must be at least 1; got {limit!r}")
    return limit


class MemoryOutbox:
    """A bounded deque; what a publisher without a store uses."""

    persistent = False

    def __init__(self, *, limit: int = DEFAULT_OUTBOX_LIMIT) -> None:
        self._limit = _check_limit(limit)
        self._blocks: deque[Block] = deque()

    def push(self, block: Block) -> int:
        self._blocks.append(block)
        dropped = 0
        while len(self._blocks) > self._limit:
            self._blocks.popleft()
            dropped += 1
        return dropped

    async def persist(self) -> int:
        return 0

    async def peek(self, limit: int) -> list[Block]:
        out: list[Block] = []
        for block in self._blocks:
            if len(out) >= limit:
                break
            out.append(block)
        return out

    async def drop_through(self, number: int) -> None:
        while self._blocks and self._blocks[0].number <= number:
            self._blocks.popleft()

    def __len__(self) -> int:
        return len(self._blocks)


class StoreOutbox:
    """The store's outbox table, fed in batches: blocks survive a crash once persisted.

    Bounded by the store's own ``outbox_max``; blocks not yet persisted (``limit`` at most,
    oldest dropped beyond) are what a crash can lose, and those are still in the feed's
    recent-block window, from which a restarted publisher re-publishes them.
    """

    persistent = True

    def __init__(self, store: OutboxStore, *, limit: int = DEFAULT_OUTBOX_LIMIT) -> None:
        self._store = store
        self._limit = _check_limit(limit)
        self._pending: list[Block] = []
        self._stored = store.outbox_len()

    def push(self, block: Block) -> int:
        self._pending.append(block)
        excess = len(self._pending) - self._limit
        if excess > 0:
            del self._pending[:excess]
            return excess
        return 0

    async def persist(self) -> int:
        if not self._pending:
            return 0
        batch, self._pending = self._pending, []
        try:
            dropped = await asyncio.to_thread(self._store.outbox_push, batch)
        except BaseException:
            self._pending[:0] = batch  # not written: keep them, in order, for the next try
            raise
        self._stored = await asyncio.to_thread(self._store.outbox_len)
        return int(dropped or 0)

    async def peek(self, limit: int) -> list[Block]:
        return await asyncio.to_thread(self._store.outbox_peek, limit)

    async def drop_through(self, number: int) -> None:
        await asyncio.to_thread(self._store.outbox_drop_through, number)
        self._stored = await asyncio.to_thread(self._store.outbox_len)

    def __len__(self) -> int:
        return self._stored + len(self._pending)
