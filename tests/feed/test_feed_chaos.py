"""Bounded randomized chaos: every fault class, on two endpoints, for about 30 seconds.

The schedule is drawn from a fixed seed (reproducible choices; the timing is real). Whatever
mix of faults overlaps, the feed must end caught up with the chain, having delivered a
consecutive, unique, parent-linked sequence of canonical blocks, with no error.
"""

from __future__ import annotations

import asyncio
import random
import time

from feedkit import T, assert_sound, node_config, running

from blockfeed import Mode
from blockfeed.devnode import DevNode

CHAOS_SECONDS = 30.0
FAULTS = [
    ("close", {}),
    ("close", {"reset": True, "flap": True}),
    ("restart", {}),
    ("blackhole", {"http": False}),
    ("blackhole", {}),
    ("sub_stall", {"new": True}),
    ("sub_error", {}),
    ("http_errors", {"status": 503}),
    ("http_errors", {"hang": True}),
    ("finality_halt", {}),
    ("malformed", {"rate": 0.3, "big_bytes": 1_100_000}),
    ("disorder", {"rate": 0.4}),
    ("lie", {"mode": "parent", "on": "both"}),
    ("lie", {"mode": "lag", "blocks": 25, "on": "both"}),
    ("latency", {"delay_s": 0.2}),
]


async def test_chaos_all_fault_classes_two_endpoints() -> None:
    """~30 s of random overlapping F1-F11 faults on two endpoints: nothing lost, duplicated,
    reordered or unverified, and the feed catches up at the end."""
    rng = random.Random(20240611)
    async with DevNode(node_config()) as a, DevNode(node_config()) as b, running(
        a, b, quarantine_s=3.0, lag_quarantine_blocks=12
    ) as (feed, seen):
        nodes = [a, b]
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
        injected: dict[str, int] = {}
        begin = time.monotonic()
        while time.monotonic() - begin < CHAOS_SECONDS:
            kind, options = rng.choice(FAULTS)
            target = rng.choice(nodes)
            seconds = 0.0 if kind == "close" and not options else rng.uniform(3 * T, 20 * T)
            target.faults.inject(kind, seconds=seconds, **options)
            injected[kind] = injected.get(kind, 0) + 1
            await asyncio.sleep(rng.uniform(2 * T, 8 * T))
        for node in nodes:
            node.faults.clear()
        head = max(a.chain.finalized_number, b.chain.finalized_number)
        await seen.wait_past(head, timeout_s=30.0)
        status = feed.status()
    assert set(injected) == {kind for kind, _ in FAULTS}
    assert status.error is None
    assert_sound(seen, a)
    assert len(seen.seen) >= CHAOS_SECONDS / T * 0.8
