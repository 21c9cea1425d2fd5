"""Subscribers: one bounded queue each, so a slow or failing consumer never stalls the feed.

A block counts as *handed* to an iterator when the iterator yields it, and to a callback when
the callback has returned (or raised); the feed moves the checkpoint only past blocks handed to
every subscriber, so a restart re-delivers what a subscriber had queued but not yet taken.

The feed *pushes* every block into every subscriber's queue without waiting. A subscriber whose
queue is full is marked "behind" from that block on and stops receiving pushes; when its
consumer has drained the queue, it catches up by reading the missed blocks back (from the
checkpoint store's window, and the few not yet saved from memory) and then rejoins the live
stream. If the blocks cannot be read back (no store, or they left the window), the iterator
raises :class:`SubscriberLagged` with the number to resume from: a subscriber is never handed a
sequence with a hole in it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from blockfeed.errors import SubscriberLagged
from blockfeed.types import Block

DEFAULT_MAXSIZE = 1000
CatchUp = Callable[[int, int], Awaitable[list[Block]]]
"""``catch_up(start, limit)`` -> consecutive blocks from ``start`` (empty if unavailable)."""


class FeedSubscription:
    """An async iterator over delivered blocks, in order, from the moment it was created.

    ``cancel()`` ends it (the iterator stops after what it already holds).
    """

    def __init__(
        self,
        *,
        name: str,
        maxsize: int,
        catch_up: CatchUp,
        last_delivered: Callable[[], int | None],
        on_cancel: Callable[[FeedSubscription], None],
        on_progress: Callable[[], None] = lambda: None,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.name = name
        self.maxsize = maxsize
        self.received = 0
        """Blocks handed to the consumer so far."""
        self.fell_behind = 0
        """Times the queue overflowed (each followed by a catch-up or SubscriberLagged)."""
        self._queue: deque[Block] = deque()
        self._behind_from: int | None = None
        self._wakeup = asyncio.Event()
        self._closed = False
        self._error: BaseException | None = None
        self._catch_up = catch_up
        self._last_delivered = last_delivered
        self._on_cancel = on_cancel
        self._on_progress = on_progress
        self.in_hand: int | None = None
        """Set by a callback runner while the callback holds this block (not yet handed)."""

    @property
    def behind(self) -> bool:
        """True while the subscriber is catching up instead of receiving live blocks."""
        return self._behind_from is not None

    @property
    def queued(self) -> int:
        """Blocks waiting in the queue."""
        return len(self._queue)

    def owed_from(self) -> int | None:
        """Lowest block number not yet handed to the consumer (None: nothing owed).

        The checkpoint may not pass it. A subscriber that fell behind owes nothing live (it
        replays from the store), and neither does a closed one.
        """
        if self._behind_from is not None or (self._closed and not self._queue):
            return None
        if self.in_hand is not None:
            return self.in_hand
        return self._queue[0].number if self._queue else None

    def push(self, block: Block) -> bool:
        """Hand over one block without waiting; returns False if the subscriber is behind."""
        if self._closed or self._behind_from is not None:
            return False
        if len(self._queue) >= self.maxsize:
            self._behind_from = block.number
            self.fell_behind += 1
            self._wakeup.set()
            return False
        self._queue.append(block)
        self._wakeup.set()
        return True

    def close(self, error: BaseException | None = None) -> None:
        """The feed stopped: the iterator ends after the queue (raising ``error`` if given)."""
        self._closed = True
        if error is not None and self._error is None:
            self._error = error
        self._wakeup.set()

    def cancel(self) -> None:
        """Stop this subscription; the feed forgets it."""
        if not self._closed:
            self.close()
        self._queue.clear()
        self._on_cancel(self)
        self._on_progress()

    def __aiter__(self) -> FeedSubscription:
        return self

    async def __anext__(self) -> Block:
        while True:
            if self._queue:
                self.received += 1
                block = self._queue.popleft()
                self._on_progress()
                return block
            if self._behind_from is not None:
                await self._refill(self._behind_from)
                continue
            if self._closed:
                if self._error is not None:
                    error, self._error = self._error, None
                    raise error
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()

    async def _refill(self, start: int) -> None:
        blocks = await self._catch_up(start, self.maxsize)
        if not blocks or blocks[0].number != start:
            self._behind_from = None
            self._closed = True
            raise SubscriberLagged(start)
        self._queue.extend(blocks)
        after = blocks[-1].number + 1
        last = self._last_delivered()
        # No await between this check and rejoining: no push can slip in between.
        self._behind_from = None if last is None or after > last else after
