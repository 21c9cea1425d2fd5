"""CursorSink's shared machinery against an in-memory target, and open_sink's choice by scheme."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sink_chain import WindowStore, fast_delays, make_chain

from blockfeed.errors import ConfigError
from blockfeed.sinks import Sink, open_sink, sink_kind
from blockfeed.sinks.base import CursorSink, SinkRefused
from blockfeed.types import Block

WAIT_S = 10.0


class MemoryTarget:
    """What a database would hold: blocks by number; can be made to fail."""

    def __init__(self) -> None:
        self.blocks: dict[int, Block] = {}
        self.writes: list[list[int]] = []
        self.down = False
        self.refuse = False


class MemorySink(CursorSink):
    kind = "memory"

    def __init__(self, target: MemoryTarget, **options: Any) -> None:
        options.setdefault("reconnect_delays", fast_delays)
        options.setdefault("idle_ping_s", 0.05)
        super().__init__("memory://user:hunter2pass@target:1/x", **options)
        self.target = target
        self.connects = 0

    async def _connect(self) -> int | None:
        if self.target.down:
            raise OSError("connection refused")
        self.connects += 1
        return max(self.target.blocks) if self.target.blocks else None

    async def _write(self, blocks: list[Block]) -> None:
        if self.target.down:
            raise OSError("connection reset")
        if self.target.refuse:
            raise SinkRefused("refused for the test")
        self.target.writes.append([b.number for b in blocks])
        for block in blocks:
            self.target.blocks.setdefault(block.number, block)

    async def _ping(self) -> None:
        if self.target.down:
            raise OSError("gone")


async def until(predicate: Any) -> None:
    async def loop() -> None:
        while not predicate():  # noqa: ASYNC110 - the state lives in the sink's task
            await asyncio.sleep(0.005)

    await asyncio.wait_for(loop(), WAIT_S)


async def test_batches_are_consecutive_and_in_order() -> None:
    """Blocks go out oldest first in batches of at most batch_size, never overlapping."""
    target, chain = MemoryTarget(), make_chain(25)
    async with MemorySink(target, batch_size=10) as sink:
        for block in chain:
            await sink.publish(block)
        assert await sink.flush(WAIT_S)
    flat = [n for batch in target.writes for n in batch]
    assert flat == [b.number for b in chain]
    assert all(len(batch) <= 10 for batch in target.writes)


async def test_a_target_outage_keeps_blocks_queued_then_catches_up() -> None:
    """While the target is down nothing is lost; after it returns every block arrives once."""
    target, chain = MemoryTarget(), make_chain(40)
    async with MemorySink(target) as sink:
        for block in chain[:10]:
            await sink.publish(block)
        assert await sink.flush(WAIT_S)
        target.down = True
        for block in chain[10:]:
            await sink.publish(block)
        await until(lambda: not sink.status()["connected"])
        assert sink.status()["lag_blocks"] == 30
        target.down = False
        assert await sink.flush(WAIT_S)
        status = sink.status()
    assert sorted(target.blocks) == [b.number for b in chain]
    assert status["reconnects"] >= 1 and status["errors"] >= 1 and status["lag_blocks"] == 0
    assert "hunter2pass" not in repr(status)


async def test_an_overflowing_outbox_is_refilled_from_the_store_window() -> None:
    """Blocks dropped from a full outbox come back from the store; none from neither is a gap."""
    target, chain = MemoryTarget(), make_chain(60)
    target.blocks[chain[0].number] = chain[0]
    target.down = True
    async with MemorySink(target, outbox_limit=10, store=WindowStore(chain[:50])) as sink:
        for block in chain[1:]:
            await sink.publish(block)
        assert sink.status()["dropped"] == 49
        target.down = False
        assert await sink.flush(WAIT_S)
        assert sink.status()["gaps"] == 0 and sink.status()["caught_up"] == 49
    assert sorted(target.blocks) == [b.number for b in chain]


async def test_blocks_in_neither_outbox_nor_store_are_a_counted_gap() -> None:
    """Without a store, a dropped block is reported as a gap, never silently skipped."""
    target, chain = MemoryTarget(), make_chain(30)
    target.blocks[chain[0].number] = chain[0]
    target.down = True
    async with MemorySink(target, outbox_limit=5) as sink:
        for block in chain[1:]:
            await sink.publish(block)
        target.down = False
        assert await sink.flush(WAIT_S)
        assert sink.status()["gaps"] == 1
    assert sorted(target.blocks)[1:] == [b.number for b in chain[25:]]


async def test_a_refusal_keeps_the_block_and_retries() -> None:
    """SinkRefused is reported and retried with backoff; the block is written once allowed."""
    target, chain = MemoryTarget(), make_chain(3)
    target.refuse = True
    async with MemorySink(target) as sink:
        await sink.publish(chain[0])
        await until(lambda: sink.status()["errors"] >= 2)
        assert sink.status()["last_error"] == "refused for the test"
        assert not target.blocks
        target.refuse = False
        assert await sink.flush(WAIT_S)
    assert list(target.blocks) == [chain[0].number]


async def test_old_and_repeated_blocks_are_ignored() -> None:
    """A block at or below the newest one given is counted as ignored, not sent again."""
    target, chain = MemoryTarget(), make_chain(5)
    async with MemorySink(target) as sink:
        for block in chain + chain[:2]:
            await sink.publish(block)
        assert await sink.flush(WAIT_S)
        assert sink.status()["ignored"] == 2
    assert [n for batch in target.writes for n in batch] == [b.number for b in chain]


def test_open_sink_picks_the_implementation_by_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each scheme maps to its sink, every one satisfies the Sink protocol; others are refused."""
    monkeypatch.setenv("BLOCKFEED_WEBHOOK_SECRET", "s")
    urls = {
        "redis://:pw@r:6379/0": "redis",
        "postgresql://u:pw@db/x": "postgresql",
        "postgres://u@db/x": "postgresql",
        "nats://n:4222": "nats",
        "https://hooks.example/in": "webhook",
    }
    for url, kind in urls.items():
        sink = open_sink(url)
        assert sink.kind == kind and isinstance(sink, Sink)
        assert sink_kind(url) == kind
    with pytest.raises(ConfigError) as info:
        open_sink("kafka://user:kafkasecret@k:9092")
    assert "kafkasecret" not in str(info.value)
