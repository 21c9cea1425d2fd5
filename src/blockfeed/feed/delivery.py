"""Delivery: subscribers, acknowledgements and the checkpoint.

:class:`Delivery` hands verified blocks to every subscriber (each with its own bounded queue,
never waiting), works out how far all of them have acknowledged, and moves the store's
checkpoint up to there: in the background after each acknowledgement, on demand
(:meth:`Delivery.save_checkpoint`), and once more, shielded, when the feed stops.

Delivery across crashes: at least once, and exactly what repeats
-----------------------------------------------------------------
Within one process every subscriber gets each block exactly once, in order (the merge's
guarantee, :mod:`blockfeed.core.merge`). Across a crash (SIGKILL, power loss) the guarantee is
*at least once*, with a precise bound:

* An iterator *acknowledges* block n when its consumer asks for the next block (the next
  ``__anext__``, i.e. the next turn of ``async for``) or closes it with ``await sub.aclose()``;
  a callback acknowledges a block when it returns (or raises: the error is logged). A block that
  was yielded but not yet processed is not acknowledged.
* The checkpoint is the highest number every live subscriber has acknowledged (the lowest
  unacknowledged number across subscribers, minus one). It is written to the store in the
  background after each acknowledgement (``await feed.save_checkpoint()`` forces it), and once
  more, shielded, when the feed stops.
* A restarted feed resumes at the stored checkpoint + 1. So a crash repeats, for each
  subscriber, exactly the blocks above the stored checkpoint that it had already been handed:
  the one it held unacknowledged (one per iterator or callback), plus any it acknowledged that
  the checkpoint did not cover yet (a write was in flight, or another subscriber was slower).
  Nothing is skipped. Each block carries its number (and hash) as the idempotency key: a
  consumer that records "done up to n" next to its own effects can drop the repeats.
* ``await sub.aclose()`` acknowledges the last block and stops receiving, but keeps owing the
  blocks it never got until the feed stops (or the iterator is dropped), so the checkpoint
  stays at the last block it handled: the next run starts right after it, never past blocks
  nobody handled. ``cancel()`` (or dropping an iterator, which the feed holds weakly) abandons
  a subscription: it owes nothing, so its unacknowledged block stops holding the checkpoint. A
  subscriber more than ``lag_limit_blocks`` (or its queue size) behind is cut off with
  ``SubscriberLagged`` and stops holding it too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import itertools
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from blockfeed.errors import BlockfeedError, ConfigError, StoreError
from blockfeed.feed.logs import FeedLog
from blockfeed.feed.subscribers import FeedSubscription
from blockfeed.store import CheckpointStore
from blockfeed.types import Block

logger = logging.getLogger("blockfeed")

RECENT_BLOCKS_KEPT = 1024
SAVE_RETRY_INITIAL_S = 0.5
SAVE_RETRY_CAP_S = 10.0
"""A failed background checkpoint write is retried after 0.5 s, doubling up to 10 s."""

BlockCallback = Callable[[Block], Any]


class Delivery:
    """Subscribers of one feed, what they acknowledged, and the checkpoint that follows."""

    def __init__(
        self,
        *,
        store: CheckpointStore | None,
        subscriber_maxsize: int,
        lag_limit_blocks: int,
        log: FeedLog,
        log_blocks: bool,
    ) -> None:
        self._store = store
        self._subscriber_maxsize = subscriber_maxsize
        self._lag_limit_blocks = lag_limit_blocks
        self._log = log
        self._log_blocks = log_blocks
        self._iter_subs: weakref.WeakSet[FeedSubscription] = weakref.WeakSet()
        self._callback_subs: dict[FeedSubscription, BlockCallback] = {}
        self._callback_tasks_pending: list[FeedSubscription] = []
        self._tg: asyncio.TaskGroup | None = None
        self._closed = False
        self._close_error: BaseException | None = None
        self._save_wake = asyncio.Event()
        self._save_inflight: asyncio.Future[None] | None = None
        self._save_lock = asyncio.Lock()
        self.recent_blocks: deque[Block] = deque(maxlen=RECENT_BLOCKS_KEPT)
        self.unsaved: list[Block] = []
        """Delivered blocks not in the store yet (all of them are held until saved)."""
        self.saved_through: int | None = None
        """Number of the stored checkpoint (None: nothing saved in this chain yet)."""
        self.last_block: Block | None = None
        self._sub_counter = 0

    # ------------------------------------------------------------------ subscribers

    @property
    def subscriber_count(self) -> int:
        return len(self._iter_subs) + len(self._callback_subs)

    def add_iterator(self, name: str | None, maxsize: int | None) -> FeedSubscription:
        """A new iterator subscription (held weakly: dropping it abandons it)."""
        self._sub_counter += 1
        subscription = self._new_subscription(name or f"iterator-{self._sub_counter}", maxsize)
        self._iter_subs.add(subscription)
        return subscription

    def add_callback(self, name: str, maxsize: int | None,
                     callback: BlockCallback) -> FeedSubscription:
        """A new callback subscription, run in its own task once the feed runs."""
        subscription = self._new_subscription(name, maxsize)
        self._callback_subs[subscription] = callback
        if self._tg is not None:
            self._tg.create_task(self._run_callback(subscription, callback),
                                 name=f"blockfeed-subscriber {subscription.name}")
        else:
            self._callback_tasks_pending.append(subscription)
        return subscription

    def start(self, tg: asyncio.TaskGroup) -> None:
        """Run in ``tg`` from now on: callback subscribers added before the start, then every
        new one. The checkpoint writer is :meth:`checkpoint_loop`."""
        self._tg = tg
        for subscription in self._callback_tasks_pending:
            callback = self._callback_subs.get(subscription)
            if callback is not None:
                tg.create_task(self._run_callback(subscription, callback),
                               name=f"blockfeed-subscriber {subscription.name}")
        self._callback_tasks_pending.clear()

    def detach(self) -> None:
        """The task group is gone: start no more tasks."""
        self._tg = None

    def close_all(self, error: BaseException | None) -> None:
        """The feed stopped: every subscription ends (with ``error`` if it failed), and one
        made from now on ends at once."""
        self._closed, self._close_error = True, error
        for subscription in [*self._iter_subs, *self._callback_subs]:
            subscription.close(error)

    def _new_subscription(self, name: str, maxsize: int | None) -> FeedSubscription:
        size = self._subscriber_maxsize if maxsize is None else maxsize
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"maxsize must be a positive integer, got {size!r}")
        subscription = FeedSubscription(
            name=name,
            maxsize=size,
            catch_up=self._catch_up,
            last_delivered=lambda: None if self.last_block is None else self.last_block.number,
            on_cancel=self._forget,
            on_progress=self._wake_saver,
        )
        if self._closed:
            subscription.close(self._close_error)
        return subscription

    def _wake_saver(self) -> None:
        self._save_wake.set()

    def _forget(self, subscription: FeedSubscription) -> None:
        self._iter_subs.discard(subscription)
        self._callback_subs.pop(subscription, None)

    async def _run_callback(self, subscription: FeedSubscription, callback: BlockCallback) -> None:
        """Call ``callback`` for each block; asking for the next block acknowledges this one,
        so a block counts as handled once the callback returned (or raised)."""
        name = subscription.name
        try:
            async for block in subscription:
                try:
                    result = callback(block)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    logger.exception("subscriber %s raised on block #%d; it keeps receiving",
                                     name, block.number)
        except asyncio.CancelledError:
            # The feed is stopping: stay registered, so the final checkpoint does not pass the
            # block this callback still held (it is delivered again after a restart).
            raise
        except BlockfeedError as exc:
            logger.error("subscriber %s stopped: %s", name, exc)
        self._callback_subs.pop(subscription, None)
        self._wake_saver()

    # ------------------------------------------------------------------ delivery

    def deliver(self, blocks: list[Block]) -> None:
        """Queue each block for every subscriber (never waiting); the checkpoint follows once
        each subscriber has acknowledged it (see :meth:`_save_frontier`)."""
        subscribers = [*self._iter_subs, *self._callback_subs]
        delivered_at = time.time()
        blocks = [dataclasses.replace(block, delivered_at=delivered_at) for block in blocks]
        for block in blocks:
            if self._log_blocks:
                self._log.block(block)
            self.last_block = block
            self.recent_blocks.append(block)
            for subscription in subscribers:
                was_behind = subscription.behind
                subscription.push(block)
                if subscription.behind and not was_behind:
                    logger.warning(
                        "subscriber %s fell %d blocks behind at #%d; it catches up from the "
                        "store, or gets SubscriberLagged without one",
                        subscription.name, subscription.queued, block.number,
                    )
        self.unsaved.extend(blocks)
        self._save_wake.set()

    async def _catch_up(self, start: int, limit: int) -> list[Block]:
        """Consecutive, parent-linked blocks from ``start`` for a subscriber that fell behind:
        the store's window for saved ones, then memory (blocks not saved yet are all still
        held, since the checkpoint waits for this subscriber). The replay stops at the first
        block that does not link to the one before it: like every delivery path, it never
        hands out a block it could not verify (the subscriber's own link to the first block is
        checked by the subscription)."""
        store = self._store
        if store is None:
            return []
        out: list[Block] = []
        if self.saved_through is not None and start <= self.saved_through:
            try:
                stored = await asyncio.to_thread(store.get_range, start, limit)
            except StoreError as exc:
                logger.error("cannot replay blocks for a lagging subscriber: %s", exc)
                return []
            for block in stored:
                if block.number != start + len(out):
                    break
                out.append(block)
        for held in (self.unsaved, self.recent_blocks):
            if len(out) >= limit:
                break
            out.extend(_consecutive_from(held, start + len(out), limit - len(out)))
        for index in range(1, len(out)):
            if out[index].parent_hash != out[index - 1].hash:
                logger.error("replay for a lagging subscriber stops at #%d: it does not link to "
                             "#%d (damaged state file?)", out[index].number, out[index - 1].number)
                return out[:index]
        return out

    # ------------------------------------------------------------------ the checkpoint

    def _save_frontier(self) -> int | None:
        """Highest number every live subscriber has acknowledged: the checkpoint may move up to
        it. A subscriber that is behind by more than the lag limit is cut off instead (it gets
        ``SubscriberLagged``), so one stuck consumer cannot pin the checkpoint and memory."""
        last = None if self.last_block is None else self.last_block.number
        owed: list[int] = []
        for sub in [*self._iter_subs, *self._callback_subs]:
            number = sub.owed_from()
            if number is None:
                continue
            limit = max(self._lag_limit_blocks, sub.maxsize + 1)
            if last is not None and last - number >= limit:
                if sub.closed:
                    logger.info("closed subscriber %s released the checkpoint (%d blocks "
                                "behind)", sub.name, last - number)
                else:
                    logger.error(
                        "subscriber %s is %d blocks behind (limit %d): cut off, it gets "
                        "SubscriberLagged and no longer holds the checkpoint",
                        sub.name, last - number, limit,
                    )
                sub.cut_off()
                continue
            owed.append(number)
        if owed:
            return min(owed) - 1
        return last

    async def checkpoint_loop(self) -> None:
        """The background writer: saves what every subscriber acknowledged, after each
        acknowledgement (runs until cancelled)."""
        while True:
            await self._save_wake.wait()
            self._save_wake.clear()
            await self.save_unsaved(retry=True)

    async def save_unsaved(self, *, retry: bool, raise_errors: bool = False) -> None:
        """Save what every subscriber acknowledged; one writer at a time, so the checkpoint
        only moves forward."""
        store = self._store
        if store is None:
            self.unsaved.clear()
            return
        async with self._save_lock:
            delay = SAVE_RETRY_INITIAL_S
            while self.unsaved:
                frontier = self._save_frontier()
                if frontier is None:
                    return
                batch = [b for b in self.unsaved if b.number <= frontier]
                if not batch:
                    return
                future = asyncio.ensure_future(asyncio.to_thread(store.save_blocks, batch))
                self._save_inflight = future
                try:
                    await asyncio.shield(future)
                except StoreError as exc:
                    if raise_errors:
                        raise
                    logger.error("checkpoint write failed (will retry): %s", exc)
                    if not retry:
                        return
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, SAVE_RETRY_CAP_S)
                    continue
                del self.unsaved[: len(batch)]
                self.saved_through = batch[-1].number

    async def save_checkpoint(self) -> int | None:
        """Write the checkpoint now (see :meth:`BlockFeed.save_checkpoint`)."""
        await self.save_unsaved(retry=False, raise_errors=True)
        return self.saved_through

    async def final_checkpoint(self) -> None:
        """Wait for a write in flight, then save what is left (never moves backwards)."""
        inflight = self._save_inflight
        if inflight is not None and not inflight.done():
            # Its waiter was cancelled but the thread still writes; saving after it keeps the
            # checkpoint moving forward only (the batch is saved again below, harmlessly).
            await asyncio.wait({inflight})
        try:
            await self.save_unsaved(retry=False)
        except Exception:
            logger.exception("final checkpoint write failed")


def _consecutive_from(held: Sequence[Block] | deque[Block], start: int, limit: int) -> list[Block]:
    """Up to ``limit`` blocks from ``start`` out of ``held`` (consecutive numbers, ascending)."""
    if not held or limit <= 0:
        return []
    first = held[0].number
    if not first <= start <= held[-1].number:
        return []
    offset = start - first
    if isinstance(held, deque):
        return list(itertools.islice(held, offset, offset + limit))
    return list(held[offset : offset + limit])
