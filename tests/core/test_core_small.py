"""Backoff, block clock, endpoint ranking and the mode machine: the core's small parts."""

from __future__ import annotations

import random

import pytest

from blockfeed.core import BlockClock, ModeMachine, Ranking, backoff, backoff_delay
from blockfeed.core.deadline import MAX_INTERVAL_S, MIN_INTERVAL_S
from blockfeed.types import Mode


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    """With rng()=1 the delays are the ceilings: initial x 2^k, then the cap forever."""
    delays = backoff(initial_s=0.5, cap_s=4.0, rng=lambda: 1.0)
    assert [next(delays) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_backoff_full_jitter_stays_in_window() -> None:
    """Full jitter: every delay is uniform in [0, ceiling), never above the cap."""
    rng = random.Random(3)
    for attempt in range(1, 40):
        delay = backoff_delay(attempt, initial_s=0.5, cap_s=30.0, rng=rng.random)
        assert 0.0 <= delay < min(30.0, 0.5 * 2 ** (attempt - 1))


def test_backoff_huge_attempt_does_not_overflow() -> None:
    """Attempt 10,000 is still just the cap (no float overflow)."""
    assert backoff_delay(10_000, cap_s=30.0, rng=lambda: 1.0) == 30.0


@pytest.mark.parametrize("kwargs", [{"initial_s": -1.0}, {"factor": 0.5}, {"cap_s": -1.0}])
def test_backoff_rejects_bad_parameters(kwargs: dict[str, float]) -> None:
    """Negative times or a shrinking factor are refused with ValueError."""
    with pytest.raises(ValueError):
        backoff_delay(1, **kwargs)


def test_clock_learns_median_interval_and_divides_jumps() -> None:
    """A jump of 3 numbers in 3 s is three 1 s intervals; one slow arrival does not move it."""
    clock = BlockClock(block_time_s=12.0, floor_s=0.1, ceiling_s=60.0)
    for number, at in [(10, 0.0), (11, 1.0), (14, 4.0), (15, 5.0), (16, 9.0), (17, 10.0)]:
        clock.observe(number, at)
    assert clock.interval_s == pytest.approx(1.0)
    assert clock.deadline_s == pytest.approx(1.5)
    assert clock.expected_at(19) == pytest.approx(12.0)


def test_clock_uses_prior_then_clamps() -> None:
    """Before data the prior is used; learned values stay within the absolute bounds only."""
    clock = BlockClock(block_time_s=12.0)
    assert clock.interval_s == 12.0 and clock.expected_at(5) is None
    for number in range(1, 5):
        clock.observe(number, number * 0.001)  # absurdly fast: floored at the absolute minimum
    assert clock.interval_s == pytest.approx(MIN_INTERVAL_S)
    clock2 = BlockClock(block_time_s=12.0)
    for number in range(1, 6):
        clock2.observe(number, number * 900.0)  # confirmed slow: capped at the absolute maximum
    assert clock2.interval_s == pytest.approx(MAX_INTERVAL_S)


def test_clock_learns_a_faster_chain_than_the_hint_at_once() -> None:
    """F14: a 12 s hint on a 0.5 s chain: two samples rule, never clamped to the hint."""
    clock = BlockClock(block_time_s=12.0)
    clock.observe(1, 0.0)
    clock.observe(2, 0.04)  # one arrival right after another (a poll, then the socket)
    assert clock.interval_s == 12.0  # one sample is not a block time
    clock.observe(3, 0.5)
    assert clock.interval_s == pytest.approx(0.46)  # the larger of two: never the coincidence
    for number in (4, 5, 6):
        clock.observe(number, (number - 2) * 0.5)
    assert clock.interval_s == pytest.approx(0.5)  # the median: the coincidence is outvoted
    assert clock.deadline_s == pytest.approx(0.75)


def test_clock_needs_confirmation_to_slow_down() -> None:
    """One long interval (a halt at start) keeps the prior; three confirm the slower pace."""
    clock = BlockClock(block_time_s=1.0)
    clock.observe(1, 0.0)
    clock.observe(2, 60.0)
    assert clock.interval_s == pytest.approx(1.0)
    clock.observe(3, 66.0)
    clock.observe(4, 72.0)
    assert clock.interval_s == pytest.approx(6.0)


def test_clock_prior_can_be_replaced_by_a_declared_slot() -> None:
    """set_prior (the runtime's slot duration) moves the estimate until samples exist."""
    clock = BlockClock(block_time_s=12.0)
    clock.set_prior(3.0)
    assert clock.interval_s == 3.0 and clock.prior_s == 3.0
    for number in range(1, 4):
        clock.observe(number, float(number))
    assert clock.interval_s == pytest.approx(1.0)  # observation beats the declaration


def test_clock_guess_moves_phase_but_not_interval() -> None:
    """shift_anchor changes the expected time of later numbers without adding a sample."""
    clock = BlockClock(block_time_s=1.0)
    clock.observe(1, 0.0)
    clock.observe(2, 1.0)
    clock.shift_anchor(3, 1.8)
    assert clock.expected_at(4) == pytest.approx(2.8)
    clock.observe(4, 3.0)  # sample from the last measurement (2 @ 1.0): 1.0 per number
    assert clock.interval_s == pytest.approx(1.0)


def test_ranking_prefers_healthy_then_fast_then_configured_order() -> None:
    """Failures and quarantine push an endpoint down; latency breaks ties; config order last."""
    ranking = Ranking(["a", "b", "c"], rng=lambda: 1.0)
    assert ranking.order(0.0) == ["a", "b", "c"]
    ranking.record_ws_failure("a")
    assert ranking.order(0.0) == ["b", "c", "a"]
    ranking.record_http_success("b", 0.3)
    ranking.record_http_success("c", 0.1)
    assert ranking.order(0.0) == ["c", "b", "a"]
    ranking.quarantine("c", 100.0, "lied", now=0.0)
    assert ranking.order(50.0) == ["b", "a", "c"]
    assert ranking.order(100.0)[0] == "c"  # quarantine over
    assert ranking.usable_count(50.0) == 2


def test_ranking_http_backoff_and_best_http() -> None:
    """A failing HTTP side waits out its backoff; the soonest one is named when none is ready."""
    ranking = Ranking(["a", "b"], http_retry_initial_s=1.0, rng=lambda: 1.0)
    assert ranking.record_http_failure("a", 10.0) == 11.0
    assert ranking.best_http(10.0) == ("b", 10.0)
    assert ranking.record_http_failure("b", 10.0) == 11.0
    assert ranking.record_http_failure("b", 10.0) == 12.0
    assert ranking.best_http(10.5) == ("a", 11.0)
    ranking.record_http_success("a", 0.01)
    assert ranking.best_http(10.5) == ("a", 10.5)


def test_ranking_snapshot_reports_lag_against_best() -> None:
    """Lag is measured from the verified best number; the snapshot carries it."""
    ranking = Ranking(["a"])
    ranking.record_head("a", 90, 0.0)
    ranking.best_number = 100
    snap = ranking.snapshot(0.0)[0]
    assert snap["lag_blocks"] == 10 and snap["head_number"] == 90 and not snap["quarantined"]


def test_ranking_refuses_empty() -> None:
    """A feed needs at least one endpoint."""
    with pytest.raises(ValueError):
        Ranking([])


def test_modes_count_transitions_and_time() -> None:
    """Every change is an event with a reason, counted by kind; time per mode adds up."""
    modes = ModeMachine(0.0)
    event = modes.set(Mode.STREAMING, "socket restored", 1.0, kind="socket_restored")
    assert event is not None
    assert event.old_mode is Mode.STARTING and event.new_mode is Mode.STREAMING
    assert modes.set(Mode.STREAMING, "again", 2.0) is None
    modes.set(Mode.POLLING, "socket closed: 1006", 5.0, kind="socket_closed")
    assert modes.transitions == {
        "starting->streaming:socket_restored": 1,
        "streaming->polling:socket_closed": 1,
    }
    assert modes.seconds(7.0) == {
        "starting": 1.0, "streaming": 4.0, "polling": 2.0, "disconnected": 0.0,
    }


def test_modes_stalled_flag_events() -> None:
    """finality_stalled raises and clears once each, with the reason."""
    modes = ModeMachine(0.0)
    raised = modes.set_stalled(True, "no block for 40s", 1.0)
    assert raised is not None and raised.kind == "finality_stalled"
    assert modes.set_stalled(True, "still", 2.0) is None
    cleared = modes.set_stalled(False, "block #5", 3.0)
    assert cleared is not None and cleared.kind == "finality_resumed" and not modes.finality_stalled
