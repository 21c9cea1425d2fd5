"""Self-tuning and evidence-driven recovery, input by input on a fake clock (F2, F6, F13, F14)."""

from __future__ import annotations

import pytest
from chainsim import make_chain
from test_core_follower import HASH, START, Harness, streaming_harness

from blockfeed.codec import block_hash
from blockfeed.core import CheckChain, Connect, FetchRange, Poll, Probe, Subscribe
from blockfeed.types import BlockTimeChanged, Diverged, Mode

OTHER = make_chain(START - 50, 200, seed=99)
"""Another chain over the same numbers (a dev chain restarted from scratch)."""


def test_learns_a_faster_chain_than_the_hint_and_says_so() -> None:
    """F14: a 12 s hint on a 0.5 s chain: T follows the arrivals and one event says so."""
    h = streaming_harness(block_time_s=12.0)
    events = []
    for i, number in enumerate(range(START + 2, START + 6)):
        events += h.ws(number, 0.02 + 0.5 * (i + 1)).events
    assert h.f.block_interval_s == pytest.approx(0.5)
    assert h.f.deadline_s == pytest.approx(0.75)
    changes = [e for e in events if isinstance(e, BlockTimeChanged)]
    assert len(changes) == 1 and changes[0].previous_s == 12.0
    assert changes[0].block_time_s == pytest.approx(0.5)
    assert "was 12s" in changes[0].reason


def test_declared_slot_duration_replaces_the_hint_until_observation() -> None:
    """set_block_time_prior (the runtime's Aura slot) moves T and every timer at once."""
    h = Harness(block_time_s=12.0)
    h.start(0.0)
    h.f.set_block_time_prior(3.0, "the runtime's Aura slot duration", 0.0)
    step = h.out()
    assert h.f.block_interval_s == 3.0 and h.f.block_time_prior_s == 3.0
    assert [e.kind for e in step.events] == ["block_time"]
    assert "Aura" in step.events[0].reason


def test_http_answer_after_failures_brings_the_socket_back_at_once() -> None:
    """F2: refused socket backs off (1, 2, 4 s); the first HTTP answer triggers a Connect now."""
    h = Harness(block_time_s=1.0)
    step = h.start(0.0)
    connect, poll = step.of(Connect)[0], step.of(Poll)[0]
    h.f.on_failure(connect, "connection refused", 0.01)
    h.f.on_failure(poll, "connection refused", 0.01)
    h.out()
    now = 0.01
    for _ in range(3):  # a few more refused attempts: the backoff grows
        now = h.f.next_deadline() or now
        step = h.timer(now)
        for action in step.actions:
            h.f.on_failure(action, "connection refused", now)
        h.out()
    assert h.f.mode is Mode.DISCONNECTED
    # The node is back: the next HTTP read answers.
    while True:
        now = h.f.next_deadline() or now
        step = h.timer(now)
        polls = step.of(Poll)
        for action in step.actions:
            if not isinstance(action, Poll):
                h.f.on_failure(action, "connection refused", now)
        if polls:
            break
    assert now < 12.0  # HTTP retried about once per T, not on a 10 s cap
    answered = h.head(polls[0], START + 3, now + 0.01)  # type: ignore[arg-type]
    assert answered.of(Connect), "an HTTP answer after failures is evidence: reconnect now"


def test_no_reconnect_storm_when_http_never_failed() -> None:
    """F5 with HTTP healthy: HTTP answers are no news, the socket backoff keeps growing."""
    h = streaming_harness()
    h.f.on_ws_closed("a", "closed", 1.0)
    step = h.out()
    assert step.of(Connect)  # a proven socket is reopened at once
    polls = step.of(Poll)  # and HTTP is read at once
    h.f.on_ws_connected("a", 1.01)
    sub = h.out().of(Subscribe)[0]
    h.f.on_failure(sub, "JSON-RPC error -32009: busy", 1.02)
    h.out()
    step = h.head(polls[0], START + 2, 1.04)  # type: ignore[arg-type]
    assert not step.of(Connect), "HTTP never failed: its answers are not a sign of recovery"


def test_errors_over_the_socket_back_off_and_honour_retry_after() -> None:
    """Issue 14: HTTP 429 everywhere and every socket request answered with an error: the
    follower asks a bounded number of times (not thousands) and waits out Retry-After."""
    h = streaming_harness(block_time_s=0.5)
    h.f.on_ws_closed("a", "x", 0.03)  # the socket reopens, but nothing useful comes over it
    pending = h.out().actions
    now, requests = 0.03, 0
    while now < 15.0:
        if not pending:
            deadline = h.f.next_deadline()
            assert deadline is not None
            now = max(now, deadline)
            pending = h.timer(now).actions
        step_actions, pending = pending, []
        for action in step_actions:
            if isinstance(action, Poll | Probe | FetchRange | CheckChain):
                requests += 1
                over_http = action.transport == "http"  # type: ignore[union-attr]
                h.f.on_failure(action, "rate limited", now, status=429 if over_http else None,
                               retry_after_s=2.0 if over_http else None)
            elif isinstance(action, Connect):
                h.f.on_ws_connected(action.endpoint, now, attempt=action.attempt)
            elif isinstance(action, Subscribe):
                h.f.on_ws_subscribed(action.endpoint, now, attempt=action.attempt)
            pending += h.out().actions
    assert requests <= 45, f"{requests} requests in 15 s of errors"  # 39 measured (rng 1.0)
    health = h.f.ranking["a"]
    assert health.http_failures > 0 and health.ws_request_failures > 0


def test_retry_after_delays_the_next_http_request() -> None:
    """A 429 with Retry-After: 5 keeps that endpoint's HTTP side quiet for 5 s."""
    h = Harness(block_time_s=1.0)
    step = h.start(0.0)
    h.f.on_failure(step.of(Connect)[0], "refused", 0.0)
    h.f.on_failure(step.of(Poll)[0], "HTTP 429", 0.0, status=429, retry_after_s=5.0)
    h.out()
    assert h.f.ranking["a"].http_retry_at >= 5.0


def test_failover_prefers_fresh_evidence_and_asks_everyone_at_once() -> None:
    """Two endpoints, 'b' silently dead (never answered): when a's socket closes, 'b' is asked
    in parallel, and the next socket goes to 'a', which showed life recently."""
    h = Harness(["a", "b"], block_time_s=1.0)
    step = h.start(0.0)
    h.head(step.of(Poll)[0], START, 0.005)  # type: ignore[arg-type]
    h.stream(0.01)
    h.ws(START + 1, 0.02)
    h.ws(START + 2, 1.02)
    h.f.on_ws_closed("a", "closed by the node", 1.5)
    step = h.out()
    assert [p.endpoint for p in step.of(Probe)] == ["b"]  # type: ignore[attr-defined]
    assert [c.endpoint for c in step.of(Connect)] == ["a"]  # type: ignore[attr-defined]
    assert "closed by the node" in " ".join(e.reason for e in step.events)


def test_restored_only_once_a_socket_block_is_delivered() -> None:
    """A subscribed socket whose block waits on a backfill is not 'restored' until delivered."""
    h = Harness(block_time_s=1.0)
    step = h.start(0.0)
    h.head(step.of(Poll)[0], START, 0.005)  # type: ignore[arg-type]
    h.stream(0.01)
    step = h.ws(START + 3, 0.02)  # a gap: #+1..#+2 must be fetched first
    assert step.numbers == [] and h.f.mode is not Mode.STREAMING
    fetch = step.of(FetchRange)[0]
    step = h.fill(fetch, 0.05)  # type: ignore[arg-type]
    assert step.numbers == [START + 1, START + 2, START + 3]
    assert h.f.mode is Mode.STREAMING
    assert [e.reason for e in step.events if e.kind == "mode_changed"] == [
        "subscription confirmed and delivering"]


def _diverge(h: Harness, now: float, ep: str = "a") -> list[CheckChain]:
    """``ep``'s socket brings another chain's block at a delivered number."""
    h.f.on_ws_header(OTHER[START + 1], ep, now)
    return [a for a in h.out().actions if isinstance(a, CheckChain)]


def test_another_chain_on_the_only_endpoint_raises_chain_diverged_once() -> None:
    """F13: the node serves another genesis; one chain check, one chain_diverged event."""
    h = streaming_harness()
    h.f.set_chain_identity("0x" + "11" * 32)
    checks = _diverge(h, 0.5)
    assert len(checks) == 1 and checks[0].number == START + 1
    h.f.on_chain_check(checks[0], {0: "0x" + "22" * 32, 1: None,
                                   START + 1: block_hash(OTHER[START + 1])}, 0.6)
    events = h.out().events
    diverged = [e for e in events if isinstance(e, Diverged)]
    assert len(diverged) == 1 and diverged[0].reason.startswith("CHAIN DIVERGED")
    assert diverged[0].their_hash == "0x" + "22" * 32 and diverged[0].number == 0
    assert h.f.diverged is diverged[0] and h.f.blocked is not None
    assert _diverge(h, 0.7) == []  # no check storm: at most one per two deadlines


def test_same_genesis_restarted_chain_is_told_by_the_hash_at_a_delivered_number() -> None:
    """F13 (same genesis, new history): another hash at the last delivered number diverges."""
    h = streaming_harness()
    genesis = "0x" + "11" * 32
    h.f.set_chain_identity(genesis, "0x" + "33" * 32)
    checks = _diverge(h, 0.5)
    h.f.on_chain_check(checks[0], {0: genesis, 1: "0x" + "33" * 32,
                                   START + 1: block_hash(OTHER[START + 1])}, 0.6)
    assert [e.kind for e in h.out().events].count("chain_diverged") == 1


def test_a_chain_restarted_from_scratch_is_told_by_its_block_1() -> None:
    """F13, same genesis, new chain still far below: another block #1 is proof enough."""
    h = streaming_harness()
    genesis = "0x" + "11" * 32
    h.f.set_chain_identity(genesis, "0x" + "33" * 32)
    h.f.on_ws_header(OTHER[START - 40], "a", 0.5)  # a finalized head far below the delivered
    checks = [a for a in h.out().actions if isinstance(a, CheckChain)]
    assert len(checks) == 1
    h.f.on_chain_check(checks[0], {0: genesis, 1: "0x" + "44" * 32}, 0.6)
    diverged = [e for e in h.out().events if e.kind == "chain_diverged"]
    assert len(diverged) == 1 and "block #1" in diverged[0].reason


def test_a_one_off_lie_is_not_a_divergence() -> None:
    """The endpoint still lists the delivered hash when asked: no chain_diverged."""
    h = streaming_harness()
    checks = _diverge(h, 0.5)
    h.f.on_chain_check(checks[0], {0: None, 1: None, START + 1: HASH[START + 1]}, 0.6)
    assert "chain_diverged" not in [e.kind for e in h.out().events]
    assert h.f.diverged is None


def test_divergence_needs_every_endpoint() -> None:
    """With two endpoints, one on another chain is quarantined; the feed goes on with the other."""
    h = Harness(["a", "b"], block_time_s=1.0)
    step = h.start(0.0)
    h.head(step.of(Poll)[0], START, 0.005)  # type: ignore[arg-type]
    h.stream(0.01)
    h.ws(START + 1, 0.02)
    checks = _diverge(h, 0.5)
    assert checks
    h.f.on_chain_check(checks[0], {START + 1: block_hash(OTHER[START + 1])}, 0.6)
    assert "chain_diverged" not in [e.kind for e in h.out().events]
    assert h.f.ranking["a"].is_quarantined(0.7) and h.f.diverged is None
    assert h.f.last == (START + 1, HASH[START + 1])


def test_a_start_above_the_head_waits_without_a_false_stall() -> None:
    """--from above the finalized head: heads below the start still show finality moving."""
    h = Harness(anchor=None, start_number=START + 60, block_time_s=1.0)
    step = h.start(0.0)
    kinds: list[str] = []
    now = 0.0
    for number in range(START, START + 20):
        polls = step.of(Poll)
        if polls:
            step = h.head(polls[0], number, now)  # type: ignore[arg-type]
        else:
            step = h.timer(now)
        kinds += step.kinds()
        now += 1.0
        step = h.timer(now) if not step.actions else step
        kinds += step.kinds()
    assert "finality_stalled" not in kinds
    assert h.f.last is None  # nothing delivered: the start block is not finalized yet
