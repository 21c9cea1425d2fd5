"""The SSE hub (fan-out), its ring, and the block window, without any network."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from gateway_fakes import FakeStore, make_block

from blockfeed.errors import StoreError
from blockfeed.gateway.hub import EVENT_FRAME, KEEPALIVE_FRAME, HubFull, SseHub, encode_block
from blockfeed.gateway.window import BlockWindow, WindowUnavailable
from blockfeed.types import FinalityStalled, Mode, ModeChanged, Reconnect


def test_block_frame_format() -> None:
    """A block frame is `id: N`, `event: block`, one JSON `data:` line, blank line."""
    frame = encode_block(make_block(6940429, at=1.0), 360).decode()
    lines = frame.split("\n")
    assert lines[0] == "id: 6940429" and lines[1] == "event: block"
    assert lines[2].startswith('data: {"number":6940429,') and '"block_in_epoch":349' in lines[2]
    assert frame.endswith("\n\n") and frame.count("\n") == 4


async def test_each_block_encoded_once_for_all_clients() -> None:
    """Every client's queue holds the very same bytes object (encoded once per block)."""
    hub = SseHub(epoch_length=360)
    clients = [hub.register() for _ in range(50)]
    hub.publish_block(make_block(7))
    batches = [await asyncio.wait_for(c.next_batch(), 5.0) for c in clients]
    frames = {id(batch[0][1]) for batch in batches if batch}
    assert len(frames) == 1
    assert all(batch == [(7, batches[0][0][1])] for batch in batches if batch)


async def test_overflowing_client_is_dropped_others_unaffected() -> None:
    """A client whose queue is full is dropped and unregistered; a draining client keeps going."""
    hub = SseHub(epoch_length=360, client_queue_size=4)
    slow, fast = hub.register(), hub.register()
    got: list[int] = []
    for n in range(1, 11):
        hub.publish_block(make_block(n))
        batch = await asyncio.wait_for(fast.next_batch(), 5.0)
        got += [number for number, _ in batch]
    assert got == list(range(1, 11))
    assert slow.dropped and not fast.dropped
    assert hub.client_count == 1 and hub.dropped_total == 1
    assert slow.lag == 0  # its queue was released


async def test_keep_alive_comment_when_idle() -> None:
    """The hub's single keep-alive timer sends every idle client a comment frame."""
    hub = SseHub(epoch_length=360)
    clients = [hub.register() for _ in range(3)]
    ticker = asyncio.create_task(hub.keep_alive(0.01))
    try:
        batches = [await asyncio.wait_for(c.next_batch(), 5.0) for c in clients]
    finally:
        ticker.cancel()
    assert all(batch[0] == (EVENT_FRAME, KEEPALIVE_FRAME) for batch in batches)


def test_drop_calls_on_drop_once() -> None:
    """The drop callback (which cancels the writer) runs exactly once, at the overflow."""
    hub = SseHub(epoch_length=360, client_queue_size=2)
    client = hub.register()
    calls: list[int] = []
    client.on_drop = lambda: calls.append(1)
    for n in range(1, 6):
        hub.publish_block(make_block(n))
    assert calls == [1] and client.dropped


async def test_dropped_client_wakes_up_empty() -> None:
    """A waiting client that gets dropped returns an empty batch at once."""
    hub = SseHub(epoch_length=360, client_queue_size=1)
    client = hub.register()
    waiter = asyncio.create_task(client.next_batch())
    await asyncio.sleep(0)
    hub.publish_block(make_block(1))
    hub.publish_block(make_block(2))  # overflows the one-frame queue
    assert await asyncio.wait_for(waiter, 5.0) == []
    assert client.dropped


async def test_mode_events_are_unnumbered_frames() -> None:
    """Feed events fan out as `mode` (those carrying a mode) or `feed` frames, marked as
    non-blocks."""
    hub = SseHub(epoch_length=360)
    client = hub.register()
    hub.publish_event(ModeChanged(at=1.0, reason="r",
                                  old_mode=Mode.STREAMING, new_mode=Mode.POLLING))
    hub.publish_event(Reconnect(at=2.0, reason="r", attempt=1))
    hub.publish_event(FinalityStalled(at=3.0, reason="r", mode=Mode.POLLING))
    batch = await asyncio.wait_for(client.next_batch(), 5.0)
    assert [n for n, _ in batch] == [EVENT_FRAME] * 3
    assert batch[0][1].startswith(b"event: mode\n") and batch[1][1].startswith(b"event: feed\n")
    assert batch[2][1].startswith(b"event: mode\n")


def test_max_clients() -> None:
    """register refuses beyond max_clients with HubFull; unregistering frees a place."""
    hub = SseHub(epoch_length=360, max_clients=2)
    a = hub.register()
    hub.register()
    with pytest.raises(HubFull):
        hub.register()
    hub.unregister(a)
    hub.register()


def test_ring_is_bounded_and_contiguous() -> None:
    """The ring keeps the newest blocks; a jump in numbers restarts it; repeats are ignored."""
    hub = SseHub(epoch_length=360, ring_size=5)
    for n in range(1, 9):
        hub.publish_block(make_block(n))
    assert hub.ring_bounds() == (4, 8)
    assert [b.number for b, _ in hub.ring_slice(6, 10)] == [6, 7, 8]
    assert hub.ring_slice(3, 2) == [] and hub.ring_slice(9, 2) == []
    hub.publish_block(make_block(8))  # a repeat: ignored
    assert hub.blocks_published == 8
    hub.publish_block(make_block(20))
    assert hub.ring_bounds() == (20, 20)


def test_window_combines_ring_and_store() -> None:
    """Frames come from the store for old numbers and from the ring (pre-encoded) for new ones."""
    store = FakeStore()
    hub = SseHub(epoch_length=360, ring_size=3)
    for n in range(10, 20):
        block = make_block(n)
        store.save_blocks([block])
        hub.publish_block(block)
    window = BlockWindow(hub, store)
    assert window.bounds() == (10, 19)
    frames = window.frames(12, 100)
    assert [b.number for b, _ in frames] == list(range(12, 20))
    ring_frame = hub.ring_slice(19, 1)[0][1]
    assert frames[-1][1] is ring_frame
    assert window.get(11) is not None and window.get(25) is None


def test_window_never_hands_out_a_gap() -> None:
    """A store range with a hole is cut at the hole."""
    store = FakeStore()
    store.save_blocks([make_block(n) for n in (1, 2, 4, 5)])
    window = BlockWindow(SseHub(epoch_length=360), store)
    assert [b.number for b in window.blocks(1, 10)] == [1, 2]


def test_window_replay_stops_at_a_block_that_does_not_link() -> None:
    """A stored block whose parent is not the block before it (an edited state file) ends the
    replay before it, across the store -> ring seam too."""
    store = FakeStore()
    hub = SseHub(epoch_length=360, ring_size=2)
    blocks = [make_block(n) for n in range(1, 9)]
    blocks[3] = dataclasses.replace(blocks[3], parent_hash="0x" + "ee" * 32)
    store.save_blocks(blocks)
    for block in blocks[-2:]:
        hub.publish_block(block)
    window = BlockWindow(hub, store)
    assert [b.number for b in window.blocks(1, 10)] == [1, 2, 3]
    assert [b.number for b in window.blocks(5, 10)] == [5, 6, 7, 8]


def test_window_store_errors_become_unavailable() -> None:
    """A StoreError while reading becomes WindowUnavailable (the routes answer 503)."""

    class BrokenStore(FakeStore):
        def get_range(self, start: int, limit: int) -> list:
            raise StoreError("database is locked")

        def window_bounds(self) -> tuple[int, int] | None:
            raise StoreError("database is locked")

    window = BlockWindow(SseHub(epoch_length=360), BrokenStore())
    with pytest.raises(WindowUnavailable):
        window.bounds()
    with pytest.raises(WindowUnavailable):
        window.frames(1, 5)


async def test_publish_never_waits() -> None:
    """Publishing to many stuck clients completes in one synchronous call (no awaits needed)."""
    hub = SseHub(epoch_length=360, client_queue_size=3)
    for _ in range(100):
        hub.register()
    for n in range(1, 6):
        hub.publish_block(make_block(n))  # plain call: cannot block the feed
    assert hub.client_count == 0 and hub.dropped_total == 100
    await asyncio.sleep(0)
