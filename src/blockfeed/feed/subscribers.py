"""Subscribers: one bounded queue each, so a slow or failing consumer never stalls the feed.

Acknowledgement (what the checkpoint follows)
---------------------------------------------
A block is *handed* to a subscriber when its iterator yields it (a callback subscriber's
runner is such an iterator), and *acknowledged* when the consumer asks for the next block
(the next ``__anext__``), or closes the subscription normally with :meth:`aclose`. A callback
therefore acknowledges a block when it returns (or raises: the error is logged and the block
counts as handled). The feed moves the checkpoint only up to the lowest block some live
subscriber has not acknowledged yet, minus one, so a block that was yielded but not yet
processed when the process died is delivered again after the restart: at least once across
crashes, exactly once within a process.

:meth:`aclose` acknowledges the last block and stops receiving, but keeps owing the blocks it
never got, so the checkpoint stays at its last block until the feed stops (the next run starts
right after it) or the iterator is dropped. :meth:`cancel` (and dropping an iterator, which
the feed holds weakly) abandons the subscription: it owes nothing any more, so the checkpoint
may pass its unacknowledged block.

Queues
------
The feed *pushes* every block into every subscriber's queue without waiting. A subscriber
whose queue is full is marked "behind" from that block on and stops receiving pushes; when its
consumer has drained the queue, it catches up by reading the missed blocks back (those the feed
still holds in memory because this subscriber has not acknowledged them, else the store's
window) and then rejoins the live stream. While behind it still holds the checkpoint, up to the
feed's lag limit; past it, or if the blocks cannot be read back (no store), the iterator raises
:class:`SubscriberLagged` with the number to resume from: a subscriber is never handed a
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

    Asking for the next block acknowledges the previous one. ``await aclose()`` acknowledges
    the last block and ends the subscription; ``cancel()`` ends it without acknowledging (the
    iterator stops after what it already holds).
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
        self._abandoned = False
        self._error: BaseException | None = None
        self._catch_up = catch_up
        self._last_delivered = last_delivered
        self._on_cancel = on_cancel
        self._on_progress = on_progress
        self._in_hand: int | None = None
        self._last_handed: int | None = None
        self._last_handed_hash: str | None = None
        self._owes_after_close: int | None = None

    @property
    def behind(self) -> bool:
        """True while the subscriber is catching up instead of receiving live blocks."""
        return self._behind_from is not None

    @property
    def queued(self) -> int:
        """Blocks waiting in the queue."""
        return len(self._queue)

    @property
    def in_hand(self) -> int | None:
        """Number of the block handed to the consumer and not acknowledged yet (None: none)."""
        return self._in_hand

    def owed_from(self) -> int | None:
        """Lowest block number this subscriber has not acknowledged (None: nothing owed).

        The checkpoint may not pass it: the block in the consumer's hands, else the head of
        the queue, else (behind) the first block it will read back, else (closed with
        :meth:`aclose`) the first block it never got. An abandoned subscription owes nothing,
        nor does one that ended with ``SubscriberLagged``.
        """
        if self._abandoned:
            return None
        if self._in_hand is not None:
            return self._in_hand
        if self._queue:
            return self._queue[0].number
        if self._behind_from is not None:
            return self._behind_from
        return self._owes_after_close

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
        """The feed stopped: the iterator ends after the queue (raising ``error`` if given).

        What the consumer holds stays owed (the feed's final checkpoint does not pass it).
        """
        self._closed = True
        if error is not None and self._error is None:
            self._error = error
        self._wakeup.set()

    def cut_off(self) -> None:
        """The feed gave up on this subscriber (too far behind): it owes nothing from now on,
        and its next ``__anext__`` raises ``SubscriberLagged`` with the number to resume from."""
        resume = self._resume_number()
        self._queue.clear()
        self._behind_from = None
        self._in_hand = None
        self._abandoned = True
        if resume is not None:
            self.close(SubscriberLagged(resume))
        else:
            self.close()

    def cancel(self) -> None:
        """Stop this subscription without acknowledging the block in hand; the feed forgets it
        (so that block no longer holds the checkpoint)."""
        if not self._closed:
            self.close()
        self._queue.clear()
        self._behind_from = None
        self._abandoned = True
        self._on_cancel(self)
        self._on_progress()

    async def aclose(self) -> None:
        """A normal close: acknowledge the block in hand and stop receiving.

        Blocks this subscription never got stay owed (the checkpoint stays at the last block it
        had) until the feed stops or the iterator is dropped: the next run starts right after
        the last block handled here, never past blocks nobody handled.
        """
        if self._abandoned:
            return
        self._acknowledge()
        if self._queue:
            owes: int | None = self._queue[0].number
        elif self._behind_from is not None:
            owes = self._behind_from
        else:
            last = self._last_delivered()
            owes = None if last is None else last + 1
        self._owes_after_close = owes
        self.close()
        self._queue.clear()
        self._behind_from = None
        self._on_progress()

    @property
    def closed(self) -> bool:
        """True once the subscription stopped receiving (feed stopped, aclose, cancel)."""
        return self._closed

    def __aiter__(self) -> FeedSubscription:
        return self

    async def __anext__(self) -> Block:
        self._acknowledge()  # asking for the next block: the previous one is done
        while True:
            if self._queue:
                self.received += 1
                block = self._queue.popleft()
                self._in_hand = self._last_handed = block.number
                self._last_handed_hash = block.hash
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

    def _acknowledge(self) -> None:
        if self._in_hand is not None:
            self._in_hand = None
            self._on_progress()

    def _resume_number(self) -> int | None:
        if self._last_handed is not None:
            return self._last_handed + 1
        if self._queue:
            return self._queue[0].number
        return self._behind_from

    async def _refill(self, start: int) -> None:
        blocks = await self._catch_up(start, self.maxsize)
        if self._behind_from != start:
            return  # cut off (or cancelled) while reading back
        linked = self._last_handed_hash is None or self._last_handed != start - 1 or (
            bool(blocks) and blocks[0].parent_hash == self._last_handed_hash)
        if not blocks or blocks[0].number != start or not linked:
            # Nothing to replay, or a replay that does not extend what this subscriber was
            # handed (a damaged store): never hand it out, the subscriber must resume.
            self._behind_from = None
            self._closed = True
            raise SubscriberLagged(start)
        self._queue.extend(blocks)
        after = blocks[-1].number + 1
        last = self._last_delivered()
        # No await between this check and rejoining: no push can slip in between.
        self._behind_from = None if last is None or after > last else after
