"""BlockFeed against devnode on loopback, one test per fault class (DESIGN.md F1-F11).

Every test asserts the guarantee (consecutive, unique, parent-linked, canonical blocks) and the
behaviour the fault class demands. Waits are bounded and wait on real events; timing figures
are asserted against the DESIGN.md targets with slack for a loaded 2-core machine.
"""

from __future__ import annotations

import itertools
import time

from feedkit import (
    WAIT_S,
    FinalityClock,
    T,
    assert_sound,
    delivery_delays,
    node_config,
    running,
)

from blockfeed import Mode, Source
from blockfeed.devnode import DevNode


async def test_f1_close_reconnects_at_once() -> None:
    """F1: the node closes the socket -> reconnect within a moment, nothing lost."""
    async with DevNode(node_config()) as node, running(node) as (feed, seen):
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
        start = seen.numbers[-1] if seen.numbers else node.chain.finalized_number
        injected = time.monotonic()
        node.faults.inject("close", seconds=0)
        await seen.wait_for(lambda: bool(seen.events_of("reconnect")), "a reconnect")
        reconnect_at = seen.events_of("reconnect")[0][0]
        await seen.wait_for(lambda: feed.status().transitions.get(
            "polling->streaming:socket_restored", 0) >= 1, "the socket restored")
        await seen.wait_past(start + 10)
    assert reconnect_at - injected < 0.5
    assert feed.status().transitions["streaming->polling:socket_closed"] == 1
    assert_sound(seen, node)


async def test_f1_reset_and_flapping_proxy_back_off() -> None:
    """F1 reset + flap: sockets dying right after the handshake are failed attempts (backoff)."""
    async with DevNode(node_config()) as node, running(node) as (feed, seen):
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
        node.faults.inject("close", seconds=3.0, reset=True, flap=True)
        begin = time.monotonic()
        await seen.wait_for(lambda: time.monotonic() - begin > 3.0, "the flapping window")
        attempts = [t for t, _ in seen.events_of("reconnect") if begin <= t <= begin + 3.0]
        last = seen.numbers[-1]
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming again")
        await seen.wait_past(last + 5)
    # With 0.05 s initial backoff and a 1 s cap, a storm would be ~60 attempts in 3 s.
    assert 2 <= len(attempts) <= 20
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert max(gaps) >= 0.2  # the backoff grew
    assert_sound(seen, node)


async def test_f2_restart_disconnected_then_resumes_with_backfill() -> None:
    """F2: node down 1.5 s (refused): disconnected, then streaming again, the gap backfilled."""
    async with DevNode(node_config()) as node, running(node) as (feed, seen):
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
        node.faults.inject("restart", seconds=1.5)
        await seen.wait_for(lambda: feed.mode is Mode.DISCONNECTED, "disconnected")
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming again")
        await seen.wait_past(node.chain.finalized_number)
    assert_sound(seen, node)
    assert any(s.block.source is Source.BACKFILL for s in seen.seen)
    assert node.stats.restarts == 1


async def test_f3_half_open_socket_detected_http_delivers() -> None:
    """F3: TCP up, nothing flows (HTTP fine): the deadline/keepalive catches it, HTTP delivers."""
    async with DevNode(node_config()) as node, FinalityClock(node) as clock, \
            running(node) as (feed, seen):
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
        await seen.wait_past(node.chain.finalized_number + 5)
        begin = time.monotonic()
        node.faults.inject("blackhole", seconds=2.0, http=False)
        await seen.wait_for(lambda: feed.mode is Mode.POLLING, "the socket declared dead")
        detected = time.monotonic() - begin
        await seen.wait_for(lambda: time.monotonic() - begin > 2.0, "the fault window")
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming again")
        await seen.wait_past(node.chain.finalized_number)
    delays = delivery_delays(seen, clock.at, begin, begin + 2.0)
    assert delays and max(delays) <= 1.5 * T + 1.0
    assert detected <= 1.5 * T + 1.0
    assert_sound(seen, node)


async def test_f4_silent_subscription_deadline_and_probe() -> None:
    """F4: the subscription goes silent (requests fine): probe says stale, HTTP delivers fast."""
    async with DevNode(node_config()) as node, FinalityClock(node) as clock, \
            running(node) as (feed, seen):
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
        await seen.wait_past(node.chain.finalized_number + 5)
        begin = time.monotonic()
        node.faults.inject("sub_stall", seconds=2.0, new=True)
        await seen.wait_for(lambda: feed.status().probes.get("stale", 0) >= 1, "a stale probe")
        await seen.wait_for(lambda: time.monotonic() - begin > 2.0, "the fault window")
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming again")
        await seen.wait_past(node.chain.finalized_number)
    delays = delivery_delays(seen, clock.at, begin, begin + 2.0)
    assert len(delays) >= 10 and max(delays) <= 1.5 * T + 1.0
    assert any(s.block.source is Source.POLL for s in seen.seen)
    assert_sound(seen, node)


async def test_f5_subscribe_errors_poll_and_back_off() -> None:
    """F5: (re)subscribe answered with an error: HTTP delivers, retries back off, then streams."""
    async with DevNode(node_config()) as node, running(node) as (feed, seen):
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
        before = node.stats.requests["chain_subscribeFinalizedHeads"]
        node.faults.inject("sub_error", seconds=2.5)
        node.faults.inject("close", seconds=0)
        begin = time.monotonic()
        await seen.wait_for(lambda: time.monotonic() - begin > 2.5, "the fault window")
        during = node.stats.requests["chain_subscribeFinalizedHeads"] - before
        mid = len(seen.seen)
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming again")
        await seen.wait_past(node.chain.finalized_number)
    assert feed.status().transitions.get("polling->polling:subscribe_failed", 0) == 0
    assert 2 <= during <= 20  # retried, with backoff (a storm would be hundreds)
    assert mid > 15  # blocks kept coming over HTTP during the 2.5 s
    assert_sound(seen, node)


async def test_f6_http_errors_while_streaming_change_nothing() -> None:
    """F6: HTTP answers 503 / hangs: the socket keeps delivering, no loss."""
    async with DevNode(node_config()) as node, running(node) as (feed, seen):
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
        node.faults.inject("http_errors", seconds=1.0, status=503)
        node.faults.inject("http_errors", seconds=2.0, hang=True)
        begin = time.monotonic()
        await seen.wait_for(lambda: time.monotonic() - begin > 2.2, "the fault window")
        await seen.wait_past(node.chain.finalized_number)
    assert feed.mode is Mode.STREAMING
    assert feed.status().reconnects == 0
    assert_sound(seen, node)


async def test_f6_http_errors_and_socket_down_back_off_then_recover() -> None:
    """F6 with the socket gone too: disconnected with HTTP backoff, then everything recovers."""
    async with DevNode(node_config()) as node, running(node) as (feed, seen):
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
        node.faults.inject("http_errors", seconds=2.0, status=429)
        node.faults.inject("sub_error", seconds=2.0)
        node.faults.inject("close", seconds=0)
        await seen.wait_for(lambda: feed.mode is Mode.DISCONNECTED, "disconnected")
        http_before = node.stats.http_requests
        begin = time.monotonic()
        await seen.wait_for(lambda: time.monotonic() - begin > 1.5, "most of the fault window")
        http_during = node.stats.http_requests - http_before
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming again")
        await seen.wait_past(node.chain.finalized_number)
    assert http_during <= 40  # backing off, not hammering (~ every 10 ms would be 150)
    assert_sound(seen, node)


async def test_f7_finality_halt_zero_reconnects_flag_set_and_cleared() -> None:
    """F7: finality halts for 2 s: finality_stalled raised then cleared, zero reconnects."""
    async with DevNode(node_config()) as node, running(node) as (feed, seen):
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
        await seen.wait_past(node.chain.finalized_number + 3)
        reconnects = feed.status().reconnects
        node.faults.inject("finality_halt", seconds=2.0)
        await seen.wait_for(lambda: feed.status().finality_stalled, "finality_stalled")
        assert feed.status().reconnects == reconnects
        await seen.wait_for(lambda: not feed.status().finality_stalled, "finality resumed")
        await seen.wait_past(node.chain.finalized_number)
        status = feed.status()
    assert status.reconnects == reconnects
    assert status.mode is Mode.STREAMING
    assert seen.kinds().count("finality_stalled") >= 1
    assert seen.kinds().count("finality_resumed") == seen.kinds().count("finality_stalled")
    assert_sound(seen, node)


async def test_f8_malformed_frames_counted_never_crash() -> None:
    """F8: garbage, wrong types, missing fields, huge frames on both transports: counted only."""
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


async def test_f9_disorder_restored_to_exact_order() -> None:
    """F9: duplicated, reordered and skipped notifications: the merge restores exact order."""
    async with DevNode(node_config()) as node, running(node) as (feed, seen):
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
        node.faults.inject("disorder", seconds=3.0, rate=0.5)
        begin = time.monotonic()
        await seen.wait_for(lambda: time.monotonic() - begin > 3.0, "the fault window")
        await seen.wait_past(node.chain.finalized_number)
    assert_sound(seen, node)
    assert any(s.block.source is Source.BACKFILL for s in seen.seen)


async def test_f10_liar_quarantined_with_two_endpoints() -> None:
    """F10: endpoint A lies (wrong parent hashes) on its socket: verified on B, A quarantined."""
    async with DevNode(node_config()) as liar, DevNode(node_config()) as honest, \
            running(liar, honest) as (feed, seen):
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
        assert feed.status().endpoint == feed.endpoints[0]
        liar.faults.inject("lie", seconds=60.0, mode="parent", on="both")
        await seen.wait_for(lambda: bool(seen.events_of("endpoint_quarantined")), "quarantine")
        await seen.wait_for(lambda: feed.status().endpoint == feed.endpoints[1], "failover")
        await seen.wait_past(honest.chain.finalized_number + 5)
        status = feed.status()
    quarantined = {e.endpoint for _, e in seen.events_of("endpoint_quarantined")}
    assert quarantined == {feed.endpoints[0]}
    assert "verification_failed" in seen.kinds()
    assert status.endpoints[0]["quarantined"] and not status.endpoints[1]["quarantined"]
    assert_sound(seen, honest)


async def test_f10_lagging_endpoint_quarantined() -> None:
    """F10 lag: endpoint A's finalized head falls 30 blocks behind: quarantined, B used."""
    async with DevNode(node_config()) as lagging, DevNode(node_config()) as good, \
            running(lagging, good, lag_quarantine_blocks=10) as (feed, seen):
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
        lagging.faults.inject("lie", seconds=60.0, mode="lag", blocks=30, on="both")
        await seen.wait_for(lambda: bool(seen.events_of("endpoint_quarantined")), "quarantine")
        await seen.wait_past(good.chain.finalized_number + 5)
    assert {e.endpoint for _, e in seen.events_of("endpoint_quarantined")} == {feed.endpoints[0]}
    assert_sound(seen, good)


async def test_f11_high_latency_keeps_going() -> None:
    """F11: 0.25 s added to every message (2.5 T): blocks keep coming, in order, deadlines adapt."""
    async with DevNode(node_config()) as node, running(node) as (feed, seen):
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
        node.faults.inject("latency", seconds=3.0, delay_s=0.25)
        begin = time.monotonic()
        count_before = len(seen.seen)
        await seen.wait_for(lambda: time.monotonic() - begin > 3.0, "the fault window")
        during = len(seen.seen) - count_before
        await seen.wait_past(node.chain.finalized_number, timeout_s=WAIT_S)
    assert during >= 15  # ~30 blocks were finalized; most arrive despite the delay
    assert_sound(seen, node)


async def test_f6_with_a_silent_subscription_reads_over_the_socket() -> None:
    """F4 + F6: HTTP answers 503 while the subscription goes silent (the socket still answers
    requests): hedges and the probe go over the socket, blocks keep coming within the hedged
    bound, the stale subscription is recycled, and the feed never declares the node down."""
    async with DevNode(node_config()) as node, FinalityClock(node) as clock, \
            running(node) as (feed, seen):
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
        await seen.wait_past(node.chain.finalized_number + 5)
        begin = time.monotonic()
        node.faults.inject("http_errors", seconds=3.0, status=503)
        node.faults.inject("sub_stall", seconds=2.0)
        await seen.wait_for(lambda: time.monotonic() - begin > 3.0, "the fault window")
        await seen.wait_past(node.chain.finalized_number)
        status = feed.status()
    delays = delivery_delays(seen, clock.at, begin, begin + 2.0)
    assert len(delays) >= 10 and max(delays) <= 1.5 * T + 1.0
    assert status.probes.get("stale", 0) >= 1
    assert status.requests.get("ws_hedge", 0) + status.requests.get("ws_probe", 0) >= 1
    assert not any("node or network down" in e.reason for _, e in seen.events_of("mode_changed"))
    assert status.mode is Mode.STREAMING
    assert_sound(seen, node)
