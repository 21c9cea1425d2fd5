"""Feed pieces without a network: subscriber queues (overflow, catch-up, lag) and log lines."""

from __future__ import annotations

import asyncio

import pytest

from blockfeed import Block, Mode, ModeChanged, Source, SubscriberLagged
from blockfeed.feed.logs import FeedLog
from blockfeed.feed.subscribers import FeedSubscription


def block(n: int, source: Source = Source.WS) -> Block:
    return Block(number=n, hash=f"0x{n:064x}", parent_hash=f"0x{n - 1:064x}", source=source,
                 received_at=1_700_000_000.0)


class Store:
    """Stands in for the feed's catch-up source: blocks 1..last are available."""

    def __init__(self, last: int = 0, *, keeps: bool = True) -> None:
        self.last = last
        self.keeps = keeps
        self.calls: list[tuple[int, int]] = []

    async def catch_up(self, start: int, limit: int) -> list[Block]:
        self.calls.append((start, limit))
        if not self.keeps:
            return []
        return [block(n) for n in range(start, min(self.last, start + limit - 1) + 1)]


def subscription(store: Store, maxsize: int = 3) -> FeedSubscription:
    return FeedSubscription(name="t", maxsize=maxsize, catch_up=store.catch_up,
                            last_delivered=lambda: store.last or None, on_cancel=lambda s: None)


async def take(sub: FeedSubscription, n: int) -> list[int]:
    out = []
    async for b in sub:
        out.append(b.number)
        if len(out) == n:
            break
    return out


async def test_push_never_blocks_and_overflow_marks_behind() -> None:
    """A full queue refuses further pushes (marking the subscriber behind) without waiting."""
    store = Store()
    sub = subscription(store, maxsize=2)
    assert sub.push(block(1)) and sub.push(block(2))
    assert not sub.push(block(3)) and sub.behind and sub.fell_behind == 1
    assert not sub.push(block(4))  # still behind: ignored, replayed later


async def test_behind_subscriber_catches_up_and_rejoins_without_hole() -> None:
    """After draining, the missed blocks are replayed, then live pushes resume seamlessly."""
    store = Store()
    sub = subscription(store, maxsize=2)
    for n in range(1, 9):
        store.last = n
        sub.push(block(n))
    assert await take(sub, 8) == list(range(1, 9))
    assert not sub.behind
    store.last = 9
    assert sub.push(block(9))
    assert await take(sub, 1) == [9]


async def test_no_replay_source_means_subscriber_lagged() -> None:
    """Without the missed blocks available, the iterator raises SubscriberLagged(next number)."""
    store = Store(keeps=False)
    sub = subscription(store, maxsize=2)
    for n in range(1, 6):
        sub.push(block(n))
    assert await take(sub, 2) == [1, 2]
    with pytest.raises(SubscriberLagged) as info:
        await take(sub, 1)
    assert info.value.next_number == 3
    with pytest.raises(StopAsyncIteration):
        await sub.__anext__()


async def test_close_drains_then_stops_or_raises() -> None:
    """Closing hands out what was queued, then ends (or raises the feed's error once)."""
    sub = subscription(Store())
    sub.push(block(1))
    sub.close(RuntimeError("feed failed"))
    assert (await sub.__anext__()).number == 1
    with pytest.raises(RuntimeError):
        await sub.__anext__()
    with pytest.raises(StopAsyncIteration):
        await sub.__anext__()


async def test_waiting_consumer_wakes_on_push() -> None:
    """A consumer waiting on an empty queue gets the next pushed block at once."""
    sub = subscription(Store())
    waiter = asyncio.create_task(sub.__anext__())
    await asyncio.sleep(0)
    sub.push(block(7))
    assert (await asyncio.wait_for(waiter, 5)).number == 7


def test_block_line_shape() -> None:
    """The per-block line matches the operators' format, with the source at the end."""
    log = FeedLog(epoch_length=360, emoji=False)
    line = log.block_line(Block(number=6940429, hash="0x", parent_hash="0x", source=Source.POLL,
                                received_at=1_700_000_015.0))
    assert line == "Block #6940429 | Epoch 19278 | Block 349/360 | 22:13:35 UTC | poll"
    assert FeedLog(epoch_length=360, emoji=True).block_line(block(5)).startswith("📦 Block #5")


def test_emoji_off_with_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    """NO_COLOR turns emoji off even on a terminal."""
    monkeypatch.setenv("NO_COLOR", "1")
    assert not FeedLog(epoch_length=360)._emoji


def test_mode_change_lines_carry_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    """Entering polling and coming back are logged with their reasons."""
    caplog.set_level("INFO", logger="blockfeed")
    log = FeedLog(epoch_length=360, emoji=False)
    log.event(ModeChanged(at=0.0, reason="socket closed: code 1006",
                          old_mode=Mode.STREAMING, new_mode=Mode.POLLING))
    log.event(ModeChanged(at=1.0, reason="restored", old_mode=Mode.POLLING,
                          new_mode=Mode.STREAMING))
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "ENTERING POLLING FALLBACK MODE | socket closed: code 1006"
    assert messages[1].startswith("EXITING POLLING FALLBACK MODE | polling for ")
    assert messages[2] == "WebSocket subscription restored | restored"


async def test_owed_from_tracks_what_the_consumer_has_not_acknowledged() -> None:
    """The checkpoint frontier: a yielded block stays owed until the next ``__anext__``; queued
    blocks are owed; a subscriber that fell behind still owes the first block it replays."""
    store = Store()
    sub = subscription(store, maxsize=3)
    assert sub.owed_from() is None
    sub.push(block(1))
    sub.push(block(2))
    assert sub.owed_from() == 1
    assert (await sub.__anext__()).number == 1
    assert sub.owed_from() == 1 and sub.in_hand == 1  # yielded, not yet processed
    assert (await sub.__anext__()).number == 2  # asking again acknowledges 1
    assert sub.owed_from() == 2 and sub.in_hand == 2
    waiter = asyncio.create_task(sub.__anext__())
    await asyncio.sleep(0)
    assert sub.owed_from() is None and sub.in_hand is None  # 2 acknowledged by asking
    for n in (3, 4, 5, 6):
        sub.push(block(n))
    assert (await asyncio.wait_for(waiter, 5)).number == 3
    assert sub.behind and sub.owed_from() == 3  # behind, yet still holds the checkpoint


async def test_behind_subscriber_owes_its_replay_point_while_reading_back() -> None:
    """While a drained subscriber reads missed blocks back, it owes the first of them."""
    gate = asyncio.Event()
    store = Store(last=6)

    async def slow_catch_up(start: int, limit: int) -> list[Block]:
        await gate.wait()
        return await store.catch_up(start, limit)

    sub = FeedSubscription(name="t", maxsize=2, catch_up=slow_catch_up,
                           last_delivered=lambda: store.last, on_cancel=lambda s: None)
    for n in range(1, 7):
        sub.push(block(n))
    assert await take(sub, 2) == [1, 2]
    reader = asyncio.create_task(sub.__anext__())
    await asyncio.sleep(0)
    assert sub.in_hand is None and sub.owed_from() == 3  # 2 acknowledged, 3.. replayed
    gate.set()
    assert (await asyncio.wait_for(reader, 5)).number == 3
    assert sub.owed_from() == 3  # in hand now
    assert await take(sub, 3) == [4, 5, 6]  # the rest of the replay, in two reads
    assert not sub.behind and sub.owed_from() == 6


async def test_aclose_acknowledges_but_keeps_owing_what_it_never_got() -> None:
    """aclose() acknowledges the block in hand and stops receiving, yet still owes the first
    block it never got (the checkpoint stays at its last block); cancel() abandons: it owes
    nothing and the feed forgets it."""
    progress: list[str] = []
    owed: dict[str, int | None] = {}
    for how in ("aclose", "cancel"):
        forgotten: list[FeedSubscription] = []
        sub = FeedSubscription(name=how, maxsize=3, catch_up=Store().catch_up,
                               last_delivered=lambda: 2, on_cancel=forgotten.append,
                               on_progress=lambda how=how: progress.append(how))
        sub.push(block(1))
        sub.push(block(2))
        assert (await sub.__anext__()).number == 1
        progress.clear()
        if how == "aclose":
            await sub.aclose()
        else:
            sub.cancel()
        owed[how] = sub.owed_from()
        assert sub.queued == 0 and sub.closed and progress == [how] * len(progress) != []
        assert forgotten == ([] if how == "aclose" else [sub])
        assert not sub.push(block(3))
        with pytest.raises(StopAsyncIteration):
            await sub.__anext__()
    assert owed == {"aclose": 2, "cancel": None}


async def test_aclose_with_nothing_queued_owes_the_next_block() -> None:
    """Closed after taking everything delivered (1..2): it owes 3, so the checkpoint stays 2."""
    sub = subscription(Store(last=2))
    sub.push(block(1))
    sub.push(block(2))
    assert await take(sub, 2) == [1, 2]
    await sub.aclose()
    assert sub.owed_from() == 3 and sub.in_hand is None


async def test_close_by_the_feed_keeps_the_block_in_hand_owed() -> None:
    """When the feed stops, what the consumer holds unacknowledged stays owed (the final
    checkpoint must not pass it), and the rest of the queue is still handed out."""
    sub = subscription(Store())
    sub.push(block(1))
    sub.push(block(2))
    assert (await sub.__anext__()).number == 1
    sub.close()
    assert sub.owed_from() == 1
    assert (await sub.__anext__()).number == 2
    assert sub.owed_from() == 2


async def test_cut_off_raises_lagged_with_the_resume_number_and_owes_nothing() -> None:
    """A subscriber the feed gives up on owes nothing at once; its next ask raises
    SubscriberLagged naming the first block it was never handed."""
    store = Store()
    sub = subscription(store, maxsize=2)
    for n in range(1, 6):
        sub.push(block(n))
    assert (await sub.__anext__()).number == 1
    assert sub.behind and sub.owed_from() == 1
    sub.cut_off()
    assert sub.owed_from() is None and not sub.behind
    with pytest.raises(SubscriberLagged) as info:
        await sub.__anext__()
    assert info.value.next_number == 2
    assert store.calls == []  # no replay was attempted
