"""Helpers for feed integration tests: a devnode, a feed, a collector and bounded waits."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from blockfeed import Block, BlockFeed, FeedConfig, FeedEvent
from blockfeed.devnode import DevNode, DevNodeConfig
from blockfeed.store import CheckpointStore

T = 0.1
"""Block time of the test chains (seconds)."""
WAIT_S = 20.0
"""Generous bound on every wait: the machine may be loaded; results are asserted tightly."""


def node_config(**overrides: Any) -> DevNodeConfig:
    """A fast devnode on a free loopback port."""
    base: dict[str, Any] = {"block_time_s": T, "seed": 3, "start_block": 6_940_000}
    base.update(overrides)
    return DevNodeConfig(**base)


def feed_config(**overrides: Any) -> FeedConfig:
    """The shared fast-timings profile for T = 0.1 s, quiet (no per-block log lines)."""
    return FeedConfig.for_block_time(T, **{"log_blocks": False, **overrides})


@dataclass
class Seen:
    """A delivered block and the monotonic time the subscriber got it."""

    block: Block
    at: float


@dataclass
class Collector:
    """Records every block a callback subscriber receives, and every event."""

    seen: list[Seen] = field(default_factory=list)
    events: list[tuple[float, FeedEvent]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_block(self, block: Block) -> None:
        self.seen.append(Seen(block, time.monotonic()))
        self._changed.set()

    def on_event(self, event: FeedEvent) -> None:
        self.events.append((time.monotonic(), event))
        self._changed.set()

    @property
    def numbers(self) -> list[int]:
        return [s.block.number for s in self.seen]

    def kinds(self) -> list[str]:
        return [e.kind for _, e in self.events]

    def events_of(self, kind: str) -> list[tuple[float, FeedEvent]]:
        return [(t, e) for t, e in self.events if e.kind == kind]

    async def wait_for(self, predicate: Callable[[], bool], what: str,
                       timeout_s: float = WAIT_S) -> None:
        """Wait (bounded) until ``predicate()`` holds, re-checking on every block and event."""

        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.2):
                        await self._changed.wait()

        try:
            await asyncio.wait_for(loop(), timeout_s)
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}") from None

    async def wait_past(self, number: int, timeout_s: float = WAIT_S) -> None:
        """Wait until a block numbered >= ``number`` was delivered."""
        await self.wait_for(lambda: bool(self.seen) and self.seen[-1].block.number >= number,
                            f"block #{number}", timeout_s)


def assert_sound(collector: Collector, node: DevNode) -> None:
    """Consecutive, unique, parent-linked, and every block is the node's canonical block."""
    blocks = [s.block for s in collector.seen]
    assert blocks, "no block delivered"
    numbers = [b.number for b in blocks]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), _first_break(numbers)
    for prev, block in itertools.pairwise(blocks):
        assert block.parent_hash == prev.hash, f"#{block.number} does not link"
    for block in blocks:
        assert block.hash == node.chain.hash_of(block.number), f"#{block.number} is not canonical"


def _first_break(numbers: list[int]) -> str:
    for a, b in itertools.pairwise(numbers):
        if b != a + 1:
            return f"sequence breaks at {a} -> {b}"
    return "sequence ok"


@contextlib.asynccontextmanager
async def running(
    *nodes: DevNode, collector: Collector | None = None, store: CheckpointStore | None = None,
    start_at: int | None = None, **settings: Any,
) -> AsyncIterator[tuple[BlockFeed, Collector]]:
    """A started feed on ``nodes`` with a collector subscribed (callback) and hooked (events);
    ``settings`` are FeedConfig fields over the fast profile."""
    collector = collector or Collector()
    feed = BlockFeed([n.ws_url for n in nodes], feed_config(**settings), store=store,
                     start_at=start_at)
    feed.subscribe(collector.on_block, name="collector", maxsize=100_000)
    feed.add_event_hook(collector.on_event)
    async with feed:
        yield feed, collector


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]
