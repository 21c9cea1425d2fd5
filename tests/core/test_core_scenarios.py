"""Whole-follower scenarios in the simulator: detection delays, polling targets, halts, lies.

Time is simulated (T = 1 s of fake time), so figures are exact functions of the logic; the
assertions are the DESIGN.md targets in units of T.
"""

from __future__ import annotations

import itertools
import random
import statistics

from chainsim import Sim, SimChain, SimNode

from blockfeed.core import Connect, Follower, FollowerConfig, Poll, Probe
from blockfeed.types import Mode, Source

T = 1.0


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def make_sim(
    *nodes: SimNode, chain: SimChain | None = None, anchor: bool = False, **config: object
) -> Sim:
    chain = chain or SimChain(block_time_s=T, count=400, jitter_s=0.02, seed=5)
    cfg: dict[str, object] = {"block_time_s": T}
    cfg.update(config)
    follower = Follower(
        [n.label for n in nodes] or ["a"],
        config=FollowerConfig(**cfg),  # type: ignore[arg-type]
        anchor=(chain.start, chain.hashes[chain.start]) if anchor else None,
        rng=random.Random(11).random,
    )
    sim = Sim(follower, chain, list(nodes) or [SimNode("a")])
    sim.run_until(0.5)
    sim.start()
    return sim


def connects_between(sim: Sim, begin: float, end: float) -> list[float]:
    return [t for t, a in sim.actions if isinstance(a, Connect) and begin <= t < end]


def http_reads_between(sim: Sim, begin: float, end: float) -> int:
    return sum(1 for t, a in sim.actions if isinstance(a, Poll | Probe) and begin <= t < end)


def test_steady_stream_uses_the_socket_only() -> None:
    """A healthy socket delivers every block; HTTP is barely touched (startup + rare hedges)."""
    sim = make_sim(SimNode("a"))
    sim.run_until(200)
    sim.assert_perfect()
    assert sim.follower.mode is Mode.STREAMING
    late = [d for d in sim.deliveries if d.block.source is not Source.WS]
    assert len(late) <= 2  # the startup head (poll) at most
    assert http_reads_between(sim, 10, 200) <= 5
    assert sim.follower.reconnects == 0


def test_closed_socket_recovers_at_once_without_loss() -> None:
    """F1: the socket closes at 50.5 -> reconnect in the same instant; the next block is on time."""
    sim = make_sim(SimNode("a"))
    sim.close_socket_at(50.5)
    sim.run_until(120)
    sim.assert_perfect()
    assert connects_between(sim, 50.5, 50.6) == [50.5]
    delays = sim.delays(since=50.5, until=53)
    assert max(delays) < 0.05 * T
    assert sim.follower.mode is Mode.STREAMING
    changes = [m for m, _ in sim.mode_changes()]
    assert changes == ["streaming", "polling", "streaming"]


def test_silent_socket_hedged_delay_and_recycle() -> None:
    """F4 with hedging: blocks keep coming with p99 <= 0.35 T; the socket is recycled by 1.5 T."""
    sim = make_sim(SimNode("a"))
    sim.run_until(50.3)
    sim.set_at(50.3, "a", ws_silent=True)
    sim.run_until(150)
    sim.assert_perfect()
    delays = sim.delays(since=50.3, until=148)
    assert quantile(delays, 0.99) <= 0.35 * T
    stale = [e for e in sim.events if e.kind == "mode_changed" and "stale" in e.reason]
    assert stale and stale[0].at - 50.0 <= 1.5 * T + 0.1  # last ws block ~50.0
    assert sim.follower.mode is Mode.POLLING
    # The silent socket keeps failing: the retries back off (growing gaps), never a storm.
    times = connects_between(sim, 51, 150)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) < 15 and max(gaps) > 5 * T


def test_silent_socket_without_hedge_is_caught_by_the_deadline() -> None:
    """F3/F4 without hedging: worst delay <= 1.5 T + probe time; the socket is recycled."""
    sim = make_sim(SimNode("a"), hedge=False)
    sim.run_until(50.3)
    sim.set_at(50.3, "a", ws_silent=True)
    sim.run_until(120)
    sim.assert_perfect()
    assert max(sim.delays(since=50.3, until=118)) <= 1.5 * T + 0.1
    assert sim.follower.probes["stale"] >= 1


def test_polling_mode_is_phase_locked() -> None:
    """Socket refused throughout: p50 <= 0.15 T, p99 <= 0.35 T, <= 3 HTTP requests per block."""
    chain = SimChain(block_time_s=T, count=1300, jitter_s=0.05, jump_rate=0.15, seed=9)
    sim = make_sim(SimNode("a", ws_refuse=True), chain=chain)
    sim.run_until(1250)
    sim.assert_perfect()
    delays = sim.delays(since=30, until=1240)
    assert statistics.median(delays) <= 0.15 * T
    assert quantile(delays, 0.99) <= 0.35 * T
    assert sim.requests / len(sim.deliveries) <= 3.0
    assert sim.follower.mode is Mode.POLLING


def test_back_to_the_socket_within_the_backoff_cap() -> None:
    """The socket refuses for 100 s then works: streaming again within 30 s (the cap)."""
    sim = make_sim(SimNode("a", ws_refuse=True), reconnect_initial_s=1.0, reconnect_cap_s=30.0)
    sim.set_at(100.0, "a", ws_refuse=False)
    sim.run_until(200)
    sim.assert_perfect()
    back = [e.at for e in sim.events if e.kind == "mode_changed" and e.new_mode is Mode.STREAMING]
    assert back and 100.0 <= back[-1] <= 100.0 + 30.0 + 1.0


def test_finality_halt_zero_reconnects_and_stall_flag() -> None:
    """F7: 60 s without finality: no reconnect, flag raised after ~6 T, cleared on resume."""
    chain = SimChain(block_time_s=T, count=400, jitter_s=0.02, halts=[(40.5, 100.5)], seed=5)
    sim = make_sim(SimNode("a"), chain=chain)
    sim.run_until(160)
    sim.assert_perfect()
    assert sim.follower.reconnects == 0
    stalls = [e for e in sim.events if e.kind in ("finality_stalled", "finality_resumed")]
    assert [e.kind for e in stalls] == ["finality_stalled", "finality_resumed"]
    assert 40.0 + 6 * T <= stalls[0].at <= 40.0 + 6 * T + 1.6 * T
    assert 100.5 <= stalls[1].at <= 101.1
    # Watching a halted chain costs about one request per deadline, not a poll storm.
    assert http_reads_between(sim, 45, 100) <= 55 / 1.5 + 2
    assert sim.follower.mode is Mode.STREAMING


def test_finality_halt_in_polling_mode() -> None:
    """F7 while polling: flag raised, polls slow down, everything delivered after."""
    chain = SimChain(block_time_s=T, count=400, halts=[(40.5, 100.5)], seed=5)
    sim = make_sim(SimNode("a", ws_refuse=True), chain=chain)
    sim.run_until(160)
    sim.assert_perfect()
    kinds = sim.event_kinds()
    assert "finality_stalled" in kinds and "finality_resumed" in kinds
    assert http_reads_between(sim, 50, 100) <= 50


def test_node_down_then_back() -> None:
    """F2: socket and HTTP fail for 30 s -> disconnected; afterwards everything is backfilled."""
    sim = make_sim(SimNode("a"))
    sim.set_at(60.2, "a", ws_refuse=True, http_fail=True)
    sim.close_socket_at(60.2)
    sim.set_at(90.0, "a", ws_refuse=False, http_fail=False)
    sim.run_until(160)
    sim.assert_perfect()
    modes = [m for m, _ in sim.mode_changes()]
    assert "disconnected" in modes and modes[-1] == "streaming"
    assert any(d.block.source is Source.BACKFILL for d in sim.deliveries)


def test_subscribe_errors_poll_and_back_off() -> None:
    """F5 for 60 s: polling delivers, attempts back off, streaming resumes after."""
    sim = make_sim(SimNode("a"), reconnect_initial_s=0.5)
    sim.set_at(30.2, "a", ws_sub_error=True)
    sim.close_socket_at(30.2)
    sim.set_at(90.0, "a", ws_sub_error=False)
    sim.run_until(160)
    sim.assert_perfect()
    attempts = connects_between(sim, 30.2, 90.0)
    assert 3 <= len(attempts) <= 12
    assert sim.follower.mode is Mode.STREAMING
    assert quantile(sim.delays(since=31, until=89), 0.99) <= 0.35 * T


def test_liar_quarantined_and_honest_chain_delivered() -> None:
    """F10: endpoint 'a' starts lying on its socket at 40 s: 'b' verifies, 'a' is benched."""
    sim = make_sim(SimNode("a"), SimNode("b"))
    sim.set_at(40.2, "a", lie_ws=True)
    sim.run_until(120)
    sim.assert_perfect()
    quarantined = [e.endpoint for e in sim.events if e.kind == "endpoint_quarantined"]
    assert quarantined == ["a"]
    assert "verification_failed" in sim.event_kinds()
    assert sim.follower.socket_endpoint == "b" and sim.follower.mode is Mode.STREAMING


def test_lagging_endpoint_is_benched_and_the_feed_keeps_up() -> None:
    """F10 lag: 'a' (preferred) serves a head 40 blocks old; the health probe of 'b' exposes it."""
    sim = make_sim(SimNode("a"), SimNode("b"), health_check_interval_s=10.0)
    sim.set_at(30.2, "a", lag_blocks=40)
    sim.run_until(120)
    sim.assert_perfect()
    assert [e.endpoint for e in sim.events if e.kind == "endpoint_quarantined"] == ["a"]
    assert sim.deliveries[-1].block.number >= sim.chain.head_at(119.0) - 1  # type: ignore[operator]


def test_resume_from_checkpoint_backfills_in_chunks() -> None:
    """Anchor 300 blocks behind the head: backfilled in 500-block chunks, then live."""
    chain = SimChain(block_time_s=T, count=800, seed=5)
    follower = Follower(["a"], anchor=(chain.start, chain.hashes[chain.start]),
                        config=FollowerConfig(block_time_s=T, range_chunk=100),
                        rng=random.Random(1).random)
    sim = Sim(follower, chain, [SimNode("a")])
    sim.run_until(300.3)
    sim.start()
    sim.run_until(320)
    sim.assert_perfect()
    assert sim.deliveries[0].block.number == chain.start + 1
    backfilled = [d for d in sim.deliveries if d.block.source is Source.BACKFILL]
    assert len(backfilled) >= 299 and all(d.block.late for d in backfilled)
    assert follower.requests["range"] >= 3


def test_random_fault_schedules_never_break_the_guarantee() -> None:
    """30 random schedules mixing closes, silence, refusals, HTTP errors, lies, lag and halts:
    the output is always consecutive, unique, linked and the true chain, and it keeps up."""
    for seed in range(30):
        rng = random.Random(seed)
        halts = [(rng.uniform(20, 150), 0.0)]
        halts = [(begin, begin + rng.uniform(2, 15)) for begin, _ in halts]
        chain = SimChain(block_time_s=T, count=400, jitter_s=0.05, jump_rate=0.15,
                         halts=halts, seed=seed)
        nodes = [SimNode("a", latency_s=rng.uniform(0.001, 0.05)),
                 SimNode("b", latency_s=rng.uniform(0.001, 0.05))]
        sim = make_sim(*nodes, chain=chain, health_check_interval_s=15.0)
        for _ in range(12):
            at = rng.uniform(5, 170)
            label = rng.choice("ab")
            fault = rng.choice(["close", "ws_silent", "ws_refuse", "ws_sub_error", "http_fail",
                                "lie_ws", "lag_blocks", "ws_close_after_subscribe"])
            if fault == "close":
                sim.close_socket_at(at)
                continue
            value: object = 30 if fault == "lag_blocks" else True
            sim.set_at(at, label, **{fault: value})
            healed: object = 0 if fault == "lag_blocks" else False
            sim.set_at(at + rng.uniform(1, 25), label, **{fault: healed})
        sim.run_until(260)
        sim.assert_perfect()
        assert sim.deliveries[-1].block.number >= sim.chain.head_at(258.0) - 1, seed  # type: ignore[operator]


def test_http_down_and_subscription_silent_reads_go_over_the_socket() -> None:
    """F4 + F6: HTTP fails and the subscription goes silent (the socket still answers
    requests): hedges and the silence probe go over the socket, blocks keep coming with
    hedged latency, the stale subscription is recycled, never a 'node down' verdict."""
    sim = make_sim(SimNode("a"))
    sim.run_until(50.3)
    sim.set_at(50.3, "a", http_fail=True, ws_silent=True)
    sim.set_at(90.3, "a", http_fail=False, ws_silent=False)
    sim.run_until(150)
    sim.assert_perfect()
    delays = sim.delays(since=50.3, until=90)
    assert len(delays) >= 35 and quantile(delays, 0.99) <= 0.35 * T
    requests = sim.follower.requests
    assert requests["ws_hedge"] + requests["ws_poll"] >= 30 and requests["ws_probe"] >= 1
    assert sim.follower.probes["stale"] >= 1 and sim.follower.probes["failed"] == 0
    assert not any("node or network down" in reason for _, reason in sim.mode_changes())
    assert sim.follower.mode is Mode.STREAMING


def test_http_down_while_streaming_gaps_are_filled_over_the_socket_at_once() -> None:
    """F6 with GRANDPA jumps (gaps to backfill): a range that fails over HTTP is fetched over
    the socket right away, so no block waits for HTTP's backoff (max delay <= 0.05 T)."""
    chain = SimChain(block_time_s=T, count=400, jitter_s=0.02, jump_rate=0.3, seed=5)
    sim = make_sim(SimNode("a"), chain=chain)
    sim.run_until(50.3)
    sim.set_at(50.3, "a", http_fail=True)
    sim.set_at(150.3, "a", http_fail=False)
    sim.run_until(200)
    sim.assert_perfect()
    delays = sim.delays(since=50.3, until=150)
    assert len(delays) >= 95 and max(delays) <= 0.05 * T
    assert any(d.block.source is Source.BACKFILL for d in sim.deliveries if 50.3 < d.at < 150)
    assert connects_between(sim, 50.3, 150) == []  # the socket was never given up
    assert sim.follower.mode is Mode.STREAMING
