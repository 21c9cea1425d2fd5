"""BlockFeed not told the block time, against devnode on loopback (F14 and issue 9).

The feed gets a 12 s hint on a chain with T = 0.1 s and no timeout overrides, so every timer it
uses comes from what it learns. Figures (delays in units of T) are measured by
``bench/recovery.py``; these tests assert behaviour and the guarantee.
"""

from __future__ import annotations

from feedkit import T, assert_sound, node_config, running

from blockfeed import Mode
from blockfeed.devnode import DevNode

UNTOLD = {
    "block_time_s": 12.0,
    "http_timeout_s": None,
    "open_timeout_s": None,
    "ping_interval_s": None,
    "ping_timeout_s": None,
    "health_check_interval_s": None,
    "reconnect_cap_s": 30.0,
}


async def test_a_12s_hint_on_a_fast_chain_is_corrected_by_observation() -> None:
    """The learned T ends near the chain's 0.1 s, one block_time event says so, and a silent
    subscription is still detected and recycled (the deadline follows the learned T)."""
    async with DevNode(node_config()) as node, running(node, **UNTOLD) as (feed, seen):
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
        await seen.wait_past(node.chain.finalized_number + 10)
        learned = feed.status().block_interval_s
        assert learned < 3 * T, f"learned {learned}s on a {T}s chain with a 12 s hint"
        assert seen.events_of("block_time")
        node.faults.inject("sub_stall", seconds=3.0, new=False)
        stalled_at = node.chain.finalized_number
        await seen.wait_for(
            lambda: any("stale" in e.reason for _, e in seen.events_of("mode_changed")),
            "the silent socket declared stale")
        await seen.wait_past(stalled_at + 10)
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming again")
    assert_sound(seen, node)
    assert feed.status().reconnects <= 3


async def test_refused_port_reopening_brings_the_socket_back_on_evidence() -> None:
    """F2 with a 12 s hint: after the port reopens, the first HTTP answer triggers a socket
    attempt at once. The socket backoff here is 60 s, so only evidence can bring it back within
    the wait; nothing is lost."""
    options = {**UNTOLD, "reconnect_initial_s": 60.0, "reconnect_cap_s": 60.0}
    async with DevNode(node_config()) as node, running(node, **options) as (feed, seen):
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
        await seen.wait_past(node.chain.finalized_number + 5)
        node.faults.inject("restart", seconds=4.0)
        await seen.wait_for(lambda: feed.mode is Mode.DISCONNECTED, "disconnected")
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming again",
                            timeout_s=12.0)
        await seen.wait_past(node.chain.finalized_number)
    assert_sound(seen, node)
