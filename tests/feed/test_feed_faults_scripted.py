"""BlockFeed on scripted in-memory nodes under a virtual clock: every fault class F1-F14.

No socket, no sleep, no wall-clock threshold: the fault script plays in virtual time, so the
counts and virtual-time bounds asserted here are exact and the same on any machine. Every test
also asserts the guarantee (consecutive, unique, parent-linked, canonical blocks). The wire
itself (frames, resets, HTTP) is covered by ``test_feed_faults.py`` against devnode.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from scriptkit import Recorder, T, advance, assert_sound, now, running, scripted_node

from blockfeed import BlockFeed, Mode, Source
from blockfeed.errors import ChainDiverged
from blockfeed.store import open_store
from blockfeed.testing import InMemoryNetwork, fast_config, virtual_time

CLOSED_SOCKET_TARGET_S = 1.0
"""DESIGN.md: delivery delay after a closed socket <= 1 s."""
SILENT_SOCKET_TARGET_S = 1.5 * T + 1.0
"""DESIGN.md: delivery delay after a silent socket <= 1.5 T + 1 s."""
STARTED = {"starting->streaming:socket_restored": 1}
"""The transitions of a feed that started streaming and never left it."""


def _through(*transitions: str) -> dict[str, int]:
    """STARTED plus each of ``transitions`` once."""
    return {**STARTED, **dict.fromkeys(transitions, 1)}


async def _streaming(feed, rec, node) -> float:  # type: ignore[no-untyped-def]
    """Wait until streaming with a few blocks delivered; returns the virtual time."""
    await rec.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
    await rec.wait_past(node.chain.finalized_number + 3)
    return now()


@virtual_time(limit_s=600)
async def test_f1_close_reconnects_at_once() -> None:
    """F1: a closed socket is replaced at once: one reconnect, no block late by more than 1 s."""
    node = scripted_node()
    async with running(node) as (feed, rec):
        begin = await _streaming(feed, rec, node)
        node.faults.inject("close")
        await rec.wait_for(lambda: feed.status().transitions.get(
            "polling->streaming:socket_restored", 0) >= 1, "the socket restored")
        await rec.wait_past(node.chain.finalized_number + 10)
        status = feed.status()
    reconnect_at = rec.events_of("reconnect")[0][0]
    assert reconnect_at - begin <= T
    assert status.transitions == _through("streaming->polling:socket_closed",
                                          "polling->streaming:socket_restored")
    assert status.reconnects == 1
    assert max(rec.delays(node, begin, begin + 2)) <= CLOSED_SOCKET_TARGET_S
    assert_sound(rec, node)


@virtual_time(limit_s=600)
async def test_f1_reset_and_flapping_proxy_back_off() -> None:
    """F1 reset + flap: sockets dying right after the handshake are failed attempts, backed off."""
    node = scripted_node()
    async with running(node) as (feed, rec):
        await _streaming(feed, rec, node)
        begin = now()
        node.faults.inject("close", seconds=3.0, reset=True, flap=True)
        await advance(3.0)
        attempts = [t for t, _ in rec.events_of("reconnect") if begin <= t <= begin + 3.0]
        await rec.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming again")
        await rec.wait_past(node.chain.finalized_number + 5)
    assert 2 <= len(attempts) <= 20  # a storm at 0.05 s initial backoff would be ~60
    assert max(b - a for a, b in itertools.pairwise(attempts)) >= 0.2  # the backoff grew
    assert_sound(rec, node)


@virtual_time(limit_s=600)
async def test_f2_restart_disconnected_then_resumes_with_backfill() -> None:
    """F2: node down 1.5 s (refused): disconnected, then streaming, the gap backfilled."""
    node = scripted_node()
    async with running(node) as (feed, rec):
        await _streaming(feed, rec, node)
        node.faults.inject("restart", seconds=1.5)
        await rec.wait_for(lambda: feed.mode is Mode.DISCONNECTED, "disconnected")
        back = await rec.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming again")
        await rec.wait_past(node.chain.finalized_number)
        transitions = feed.status().transitions
    assert transitions == _through(
        "streaming->polling:socket_closed", "polling->disconnected:http_failed",
        "disconnected->polling:http_ok", "polling->streaming:socket_restored")
    assert back <= 1.5 + 3.0  # socket back within 3 s of the node (DESIGN.md)
    assert any(b.source is Source.BACKFILL for b in rec.blocks)
    assert_sound(rec, node)


@virtual_time(limit_s=600)
async def test_f3_half_open_socket_detected_http_delivers() -> None:
    """F3: nothing flows on the socket (HTTP fine): detected within 1.5 T + 1 s, HTTP delivers."""
    node = scripted_node()
    async with running(node) as (feed, rec):
        begin = await _streaming(feed, rec, node)
        node.faults.inject("blackhole", seconds=2.0, http=False)
        detected = await rec.wait_for(lambda: feed.mode is Mode.POLLING, "socket declared dead")
        await advance(2.0)
        await rec.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming again")
        await rec.wait_past(node.chain.finalized_number)
        transitions = feed.status().transitions
    assert transitions == _through("streaming->polling:socket_stale",
                                   "polling->streaming:socket_restored")
    assert detected <= SILENT_SOCKET_TARGET_S
    delays = rec.delays(node, begin, begin + 2.0)
    assert len(delays) >= 15 and max(delays) <= SILENT_SOCKET_TARGET_S
    assert_sound(rec, node)


@virtual_time(limit_s=600)
async def test_f4_silent_subscription_deadline_and_probe() -> None:
    """F4: the subscription goes silent (requests fine): a stale probe, HTTP delivers fast."""
    node = scripted_node()
    async with running(node) as (feed, rec):
        begin = await _streaming(feed, rec, node)
        node.faults.inject("sub_stall", seconds=2.0, new=True)
        await rec.wait_for(lambda: feed.status().probes.get("stale", 0) >= 1, "a stale probe")
        await advance(2.0)
        await rec.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming again")
        await rec.wait_past(node.chain.finalized_number)
        reconnects = feed.status().reconnects
    delays = rec.delays(node, begin, begin + 2.0)
    assert len(delays) >= 15 and max(delays) <= SILENT_SOCKET_TARGET_S
    assert any(b.source is Source.POLL for b in rec.blocks)
    assert reconnects >= 1  # the stale socket was recycled
    assert_sound(rec, node)


@virtual_time(limit_s=600)
async def test_f5_subscribe_errors_poll_and_back_off() -> None:
    """F5: (re)subscribe answered with an error: HTTP delivers, retries back off, then streams."""
    node = scripted_node()
    async with running(node) as (feed, rec):
        await _streaming(feed, rec, node)
        before = node.stats.requests["chain_subscribeFinalizedHeads"]
        node.faults.inject("sub_error", seconds=2.5)
        node.faults.inject("close")
        count = len(rec.blocks)
        await advance(2.5)
        during = node.stats.requests["chain_subscribeFinalizedHeads"] - before
        delivered_during = len(rec.blocks) - count
        await rec.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming again")
        await rec.wait_past(node.chain.finalized_number)
    assert 2 <= during <= 20  # retried with backoff (a storm would be hundreds)
    assert delivered_during >= 20  # 25 blocks were finalized; HTTP kept delivering
    assert_sound(rec, node)


@virtual_time(limit_s=600)
async def test_f6_http_errors_while_streaming_change_nothing() -> None:
    """F6: HTTP answers 503, then hangs: the socket keeps delivering, no reconnect."""
    node = scripted_node()
    async with running(node) as (feed, rec):
        await _streaming(feed, rec, node)
        node.faults.inject("http_errors", seconds=1.0, status=503)
        node.faults.inject("http_errors", seconds=2.0, hang=True)
        await advance(2.2)
        await rec.wait_past(node.chain.finalized_number)
        status = feed.status()
    assert status.transitions == STARTED
    assert status.reconnects == 0
    assert all(b.source is Source.WS for b in rec.blocks[-20:])
    assert_sound(rec, node)


@virtual_time(limit_s=600)
async def test_f6_rate_limited_with_the_socket_down_backs_off_and_honours_retry_after() -> None:
    """F6: 429 with Retry-After 1 while the socket is down: few requests, then full recovery."""
    node = scripted_node()
    async with running(node) as (feed, rec):
        await _streaming(feed, rec, node)
        node.faults.inject("http_errors", seconds=3.0, status=429, retry_after=1)
        node.faults.inject("sub_error", seconds=3.0)
        node.faults.inject("close")
        await rec.wait_for(lambda: feed.mode is Mode.DISCONNECTED, "disconnected")
        http_before = node.stats.http_requests
        await advance(2.0)
        http_during = node.stats.http_requests - http_before
        await rec.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming again")
        await rec.wait_past(node.chain.finalized_number)
    assert http_during <= 8  # one request per Retry-After second, a few to spare
    assert_sound(rec, node)


@virtual_time(limit_s=600)
async def test_f6_with_a_silent_subscription_reads_over_the_socket() -> None:
    """F4 + F6: HTTP answers 503 while the subscription goes silent (the socket still answers
    requests): hedges and the probe go over the socket, blocks keep coming within the silent
    socket bound, the stale subscription is recycled, the node is never declared down."""
    node = scripted_node()
    async with running(node) as (feed, rec):
        begin = await _streaming(feed, rec, node)
        node.faults.inject("http_errors", seconds=3.0, status=503)
        node.faults.inject("sub_stall", seconds=2.0)
        await advance(3.0)
        await rec.wait_past(node.chain.finalized_number)
        status = feed.status()
    delays = rec.delays(node, begin, begin + 2.0)
    assert len(delays) >= 15 and max(delays) <= SILENT_SOCKET_TARGET_S
    assert status.probes.get("stale", 0) >= 1
    assert status.requests.get("ws_hedge", 0) + status.requests.get("ws_probe", 0) >= 1
    assert not any("node or network down" in e.reason for _, e in rec.events_of("mode_changed"))
    assert status.mode is Mode.STREAMING
    assert_sound(rec, node)


@virtual_time(limit_s=600)
async def test_f7_finality_halt_zero_reconnects_flag_set_and_cleared() -> None:
    """F7: finality halts for 5 s: finality_stalled raised then cleared, zero reconnects."""
    node = scripted_node()
    async with running(node) as (feed, rec):
        await _streaming(feed, rec, node)
        reconnects = feed.status().reconnects
        node.faults.inject("finality_halt", seconds=5.0)
        await rec.wait_for(lambda: feed.status().finality_stalled, "finality_stalled")
        await rec.wait_for(lambda: not feed.status().finality_stalled, "finality resumed")
        await rec.wait_past(node.chain.finalized_number)
        status = feed.status()
    assert status.reconnects == reconnects == 0
    assert status.transitions == STARTED  # no reconnect storm: the socket was never blamed
    assert rec.kinds().count("finality_stalled") == 1
    assert rec.kinds().count("finality_resumed") == 1
    assert_sound(rec, node)


@virtual_time(limit_s=600)
async def test_f8_malformed_frames_counted_never_crash() -> None:
    """F8: garbage, wrong types, missing fields, huge frames on both transports: counted only."""
    node = scripted_node()
    async with running(node) as (feed, rec):
        await _streaming(feed, rec, node)
        node.faults.inject("malformed", seconds=2.5, rate=0.3, big_bytes=1_500_000)
        await advance(2.5)
        await rec.wait_past(node.chain.finalized_number)
        status = feed.status()
    assert status.malformed_frames > 0
    assert node.stats.malformed_sent > 0
    assert_sound(rec, node)


@virtual_time(limit_s=600)
async def test_f9_disorder_restored_to_exact_order() -> None:
    """F9: duplicated, reordered and skipped notifications: the merge restores exact order."""
    node = scripted_node()
    async with running(node) as (feed, rec):
        await _streaming(feed, rec, node)
        node.faults.inject("disorder", seconds=3.0, rate=0.5)
        await advance(3.0)
        await rec.wait_past(node.chain.finalized_number)
    assert node.stats.notifications_dropped > 0  # skips happened ...
    assert any(b.source is not Source.WS for b in rec.blocks)  # ... and were filled by HTTP
    assert_sound(rec, node)


@virtual_time(limit_s=600)
async def test_f10_liar_quarantined_with_two_endpoints() -> None:
    """F10: endpoint A lies (wrong parents): verified against B, A quarantined, B used."""
    liar, honest = scripted_node("liar"), scripted_node("honest")
    async with running(liar, honest) as (feed, rec):
        await _streaming(feed, rec, honest)
        liar.faults.inject("lie", seconds=60.0, mode="parent", on="both")
        await rec.wait_for(lambda: bool(rec.events_of("endpoint_quarantined")), "quarantine")
        await rec.wait_for(lambda: feed.status().endpoint == feed.endpoints[1], "failover")
        await rec.wait_past(honest.chain.finalized_number + 5)
        status = feed.status()
    assert {e.endpoint for _, e in rec.events_of("endpoint_quarantined")} == {feed.endpoints[0]}
    assert "verification_failed" in rec.kinds()
    assert status.endpoints[0]["quarantined"] and not status.endpoints[1]["quarantined"]
    assert_sound(rec, honest)


@virtual_time(limit_s=600)
async def test_f10_every_endpoint_telling_the_same_lie_is_not_another_chain() -> None:
    """F10 on both endpoints at once, with the same lie (same seed): their blocks do not link
    to their own chain, so they are liars, never "another chain"; no chain_diverged, and
    delivery goes on once they tell the truth again."""
    a, b = scripted_node("a"), scripted_node("b")
    async with running(a, b) as (feed, rec):
        await _streaming(feed, rec, a)
        for node in (a, b):
            node.faults.inject("lie", seconds=3.0, mode="parent", on="both")
        await rec.wait_for(lambda: bool(rec.events_of("endpoint_quarantined")), "quarantine")
        await advance(3.0)
        await rec.wait_past(a.chain.finalized_number + 5)
        status = feed.status()
    assert "chain_diverged" not in rec.kinds()
    assert status.error is None
    assert_sound(rec, a)


@virtual_time(limit_s=600)
async def test_f10_lagging_endpoint_quarantined() -> None:
    """F10 lag: endpoint A's finalized head falls 30 blocks behind: quarantined, B used."""
    lagging, good = scripted_node("lagging"), scripted_node("good")
    async with running(lagging, good, lag_quarantine_blocks=10) as (feed, rec):
        await _streaming(feed, rec, good)
        lagging.faults.inject("lie", seconds=60.0, mode="lag", blocks=30, on="both")
        await rec.wait_for(lambda: bool(rec.events_of("endpoint_quarantined")), "quarantine")
        await rec.wait_past(good.chain.finalized_number + 5)
    assert {e.endpoint for _, e in rec.events_of("endpoint_quarantined")} == {feed.endpoints[0]}
    assert_sound(rec, good)


@virtual_time(limit_s=600)
async def test_f11_high_latency_keeps_going() -> None:
    """F11: 0.25 s (2.5 T) on every message: every block still comes, about that much later."""
    node = scripted_node()
    async with running(node) as (feed, rec):
        begin = await _streaming(feed, rec, node)
        node.faults.inject("latency", seconds=3.0, delay_s=0.25)
        await advance(3.0)
        await rec.wait_past(node.chain.finalized_number)
        transitions = feed.status().transitions
    assert transitions == STARTED  # deadlines adapted: the slow socket was never suspected
    delays = rec.delays(node, begin + 0.5, begin + 3.0)
    assert len(delays) >= 20 and max(delays) <= 0.25 + SILENT_SOCKET_TARGET_S
    assert_sound(rec, node)


@virtual_time(limit_s=600)
async def test_f13_replaced_chain_stops_the_feed_with_one_chain_diverged() -> None:
    """F13: the chain is replaced under the endpoint: one chain_diverged, nothing of the new
    chain delivered, ChainDiverged raised."""
    node = scripted_node(start_block=1)
    old: dict[int, str] = {}
    with pytest.raises(ChainDiverged, match=r"^CHAIN DIVERGED"):
        async with running(node) as (feed, rec):
            await _streaming(feed, rec, node)
            old.update({n: node.chain.hash_of(n) for n in range(1, node.chain.best_number + 1)})
            node.faults.inject("reset", seconds=0.3, genesis="new", start_block=1)
            await rec.wait_for(lambda: bool(rec.events_of("chain_diverged")), "chain_diverged")
            await rec.wait_for(lambda: feed._runner is not None and feed._runner.done(),
                               "the feed to stop")
    assert len(rec.events_of("chain_diverged")) == 1
    assert all(old.get(b.number) == b.hash for b in rec.blocks), "a block of the new chain leaked"


@virtual_time(limit_s=600)
async def test_f14_wrong_declared_slot_is_corrected_by_what_arrives() -> None:
    """F14: the runtime declares 12 s slots, blocks come every 0.2 s: the feed learns 0.2 s."""
    node = scripted_node(block_time_s=0.2, slot_duration_s=12.0)
    async with running(node, block_time_s=None) as (feed, rec):
        await rec.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
        learned = await rec.wait_for(
            lambda: abs(feed.status().block_interval_s - 0.2) < 0.05, "T learned", within_s=30)
        count = len(rec.blocks)
        await advance(2.0)
    assert learned <= 3.0
    assert len(rec.blocks) - count >= 9  # ~10 blocks in 2 s, none held by a 12 s timer
    assert_sound(rec, node)


def test_the_same_script_plays_the_same_way() -> None:
    """Determinism: a fault script played twice gives the same blocks, sources, times, events."""

    def play() -> tuple[list[tuple[int, str, float]], list[tuple[float, str]]]:
        @virtual_time(limit_s=600)
        async def script() -> tuple[list[tuple[int, str, float]], list[tuple[float, str]]]:
            node = scripted_node()
            async with running(node) as (feed, rec):
                await _streaming(feed, rec, node)
                node.faults.inject("close")
                await advance(1.0)
                node.faults.inject("sub_stall", seconds=1.0, new=True)
                await advance(2.0)
                node.faults.inject("disorder", seconds=1.0, rate=0.5)
                await advance(2.0)
            blocks = [(b.number, b.source.value, round(t, 6))
                      for b, t in zip(rec.blocks, rec.at, strict=True)]
            return blocks, [(round(t, 6), e.kind) for t, e in rec.events]

        return script()  # type: ignore[no-any-return]

    first, second = play(), play()
    assert first == second
    assert len(first[0]) >= 40


@virtual_time(limit_s=600)
async def test_restart_resumes_from_the_store_on_the_kit(tmp_path: Path) -> None:
    """The SQLite store works under the virtual clock (its threads freeze time): a second feed
    on the same store resumes at checkpoint + 1 and backfills what it missed, parent-linked."""
    node = scripted_node()
    first, second = Recorder(), Recorder()
    network = InMemoryNetwork(node)
    async with node:
        for recorder, blocks in ((first, 20), (second, 30)):
            store = open_store(str(tmp_path / "state.sqlite"))
            try:
                feed = BlockFeed([node.ws_url], fast_config(T), store=store,
                                 connector=network)
                feed.subscribe(recorder.on_block, name="recorder")
                async with feed:
                    await recorder.wait_for(lambda r=recorder, n=blocks: len(r.blocks) >= n,
                                            f"{blocks} blocks")
                    await feed.save_checkpoint()
            finally:
                store.close()
            await advance(1.0)  # the chain moves on while no feed runs
    combined = Recorder(blocks=first.blocks + second.blocks, at=first.at + second.at)
    assert second.blocks[0].number == first.blocks[-1].number + 1
    assert any(b.source is Source.BACKFILL for b in second.blocks)
    assert_sound(combined, node)
