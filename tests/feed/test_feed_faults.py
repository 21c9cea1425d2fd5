"""BlockFeed against devnode on loopback: the faults that live on the wire.

Every fault class is tested without sockets in ``test_feed_faults_scripted.py`` (scripted nodes
under a virtual clock, exact counts). What a script cannot show is the wire itself: a close frame
and a TCP reset on a real socket, a refused port, a half-open TCP connection caught by real
pings, garbage and oversized frames through the real parsers, real HTTP error statuses. Those
stay here, asserting the guarantee (consecutive, unique, parent-linked, canonical blocks) and
what the feed did, never how fast: waits are bounded and generous, and timing figures belong to
``bench/recovery.py``.
"""

from __future__ import annotations

import time

from feedkit import assert_sound, node_config, running

from blockfeed import Mode, Source
from blockfeed.devnode import DevNode


async def test_f1_close_frame_reconnects() -> None:
    """F1 close frame: one socket_closed transition, the socket restored, nothing lost."""
    async with DevNode(node_config()) as node, running(node) as (feed, seen):
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
        node.faults.inject("close", seconds=0)
        await seen.wait_for(lambda: feed.status().transitions.get(
            "polling->streaming:socket_restored", 0) >= 1, "the socket restored")
        await seen.wait_past(node.chain.finalized_number + 5)
    assert feed.status().transitions["streaming->polling:socket_closed"] == 1
    assert_sound(seen, node)


async def test_f1_tcp_reset_reconnects() -> None:
    """F1 reset: a TCP RST instead of a close frame is seen as a closed socket and recovered."""
    async with DevNode(node_config()) as node, running(node) as (feed, seen):
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
        node.faults.inject("close", seconds=0, reset=True)
        await seen.wait_for(lambda: bool(seen.events_of("reconnect")), "a reconnect")
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming again")
        await seen.wait_past(node.chain.finalized_number + 5)
    assert_sound(seen, node)


async def test_f2_refused_port_disconnected_then_resumes_with_backfill() -> None:
    """F2: the port refuses connections for 1.5 s: disconnected, then streaming, gap backfilled."""
    async with DevNode(node_config()) as node, running(node) as (feed, seen):
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
        node.faults.inject("restart", seconds=1.5)
        await seen.wait_for(lambda: feed.mode is Mode.DISCONNECTED, "disconnected")
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming again")
        await seen.wait_past(node.chain.finalized_number)
    assert_sound(seen, node)
    assert any(s.block.source is Source.BACKFILL for s in seen.seen)
    assert node.stats.restarts == 1


async def test_f3_half_open_tcp_detected_http_delivers() -> None:
    """F3: TCP up, nothing flows (pings unanswered): the socket is declared dead, HTTP delivers
    meanwhile, then the socket comes back."""
    async with DevNode(node_config()) as node, running(node) as (feed, seen):
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
        await seen.wait_past(node.chain.finalized_number + 5)
        node.faults.inject("blackhole", seconds=2.0, http=False)
        await seen.wait_for(lambda: feed.mode is Mode.POLLING, "the socket declared dead")
        await seen.wait_for(lambda: not node.faults.is_active("blackhole"), "the fault window")
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming again")
        await seen.wait_past(node.chain.finalized_number)
    assert any(s.block.source is Source.POLL for s in seen.seen)
    assert_sound(seen, node)


async def test_f6_http_error_statuses_with_the_socket_down_then_recover() -> None:
    """F6: real HTTP 429s while the socket is refused too: disconnected with backoff (a
    bounded number of requests), then everything recovers."""
    async with DevNode(node_config()) as node, running(node) as (feed, seen):
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
        node.faults.inject("http_errors", seconds=2.0, status=429)
        node.faults.inject("sub_error", seconds=2.0)
        node.faults.inject("close", seconds=0)
        await seen.wait_for(lambda: feed.mode is Mode.DISCONNECTED, "disconnected")
        http_before = node.stats.http_requests
        await seen.wait_for(lambda: not node.faults.is_active("http_errors"), "the fault window")
        http_during = node.stats.http_requests - http_before
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming again")
        await seen.wait_past(node.chain.finalized_number)
    assert http_during <= 40  # at most 2 s of backing off; hammering would be hundreds
    assert node.stats.http_errors_sent > 0
    assert_sound(seen, node)


async def test_f8_malformed_frames_counted_never_crash() -> None:
    """F8: garbage, wrong types, missing fields, huge frames through the real parsers, on both
    transports: counted, never delivered, never fatal."""
    async with DevNode(node_config()) as node, running(node) as (feed, seen):
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
        node.faults.inject("malformed", seconds=2.5, rate=0.3, big_bytes=1_500_000)
        begin = time.monotonic()
        await seen.wait_for(lambda: time.monotonic() - begin > 2.5, "the fault window")
        await seen.wait_past(node.chain.finalized_number)
        status = feed.status()
    assert status.malformed_frames > 0
    assert node.stats.malformed_sent > 0
    assert_sound(seen, node)
