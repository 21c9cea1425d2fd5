"""Helpers for feed tests on the testing kit: scripted nodes, a recorder, virtual-time waits.

Everything runs under ``blockfeed.testing.VirtualClock``: times below are virtual seconds, so
bounds on them are exact and deterministic, not wall-clock thresholds.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from blockfeed import Block, BlockFeed, FeedEvent
from blockfeed.testing import InMemoryNetwork, ScriptedNode, VirtualClock, fast_config

T = 0.1
"""Block time of the scripted chains (virtual seconds)."""
WITHIN_S = 60.0
"""Bound on every wait, in virtual seconds (hundreds of blocks)."""


def scripted_node(name: str = "node-a", **overrides: Any) -> ScriptedNode:
    """A node producing a block every T, finality without GRANDPA jumps (exact counts)."""
    base: dict[str, Any] = {"block_time_s": T, "seed": 3, "start_block": 6_940_000,
                            "finality_jumps": 0.0}
    base.update(overrides)
    return ScriptedNode(name, **base)


@dataclass
class Recorder:
    """Every block a callback subscriber got and every event, with the virtual time."""

    blocks: list[Block] = field(default_factory=list)
    at: list[float] = field(default_factory=list)
    events: list[tuple[float, FeedEvent]] = field(default_factory=list)

    def on_block(self, block: Block) -> None:
        self.blocks.append(block)
        self.at.append(VirtualClock.current().time())

    def on_event(self, event: FeedEvent) -> None:
        self.events.append((VirtualClock.current().time(), event))

    @property
    def numbers(self) -> list[int]:
        return [b.number for b in self.blocks]

    def kinds(self) -> list[str]:
        return [e.kind for _, e in self.events]

    def events_of(self, kind: str) -> list[tuple[float, FeedEvent]]:
        return [(t, e) for t, e in self.events if e.kind == kind]

    def delays(self, node: ScriptedNode, begin: float, end: float) -> list[float]:
        """Virtual seconds from finalization to delivery, for blocks finalized in [begin, end)."""
        out = []
        for block, at in zip(self.blocks, self.at, strict=True):
            finalized = node.finalized_at.get(block.number)
            if finalized is not None and begin <= finalized < end:
                out.append(at - finalized)
        return out

    async def wait_for(self, predicate: Callable[[], bool], what: str,
                       within_s: float = WITHIN_S) -> float:
        """Wait (virtual, bounded) until ``predicate()``; returns the virtual seconds it took."""
        return await VirtualClock.current().wait_until(predicate, within_s=within_s, what=what)

    async def wait_past(self, number: int) -> None:
        """Wait until a block numbered >= ``number`` was delivered."""
        await self.wait_for(lambda: bool(self.blocks) and self.blocks[-1].number >= number,
                            f"block #{number}")


async def advance(seconds: float) -> None:
    """Let ``seconds`` of virtual time pass."""
    await VirtualClock.current().advance(seconds)


def now() -> float:
    """Virtual now."""
    return VirtualClock.current().time()


@contextlib.asynccontextmanager
async def running(*nodes: ScriptedNode, **options: Any
                  ) -> AsyncIterator[tuple[BlockFeed, Recorder]]:
    """Started nodes and a started feed on them (in-memory network), a recorder subscribed;
    ``options`` are FeedConfig fields over the fast profile."""
    network = InMemoryNetwork(*nodes)
    recorder = Recorder()
    async with contextlib.AsyncExitStack() as stack:
        for node in nodes:
            await stack.enter_async_context(node)
        feed = BlockFeed([n.ws_url for n in nodes], fast_config(T, **options),
                         connector=network)
        feed.subscribe(recorder.on_block, name="recorder", maxsize=100_000)
        feed.add_event_hook(recorder.on_event)
        async with feed:
            yield feed, recorder


def assert_sound(recorder: Recorder, node: ScriptedNode) -> None:
    """Consecutive, unique, parent-linked, and every block is the node's canonical block."""
    blocks = recorder.blocks
    assert blocks, "no block delivered"
    numbers = [b.number for b in blocks]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "gap or repeat"
    for prev, block in itertools.pairwise(blocks):
        assert block.parent_hash == prev.hash, f"#{block.number} does not link"
    for block in blocks:
        assert block.hash == node.chain.hash_of(block.number), f"#{block.number} not canonical"
