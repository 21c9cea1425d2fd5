"""A long backfill on a halted chain: finality_stalled is raised once and never flaps."""

from __future__ import annotations

import time

from feedkit import assert_sound, node_config, running

from blockfeed.devnode import DevNode

BEHIND = 30_000


async def test_backfill_of_old_blocks_does_not_clear_a_real_stall() -> None:
    """Delivering old blocks is not finality progress: no finality_resumed until a new head."""
    async with DevNode(node_config(auto_produce=False)) as node:
        node.advance(BEHIND)
        head = node.chain.finalized_number
        async with running(node, start_at=head - BEHIND + 10) as (feed, seen):
            await seen.wait_past(head, timeout_s=60)
            stalled = seen.events_of("finality_stalled")
            assert stalled, "a halted chain must be flagged"
            assert abs(stalled[0][1].at - time.time()) < 120, "events carry Unix time"
            assert not seen.events_of("finality_resumed"), "backfilled blocks cleared the stall"
            node.advance(10)  # a few slots: devnode, like GRANDPA, may hold finality briefly
            await seen.wait_past(head + 1)
            await seen.wait_for(lambda: bool(seen.events_of("finality_resumed")),
                                "finality_resumed after a new head")
            assert feed.status().finality_stalled is False
        assert_sound(seen, node)
