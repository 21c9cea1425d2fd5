"""EpochMonitor: named triggers at a position in each epoch, exactly once per process, at least
once across crashes, and late (but in order) after an outage.

How a block becomes trigger calls
    The feed hands each block to :meth:`EpochMonitor.on_block`, which only queues it (so the
    monitor never blocks the feed). One worker task takes blocks in order, asks the schedule
    which epoch the block is in, and runs every trigger due at that block -- in block order, then
    registration order -- one after another. A handler receives a :class:`TriggerContext`; its
    ``key`` ``(name, epoch)`` is the idempotency key.

Exactly once in a process, at least once across crashes
    A key is run at most once per process (a set of keys already attempted). When the handler
    returns, ``(name, epoch)`` is recorded in the store as ``fired``; a key with a record is
    never run again, even by a later process. The feed moves its checkpoint once the monitor has
    *queued* a block, so a crash can lose a queued or running trigger; that is why the monitor,
    on its first block after a start, looks back over the blocks the store says were delivered
    (its window) and runs every due trigger without a record, marked late. A handler that was
    running when the process died therefore runs again: make it idempotent on ``key``.

Late triggers
    A trigger is ``late`` when it fires well after its block was the chain's finalized head:
    * its block was skipped (the monitor saw a jump in block numbers) or fell in the window of a
      previous run without a record (see above): those fire first, in order, before the block
      that revealed them;
    * its block was delivered as catch-up: ``block.late`` (backfill/replay) and, estimated from
      the last live block and ``block_time_s``, more than ``late_after_blocks`` behind the head.
      (Routine gap fills of a block or two are not late; a backfill after downtime is. After a
      restart the estimate starts from the newest block in the store and when it was received.)
    Reconstructed triggers (jumps and the restart look-back) go back at most ``max_late_epochs``
    epochs before the current one; older ones are skipped with a warning.

Failing handlers
    An exception is retried after the delays from ``retry_delays`` (exponential with jitter by
    default) up to ``max_attempts`` in all; then the key is recorded as ``failed`` and a
    ``FeedEvent(kind="trigger_failed")`` goes to every event hook. Failures never reach the feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from blockfeed import defaults
from blockfeed.core.backoff import backoff
from blockfeed.epochs.schedule import EpochSchedule, EpochSpan, Schedule
from blockfeed.errors import BlockfeedError, ConfigError, MalformedFrame, RpcError, StoreError
from blockfeed.store import CheckpointStore
from blockfeed.store.checkpoint import TriggerStatus
from blockfeed.types import Block, FeedEvent

logger = logging.getLogger("blockfeed.epochs")

DEFAULT_BLOCK_TIME_S = defaults.BLOCK_TIME_S
DEFAULT_LATE_AFTER_BLOCKS = 3
DEFAULT_MAX_LATE_EPOCHS = 2
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_RETRY_INITIAL_S = 1.0
DEFAULT_RETRY_CAP_S = 60.0
MAX_REMEMBERED_KEYS = 4_096
MAX_ERROR_CHARS = 500

Handler = Callable[["TriggerContext"], Awaitable[None] | None]
EventHook = Callable[[FeedEvent], None]


def default_retry_delays() -> Iterator[float]:
    """Delays before handler retries: full-jitter exponential backoff, 1 s doubling to 60 s."""
    return backoff(initial_s=DEFAULT_RETRY_INITIAL_S, cap_s=DEFAULT_RETRY_CAP_S)


class _Subscribable(Protocol):
    def subscribe(self, callback: Callable[[Block], Any], *, name: str = ...) -> Any: ...


@dataclass(frozen=True, slots=True)
class TriggerContext:
    """What a trigger handler is told; ``key`` is its idempotency key."""

    name: str
    epoch: int
    block_number: int
    """The block the trigger was due at."""
    late: bool
    """True when it fires well after that block was the head (outage, downtime, catch-up)."""
    attempt: int = 1
    """1 for the first call, 2 for the first retry, ..."""
    block: Block | None = None
    """The delivered block it was due at, with its contents when the feed fetches them
    (``BlockFeed(contents=...)``: ``block.events``, ...). None when it fires for a block the
    monitor did not see (skipped, or delivered before a restart)."""

    @property
    def key(self) -> tuple[str, int]:
        """``(name, epoch)``: the same for every attempt and every process."""
        return (self.name, self.epoch)


@dataclass(frozen=True, slots=True)
class _Trigger:
    name: str
    offset: int
    handler: Handler
    order: int


@dataclass(frozen=True, slots=True)
class _Due:
    trigger: _Trigger
    epoch: int
    block_number: int
    late: bool
    block: Block | None = None


@dataclass(frozen=True, slots=True)
class _Seen:
    """The little the monitor keeps of a queued block."""

    number: int
    hash: str
    late: bool
    seen_at: float
    block: Block | None = None


class EpochMonitor:
    """Runs named triggers at positions in each epoch of ``schedule`` (see the module docs)."""

    def __init__(
        self,
        schedule: Schedule,
        store: CheckpointStore | None = None,
        *,
        clock: Callable[[], float] = time.time,
        block_time_s: float = DEFAULT_BLOCK_TIME_S,
        late_after_blocks: int = DEFAULT_LATE_AFTER_BLOCKS,
        max_late_epochs: int = DEFAULT_MAX_LATE_EPOCHS,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        retry_delays: Callable[[], Iterator[float]] = default_retry_delays,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        handler_timeout_s: float | None = None,
        on_event: EventHook | None = None,
    ) -> None:
        """``clock`` gives Unix seconds (compared with ``Block.received_at``); ``sleep`` and
        ``retry_delays`` are injectable so tests need no real waiting."""
        if not block_time_s > 0:
            raise ConfigError(f"block_time_s must be > 0, got {block_time_s!r}")
        for option, value, low in (
            ("late_after_blocks", late_after_blocks, 0),
            ("max_late_epochs", max_late_epochs, 0),
            ("max_attempts", max_attempts, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{option} must be an integer >= {low}, got {value!r}")
        if handler_timeout_s is not None and not handler_timeout_s > 0:
            raise ConfigError(f"handler_timeout_s must be > 0 or None, got {handler_timeout_s!r}")
        self.schedule = schedule
        self.store = store
        self._clock = clock
        self._block_time_s = float(block_time_s)
        self._late_after_blocks = late_after_blocks
        self._max_late_epochs = max_late_epochs
        self._max_attempts = max_attempts
        self._retry_delays = retry_delays
        self._sleep = sleep
        self._handler_timeout_s = handler_timeout_s
        self._hooks: list[EventHook] = [] if on_event is None else [on_event]
        self._triggers: list[_Trigger] = []
        self._queue: asyncio.Queue[_Seen] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self._last_number: int | None = None
        self._attempted: set[tuple[str, int]] = set()
        self._attempted_order: deque[tuple[str, int]] = deque()
        self._anchor = self._anchor_from_store()
        self.fired = 0
        """Handlers that returned, this process."""
        self.failed = 0
        """Keys given up on after ``max_attempts``, this process."""

    # -- registration -----------------------------------------------------------------------

    def at_block(self, name: str, block_in_epoch: int, handler: Handler) -> None:
        """Run ``handler`` once per epoch at position ``block_in_epoch`` (0 = first block)."""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"trigger name must be a non-empty string, got {name!r}")
        if any(t.name == name for t in self._triggers):
            raise ConfigError(f"a trigger named {name!r} is already registered")
        if (
            isinstance(block_in_epoch, bool)
            or not isinstance(block_in_epoch, int)
            or block_in_epoch < 0
        ):
            raise ConfigError(f"block_in_epoch must be an integer >= 0, got {block_in_epoch!r}")
        if isinstance(self.schedule, EpochSchedule) and block_in_epoch >= self.schedule.length:
            raise ConfigError(
                f"block_in_epoch {block_in_epoch} is outside an epoch of "
                f"{self.schedule.length} blocks (0..{self.schedule.length - 1})"
            )
        if not callable(handler):
            raise ConfigError(f"handler for trigger {name!r} must be callable")
        self._triggers.append(_Trigger(name, block_in_epoch, handler, len(self._triggers)))

    def on_epoch_start(self, name: str, handler: Handler) -> None:
        """Run ``handler`` once per epoch, at its first block."""
        self.at_block(name, 0, handler)

    def add_event_hook(self, hook: EventHook) -> None:
        """Call ``hook(FeedEvent)`` for every event (``trigger_failed``)."""
        self._hooks.append(hook)

    # -- lifecycle --------------------------------------------------------------------------

    def attach(self, feed: _Subscribable) -> Any:
        """Subscribe to ``feed`` with ``feed.subscribe(monitor.on_block)``; returns that
        subscription (cancel it to detach)."""
        return feed.subscribe(self.on_block, name="epoch-monitor")

    async def on_block(self, block: Block) -> None:
        """Queue ``block`` for the worker; returns at once (never waits for handlers).

        After :meth:`aclose` blocks are ignored (a feed subscription may outlive the monitor).
        """
        if self._closed:
            return
        self._ensure_worker()
        assert self._queue is not None
        self._queue.put_nowait(_Seen(block.number, block.hash, block.late, self._clock(), block))

    async def start(self) -> None:
        """Start the worker task (``on_block`` does it too when needed)."""
        self._closed = False
        self._ensure_worker()

    async def join(self) -> None:
        """Wait until every queued block has been processed and its triggers have run."""
        if self._queue is not None:
            await self._queue.join()

    async def aclose(self) -> None:
        """Stop the worker; queued blocks not yet processed are dropped (the restart look-back
        finds their triggers again)."""
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    async def __aenter__(self) -> EpochMonitor:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _ensure_worker(self) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(
                self._run(), name="blockfeed-epoch-monitor"
            )

    # -- the worker -------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            seen = await self._queue.get()
            try:
                await self._process(seen)
            except asyncio.CancelledError:
                raise
            except BlockfeedError as exc:  # e.g. ConfigError: the subnet runs no epochs
                logger.error("epoch monitor: block %d skipped: %s", seen.number, exc)
            except Exception:
                logger.exception("epoch monitor: could not process block %d; skipped", seen.number)
            finally:
                self._queue.task_done()

    async def _process(self, seen: _Seen) -> None:
        if self._last_number is not None and seen.number <= self._last_number:
            return  # already handled (a replay or duplicate); numbers only move forward
        span = await self._span(seen.number, seen.hash)
        due: list[_Due] = []
        if self._last_number is None:
            due.extend(await self._missed_at_start(seen.number, span))
        elif seen.number > self._last_number + 1:
            due.extend(
                await self._missed_between(self._last_number + 1, seen.number - 1, span, warn=True)
            )
        late_now = self._is_late(seen)
        for trigger in self._triggers:
            if span.start + trigger.offset == seen.number:
                due.append(_Due(trigger, span.epoch, seen.number, late_now, seen.block))
        self._last_number = seen.number
        self._move_anchor(seen)
        due.sort(key=lambda d: (d.block_number, d.trigger.order))
        for item in due:
            await self._fire(item)

    async def _span(self, number: int, block_hash: str | None) -> EpochSpan:
        """Ask the schedule, retrying RPC trouble with backoff until it answers."""
        delays = self._retry_delays()
        while True:
            try:
                return await self.schedule.span_of(number, block_hash=block_hash)
            except (RpcError, MalformedFrame) as exc:
                delay = next(delays)
                logger.warning(
                    "epoch monitor: cannot place block %d in its epoch (%s); retrying in %.1fs",
                    number,
                    exc,
                    delay,
                )
                await self._sleep(delay)

    async def _missed_at_start(self, number: int, span: EpochSpan) -> list[_Due]:
        """Due triggers in blocks a previous run delivered (store window) or skipped."""
        if self.store is None or not self._triggers:
            return []
        try:
            bounds = self.store.window_bounds()
        except StoreError:
            logger.exception("epoch monitor: cannot read the store; no restart look-back")
            return []
        if bounds is None or bounds[0] >= number:
            return []
        missed = await self._missed_between(bounds[0], number - 1, span)
        return [d for d in missed if not self._store_says_done(d.trigger.name, d.epoch)]

    async def _missed_between(
        self, first: int, last: int, span: EpochSpan, *, warn: bool = False
    ) -> list[_Due]:
        """Triggers due in blocks ``first..last`` (not seen live): all late, oldest first.

        Goes back at most ``max_late_epochs`` epochs before ``span``; ``warn`` logs what a jump
        skipped beyond that (the restart look-back is a bound, not a loss, so it stays quiet).
        """
        spans = [span]
        while spans[0].start > first and len(spans) <= self._max_late_epochs:
            before = spans[0].start - 1
            spans.insert(0, await self._span(before, self._stored_hash(before)))
        if warn and spans[0].start > first:
            logger.warning(
                "epoch monitor: triggers due in blocks %d..%d are more than %d epochs old; "
                "not fired (max_late_epochs)",
                first,
                spans[0].start - 1,
                self._max_late_epochs,
            )
        due = []
        for each in spans:
            for trigger in self._triggers:
                block = each.start + trigger.offset
                if first <= block <= last and block <= each.end:
                    due.append(_Due(trigger, each.epoch, block, late=True))
        return due

    def _stored_hash(self, number: int) -> str | None:
        if self.store is None:
            return None
        try:
            block = self.store.get_block(number)
        except StoreError:
            return None
        return None if block is None else block.hash

    # -- lateness ---------------------------------------------------------------------------

    def _anchor_from_store(self) -> tuple[int, float] | None:
        """(number, received_at) of the newest block a previous run delivered."""
        if self.store is None:
            return None
        try:
            latest = self.store.latest()
        except StoreError:
            logger.warning("epoch monitor: cannot read the store's latest block", exc_info=True)
            return None
        return None if latest is None else (latest.number, latest.received_at)

    def _estimated_head(self, at: float) -> float | None:
        if self._anchor is None:
            return None
        number, seen_at = self._anchor
        return number + max(0.0, at - seen_at) / self._block_time_s

    def _is_late(self, seen: _Seen) -> bool:
        if not seen.late:
            return False
        head = self._estimated_head(seen.seen_at)
        if head is None:
            return True  # a replayed block before any live one: nothing says it is current
        return head - seen.number > self._late_after_blocks

    def _move_anchor(self, seen: _Seen) -> None:
        head = self._estimated_head(seen.seen_at)
        if not seen.late or (head is not None and seen.number >= head):
            self._anchor = (seen.number, seen.seen_at)

    # -- firing -----------------------------------------------------------------------------

    async def _fire(self, due: _Due) -> None:
        name, epoch = due.trigger.name, due.epoch
        key = (name, epoch)
        if key in self._attempted:
            return
        if self.store is not None and self._store_says_done(name, epoch):
            self._remember(key)
            return
        self._remember(key)
        delays = self._retry_delays()
        attempt = 0
        while True:
            attempt += 1
            context = TriggerContext(name, epoch, due.block_number, due.late, attempt, due.block)
            try:
                await self._call(due.trigger.handler, context)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if attempt >= self._max_attempts:
                    self._give_up(due, attempt, exc)
                    return
                delay = next(delays)
                logger.warning(
                    "trigger %r (epoch %d) failed on attempt %d/%d: %r; retrying in %.1fs",
                    name,
                    epoch,
                    attempt,
                    self._max_attempts,
                    exc,
                    delay,
                )
                await self._sleep(delay)
                continue
            self.fired += 1
            logger.info(
                "trigger %r fired | epoch %d | block #%d%s",
                name,
                epoch,
                due.block_number,
                " | LATE" if due.late else "",
            )
            self._record(due, "fired", attempt, "")
            return

    async def _call(self, handler: Handler, context: TriggerContext) -> None:
        result = handler(context)
        if inspect.isawaitable(result):
            if self._handler_timeout_s is None:
                await result
            else:
                async with asyncio.timeout(self._handler_timeout_s):
                    await result

    def _give_up(self, due: _Due, attempts: int, exc: Exception) -> None:
        self.failed += 1
        error = repr(exc)[:MAX_ERROR_CHARS]
        name, epoch = due.trigger.name, due.epoch
        logger.error(
            "trigger %r (epoch %d) failed %d times; giving up: %s", name, epoch, attempts, error
        )
        self._record(due, "failed", attempts, error)
        event = FeedEvent(
            kind="trigger_failed",
            at=self._clock(),
            reason=f"trigger {name!r} for epoch {epoch} failed {attempts} times: {error}",
            details={
                "name": name,
                "epoch": epoch,
                "block_number": due.block_number,
                "late": due.late,
                "attempts": attempts,
                "error": error,
            },
        )
        for hook in list(self._hooks):
            try:
                hook(event)
            except Exception:
                logger.exception("epoch monitor: event hook %r raised", hook)

    def _record(self, due: _Due, status: TriggerStatus, attempts: int, detail: str) -> None:
        if self.store is None:
            return
        try:
            self.store.record_trigger(
                due.trigger.name,
                due.epoch,
                status=status,
                late=due.late,
                detail=detail,
                block_number=due.block_number,
                attempts=attempts,
                recorded_at=self._clock(),
            )
        except StoreError:
            # Not recorded means it may run again after a restart: at least once still holds.
            logger.exception("epoch monitor: could not record trigger %r", due.trigger.name)

    def _store_says_done(self, name: str, epoch: int) -> bool:
        assert self.store is not None
        try:
            return self.store.trigger_done(name, epoch)
        except StoreError:
            logger.exception("epoch monitor: cannot read trigger records; running %r", name)
            return False

    def _remember(self, key: tuple[str, int]) -> None:
        self._attempted.add(key)
        self._attempted_order.append(key)
        while len(self._attempted_order) > MAX_REMEMBERED_KEYS:
            self._attempted.discard(self._attempted_order.popleft())
