"""EpochMonitor: exactly once per process, late after gaps and restarts, retries, never blocking."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from blockfeed.epochs import EpochMonitor, EpochSchedule, EpochSpan, TriggerContext
from blockfeed.errors import ConfigError, RpcTransportError
from blockfeed.store import MEMORY, CheckpointStore, open_store
from blockfeed.types import Block, FeedEvent, Source, TriggerFailed

BLOCK_TIME_S = 12.0
T0 = 1_700_000_000.0
WAIT_S = 10.0


class FakeClock:
    """Unix-seconds clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def block(number: int, *, late: bool = False, received_at: float | None = None) -> Block:
    """A block whose hash is its number (the monitor never checks hashes)."""
    return Block(
        number=number,
        hash=f"0x{number:064x}",
        parent_hash=f"0x{max(0, number - 1):064x}",
        source=Source.BACKFILL if late else Source.WS,
        received_at=T0 + number * BLOCK_TIME_S if received_at is None else received_at,
        late=late,
    )


def no_delays() -> Iterator[float]:
    """Retry at once."""
    return itertools.repeat(0.0)


class Recorder:
    """A handler that records every context it gets (optionally failing first)."""

    def __init__(self, *, fail_times: int = 0, error: type[Exception] = RuntimeError) -> None:
        self.calls: list[TriggerContext] = []
        self.fail_times = fail_times
        self.error = error

    async def __call__(self, context: TriggerContext) -> None:
        self.calls.append(context)
        if len(self.calls) <= self.fail_times:
            raise self.error(f"boom {len(self.calls)}")

    def keys(self) -> list[tuple[int, int, bool]]:
        """(epoch, block_number, late) of each call."""
        return [(c.epoch, c.block_number, c.late) for c in self.calls]


async def feed_blocks(monitor: EpochMonitor, blocks: list[Block], clock: FakeClock | None = None,
                      store: CheckpointStore | None = None) -> None:
    """Deliver blocks like the feed does (clock at each block's time, then the checkpoint)."""
    for each in blocks:
        if clock is not None and not each.late:
            clock.now = each.received_at
        await monitor.on_block(each)
        if store is not None:
            store.save_blocks([each])
    await asyncio.wait_for(monitor.join(), WAIT_S)


def make_monitor(store: CheckpointStore | None = None, clock: FakeClock | None = None,
                 length: int = 10, **kwargs: Any) -> EpochMonitor:
    return EpochMonitor(
        EpochSchedule(length),
        store,
        clock=clock or FakeClock(),
        block_time_s=BLOCK_TIME_S,
        retry_delays=no_delays,
        **kwargs,
    )


# -- exactly once ----------------------------------------------------------------------------


async def test_each_epoch_fires_exactly_once() -> None:
    """A trigger at block 7 of 10-block epochs fires once per epoch, even if blocks repeat."""
    store = open_store(MEMORY)
    handler = Recorder()
    async with make_monitor(store) as monitor:
        monitor.at_block("consensus", 7, handler)
        await feed_blocks(monitor, [block(n) for n in range(0, 35)])
        await feed_blocks(monitor, [block(17), block(27), block(34)])  # duplicates / replays
    assert handler.keys() == [(0, 7, False), (1, 17, False), (2, 27, False)]
    assert all(c.key == ("consensus", c.epoch) and c.attempt == 1 for c in handler.calls)
    records = store.list_triggers("consensus")
    assert [(r.epoch, r.status, r.block_number, r.late) for r in records] == [
        (2, "fired", 27, False), (1, "fired", 17, False), (0, "fired", 7, False)]
    assert monitor.fired == 3 and monitor.failed == 0


async def test_finney_position() -> None:
    """With 360-block epochs a trigger at 349 fires on block 6940429 for epoch 19278."""
    handler = Recorder()
    async with make_monitor(length=360) as monitor:
        monitor.at_block("consensus", 349, handler)
        await feed_blocks(monitor, [block(n) for n in range(6_940_420, 6_940_440)])
    assert handler.keys() == [(19_278, 6_940_429, False)]


async def test_epoch_start_and_order_within_a_block() -> None:
    """on_epoch_start fires at each epoch's first block; triggers on one block run in
    registration order."""
    order: list[str] = []
    async with make_monitor() as monitor:
        monitor.on_epoch_start("start", lambda ctx: order.append(f"start:{ctx.epoch}"))
        monitor.at_block("also-zero", 0, lambda ctx: order.append(f"zero:{ctx.epoch}"))
        await feed_blocks(monitor, [block(n) for n in range(5, 31)])
    assert order == ["start:1", "zero:1", "start:2", "zero:2", "start:3", "zero:3"]


async def test_recorded_trigger_is_not_run_again() -> None:
    """A key the store already holds (an earlier process fired it) is skipped."""
    store = open_store(MEMORY)
    store.record_trigger("consensus", 1, status="fired", late=False)
    handler = Recorder()
    async with make_monitor(store) as monitor:
        monitor.at_block("consensus", 7, handler)
        await feed_blocks(monitor, [block(n) for n in range(10, 30)])
    assert handler.keys() == [(2, 27, False)]


# -- late triggers ---------------------------------------------------------------------------


async def test_gap_fires_missed_triggers_late_in_order() -> None:
    """A jump from block 5 to 28 fires the triggers due at 7, 17, 27, in order, marked late."""
    handler = Recorder()
    async with make_monitor() as monitor:
        monitor.at_block("t", 7, handler)
        await feed_blocks(monitor, [block(n) for n in range(0, 6)] + [block(28), block(37)])
    assert handler.keys() == [(0, 7, True), (1, 17, True), (2, 27, True), (3, 37, False)]


async def test_gap_firing_is_bounded_by_max_late_epochs() -> None:
    """After a long jump only the current epoch and max_late_epochs before it are fired."""
    handler = Recorder()
    async with make_monitor(max_late_epochs=1) as monitor:
        monitor.at_block("t", 7, handler)
        await feed_blocks(monitor, [block(3), block(58)])
    assert handler.keys() == [(4, 47, True), (5, 57, True)]


async def test_restart_fires_what_the_crash_lost(tmp_path: Path) -> None:
    """A trigger whose block was delivered (checkpointed) but never recorded fires late after a
    restart on the same store; recorded ones do not fire again."""
    path = tmp_path / "state.sqlite"
    clock = FakeClock()
    store = open_store(path)
    first = Recorder()
    async with make_monitor(store, clock) as monitor:
        monitor.at_block("t", 7, first)
        await feed_blocks(monitor, [block(n) for n in range(0, 17)], clock, store)
    # The feed handed blocks 17..19 to the monitor and checkpointed them, then died before the
    # monitor ran the trigger due at 17.
    store.save_blocks([block(n) for n in range(17, 20)])
    store.close()
    assert first.keys() == [(0, 7, False)]

    store = open_store(path)
    second = Recorder()
    clock.now = T0 + 20 * BLOCK_TIME_S + 1.0  # a quick restart
    async with make_monitor(store, clock) as monitor:
        monitor.at_block("t", 7, second)
        await feed_blocks(monitor, [block(n) for n in range(20, 28)], clock, store)
    assert second.keys() == [(1, 17, True), (2, 27, False)]
    assert [(r.epoch, r.late) for r in store.list_triggers("t")] == [(2, False), (1, True),
                                                                     (0, False)]
    store.close()


async def test_restart_after_downtime_marks_catch_up_late() -> None:
    """After an hour down, backfilled blocks are late; once the live head arrives, not late."""
    clock = FakeClock()
    store = open_store(MEMORY)
    store.save_blocks([block(n) for n in range(0, 5)])  # previous run, last block at T0 + 48
    handler = Recorder()
    async with make_monitor(store, clock) as monitor:
        monitor.at_block("t", 7, handler)
        clock.now = T0 + 3_600.0  # head is now about block 300
        await feed_blocks(monitor, [block(n, late=True) for n in range(5, 300)])
        await feed_blocks(monitor, [block(300, received_at=clock.now)])
        clock.now += BLOCK_TIME_S
        await feed_blocks(monitor, [block(n, received_at=clock.now) for n in range(301, 308)])
    late = {c.block_number: c.late for c in handler.calls}
    assert late[7] and late[287] and not late[307]
    assert len(handler.calls) == 31  # blocks 7, 17, ..., 307


async def test_routine_gap_fill_is_not_late() -> None:
    """A block or two backfilled because finality jumped is not late."""
    clock = FakeClock()
    handler = Recorder()
    async with make_monitor(clock=clock) as monitor:
        monitor.at_block("t", 7, handler)
        await feed_blocks(monitor, [block(n) for n in range(0, 6)], clock)
        clock.now = T0 + 8 * BLOCK_TIME_S  # 6, 7, 8 finalized at once
        await feed_blocks(monitor, [block(6, late=True), block(7, late=True)])
        await feed_blocks(monitor, [block(8, received_at=clock.now)])
    assert handler.keys() == [(0, 7, False)]


async def test_in_process_outage_marks_backfill_late() -> None:
    """After ten minutes without blocks, the backfilled trigger block is late."""
    clock = FakeClock()
    handler = Recorder()
    async with make_monitor(clock=clock) as monitor:
        monitor.at_block("t", 7, handler)
        await feed_blocks(monitor, [block(n) for n in range(0, 4)], clock)
        clock.now += 600.0
        await feed_blocks(monitor, [block(n, late=True) for n in range(4, 10)])
    assert handler.keys() == [(0, 7, True)]


async def test_replay_without_any_live_block_is_late() -> None:
    """Blocks replayed from an old start with nothing live seen yet count as late."""
    handler = Recorder()
    async with make_monitor() as monitor:
        monitor.at_block("t", 7, handler)
        await feed_blocks(monitor, [block(n, late=True) for n in range(0, 9)])
    assert handler.keys() == [(0, 7, True)]


# -- failures --------------------------------------------------------------------------------


async def test_failing_handler_retries_then_records_failure() -> None:
    """A handler that keeps raising is retried up to max_attempts, recorded failed, reported,
    and later triggers still run."""
    store = open_store(MEMORY)
    events: list[FeedEvent] = []
    slept: list[float] = []

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)

    failing = Recorder(fail_times=100)
    after = Recorder()
    monitor = EpochMonitor(
        EpochSchedule(10), store, clock=FakeClock(), max_attempts=3,
        retry_delays=lambda: iter([0.5, 1.0, 2.0]), sleep=fake_sleep, on_event=events.append,
    )
    async with monitor:
        monitor.at_block("bad", 7, failing)
        monitor.at_block("good", 7, after)
        await feed_blocks(monitor, [block(n) for n in range(0, 18)])
    assert [c.attempt for c in failing.calls] == [1, 2, 3, 1, 2, 3]
    assert slept == [0.5, 1.0, 0.5, 1.0]
    assert after.keys() == [(0, 7, False), (1, 17, False)]
    record = store.list_triggers("bad", status="failed")[0]
    assert (record.epoch, record.attempts) == (1, 3)
    assert "boom" in record.detail
    assert [e.kind for e in events] == ["trigger_failed", "trigger_failed"]
    first = events[0]
    assert isinstance(first, TriggerFailed) and (first.name, first.attempts) == ("bad", 3)
    assert (first.epoch, first.block_number, first.late) == (0, 7, False)
    assert "boom" in first.error
    assert monitor.failed == 2 and monitor.fired == 2


async def test_retry_then_success_is_recorded_fired() -> None:
    """Two failures then success: fired, with the attempt count, no event."""
    store = open_store(MEMORY)
    events: list[FeedEvent] = []
    handler = Recorder(fail_times=2)
    async with make_monitor(store, on_event=events.append) as monitor:
        monitor.at_block("t", 7, handler)
        await feed_blocks(monitor, [block(n) for n in range(0, 9)])
    assert [c.attempt for c in handler.calls] == [1, 2, 3]
    assert {c.key for c in handler.calls} == {("t", 0)}
    record = store.list_triggers("t")[0]
    assert (record.status, record.attempts) == ("fired", 3)
    assert events == []


async def test_failed_key_is_not_retried_after_restart() -> None:
    """A key recorded failed is not run again by the next process."""
    store = open_store(MEMORY)
    async with make_monitor(store, max_attempts=1) as monitor:
        monitor.at_block("t", 7, Recorder(fail_times=1))
        await feed_blocks(monitor, [block(n) for n in range(0, 9)], store=store)
    again = Recorder()
    async with make_monitor(store) as monitor:
        monitor.at_block("t", 7, again)
        await feed_blocks(monitor, [block(n) for n in range(9, 12)], store=store)
    assert again.calls == []


async def test_sync_handler_and_raising_hook() -> None:
    """Plain functions work as handlers; a hook that raises does not stop the monitor."""
    seen: list[int] = []

    def bad_hook(event: FeedEvent) -> None:
        raise ValueError("hook broke")

    def sync_failing(ctx: TriggerContext) -> None:
        raise RuntimeError("nope")

    async with make_monitor(max_attempts=1, on_event=bad_hook) as monitor:
        monitor.at_block("sync", 3, lambda ctx: seen.append(ctx.block_number))
        monitor.at_block("fails", 3, sync_failing)
        await feed_blocks(monitor, [block(n) for n in range(0, 14)])
    assert seen == [3, 13]
    assert monitor.failed == 2


async def test_hung_handler_times_out() -> None:
    """With handler_timeout_s a handler that never returns counts as a failure."""
    async def hang(ctx: TriggerContext) -> None:
        await asyncio.Event().wait()

    async with make_monitor(max_attempts=1, handler_timeout_s=0.01) as monitor:
        monitor.at_block("hang", 2, hang)
        await feed_blocks(monitor, [block(n) for n in range(0, 4)])
    assert monitor.failed == 1


async def test_slow_handler_never_blocks_on_block() -> None:
    """on_block returns at once while a handler waits; queued triggers then run in order."""
    gate = asyncio.Event()
    order: list[int] = []

    async def slow(ctx: TriggerContext) -> None:
        await gate.wait()
        order.append(ctx.epoch)

    async with make_monitor() as monitor:
        monitor.at_block("slow", 1, slow)
        for n in range(0, 40):
            await asyncio.wait_for(monitor.on_block(block(n)), 1.0)
        assert order == []
        gate.set()
        await asyncio.wait_for(monitor.join(), WAIT_S)
    assert order == [0, 1, 2, 3]


async def test_schedule_errors_are_retried() -> None:
    """An RPC failure while placing a block in its epoch is retried, then triggers fire."""
    class FlakySchedule:
        def __init__(self) -> None:
            self.failures = 2

        async def span_of(self, number: int, *, block_hash: str | None = None) -> EpochSpan:
            if self.failures:
                self.failures -= 1
                raise RpcTransportError("node down")
            return EpochSchedule(10).span(number)

    handler = Recorder()
    monitor = EpochMonitor(FlakySchedule(), retry_delays=no_delays)
    async with monitor:
        monitor.at_block("t", 1, handler)
        await feed_blocks(monitor, [block(n) for n in range(0, 3)])
    assert handler.keys() == [(0, 1, False)]


# -- wiring and validation -------------------------------------------------------------------


async def test_attach_subscribes_to_the_feed() -> None:
    """attach() registers on_block with feed.subscribe and returns the subscription."""
    class FakeFeed:
        def __init__(self) -> None:
            self.callback: Callable[[Block], Any] | None = None

        def subscribe(self, callback: Callable[[Block], Any], *, name: str = "") -> str:
            self.callback = callback
            return f"sub:{name}"

    feed = FakeFeed()
    handler = Recorder()
    async with make_monitor() as monitor:
        monitor.at_block("t", 2, handler)
        assert monitor.attach(feed) == "sub:epoch-monitor"
        assert feed.callback is not None
        for n in range(0, 4):
            await feed.callback(block(n))
        await asyncio.wait_for(monitor.join(), WAIT_S)
    assert handler.keys() == [(0, 2, False)]


@pytest.mark.parametrize(
    ("name", "offset", "handler", "match"),
    [("", 1, print, "name"), ("x", -1, print, "block_in_epoch"), ("x", 10, print, "outside"),
     ("x", 1.5, print, "block_in_epoch"), ("x", 1, "not callable", "callable")],
)
def test_bad_trigger_registration(name: str, offset: Any, handler: Any, match: str) -> None:
    """Nonsense names, offsets and handlers are ConfigErrors at registration."""
    monitor = make_monitor()
    with pytest.raises(ConfigError, match=match):
        monitor.at_block(name, offset, handler)


def test_duplicate_trigger_name_is_refused() -> None:
    """Trigger names are idempotency keys: a second trigger with one name is refused."""
    monitor = make_monitor()
    monitor.at_block("x", 1, print)
    with pytest.raises(ConfigError, match="already registered"):
        monitor.on_epoch_start("x", print)


@pytest.mark.parametrize(
    "kwargs",
    [{"block_time_s": 0}, {"max_attempts": 0}, {"late_after_blocks": -1},
     {"max_late_epochs": 1.5}, {"handler_timeout_s": 0}],
)
def test_bad_monitor_options(kwargs: dict[str, Any]) -> None:
    """Invalid monitor options raise ConfigError."""
    with pytest.raises(ConfigError):
        EpochMonitor(EpochSchedule(10), **kwargs)


async def test_closed_monitor_ignores_blocks() -> None:
    """After aclose a still-attached feed cannot restart the monitor; start() reopens it."""
    handler = Recorder()
    monitor = make_monitor()
    monitor.at_block("t", 1, handler)
    await monitor.start()
    await monitor.aclose()
    for n in range(0, 3):
        await monitor.on_block(block(n))
    assert handler.calls == []
    async with monitor:
        await feed_blocks(monitor, [block(n) for n in range(10, 13)])
    assert handler.keys() == [(1, 11, False)]
