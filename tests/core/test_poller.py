"""The poller alone: (time, answer) -> next due time, as tables, with a fake clock (T = 1 s).

The chain's phase is fixed by two observations (#100 at 0 s, #101 at 1 s), so block #102 is
expected at 2 s and every due time below follows from FollowerConfig's defaults:
``poll_margin`` 0.05, ``poll_retry`` 0.1, ``poll_late_window`` 0.3, ``hedge_margin`` 0.1,
``poll_slow_after_blocks`` 6, ``poll_retry_growth`` 0.25, deadline 1.5 T.
"""

from __future__ import annotations

import pytest

from blockfeed.core import BlockClock, FollowerConfig, Poll, Probe
from blockfeed.core.poller import InFlight, Poller

T = 1.0
TOP = 101
"""The highest number known before the tables start; #102 is due at 2.0."""


class Ready:
    """When some channel may carry a read (the endpoints' backoff); a test sets ``at``."""

    def __init__(self, at: float = 0.0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def make_poller(ready: Ready | None = None, **config: object) -> tuple[Poller, BlockClock]:
    """A poller on a clock that saw #100 at 0 s and #101 at 1 s (so T = 1 s, #102 due at 2 s);
    channels ready at once unless ``ready`` says otherwise."""
    cfg = FollowerConfig(block_time_s=T, **config)  # type: ignore[arg-type]
    clock = BlockClock(block_time_s=T, deadline_factor=cfg.deadline_factor)
    clock.observe(100, 0.0)
    clock.observe(101, 1.0)
    return Poller(clock, cfg, ready_at=ready or Ready()), clock


def due(poller: Poller, *, streaming: bool = False, top: int | None = TOP,
        stalled: bool = False, serialized: bool = False) -> float | None:
    """poll_due with the usual context: polling mode, HTTP answering, #101 the top known."""
    return poller.poll_due(streaming=streaming, stalled=stalled, known_top=top,
                           serialized=serialized)


def ask(poller: Poller, at: float, head: int, *, seq: int, purpose: str = "poll"
        ) -> tuple[int, float] | None:
    """Send a poll at ``at``, answer it with ``head`` and return what the poller learned."""
    poll = Poll("a", seq, purpose=purpose)
    poller.poll_sent(poll, at)
    inflight = poller.poll_answered(poll)
    assert inflight is not None
    return poller.learn(head, inflight)


# Polling mode, block #102 late: (time asked, head answered) -> when the next poll is due.
# Each ask happens at (or just after) the due time of the row before.
LATE_BLOCK = [
    (2.05, 101, 2.15),  # first ask poll_margin after it was due; a miss: retry in 0.1 T
    (2.15, 101, 2.25),
    (2.25, 101, 2.35),  # still within poll_late_window (0.3 T) of its due time
    (2.35, 101, 3.05),  # later than that: GRANDPA holds it, wait for the next slot
    (3.05, 101, 3.15),  # one quick retry after each later slot ...
    (3.17, 101, 4.05),  # ... (a driver running late is past it) then the slot after
    (4.05, 102, 3.05),  # a hit: on to #103, whose slot has passed, so at once
]


def test_polling_mode_phase_locked_schedule_for_a_late_block() -> None:
    """Polling mode asks 0.05 T after a block is due, retries every 0.1 T for 0.3 T, then
    once per slot (with one quick retry), and moves on to the next number after a hit."""
    poller, _ = make_poller()
    assert due(poller) == pytest.approx(2.05)
    top = TOP
    for seq, (at, head, next_due) in enumerate(LATE_BLOCK, 1):
        planned = due(poller, top=top)
        assert planned is not None and planned <= at + 1e-9 < planned + 0.05
        ask(poller, at, head, seq=seq)
        top = max(top, head)
        assert due(poller, top=top) == pytest.approx(next_due), (at, head)


# A halted chain: (lateness of the miss in T) -> delay before the next ask.
HALT_RETRIES = [
    (6.0, 1.5),   # 6 slots empty: 0.25 x 6 T = 1.5 T, which is also the deadline cap
    (6.5, 1.5),   # 0.25 x 6.5 = 1.625 T, capped at one deadline (1.5 T)
    (5.95, 0.1),  # below 6 slots: a quick retry 0.1 T later (a slot just began)
]


@pytest.mark.parametrize(("lateness", "delay"), HALT_RETRIES)
def test_halted_chain_is_asked_at_a_growing_interval_capped_at_a_deadline(
    lateness: float, delay: float
) -> None:
    """After poll_slow_after_blocks empty slots, the poller asks every 0.25 x lateness, at most
    one deadline apart (a halt must not cost a request every 0.1 T)."""
    poller, _ = make_poller(poll_slow_after_blocks=6.0)
    due(poller)
    missed_at = 2.0 + lateness
    ask(poller, missed_at, TOP, seq=1)
    assert due(poller) == pytest.approx(missed_at + delay)


def test_slow_halt_retries_grow_with_lateness() -> None:
    """Below the deadline cap the halt retry grows with lateness (0.25 x lateness)."""
    poller, _ = make_poller(poll_slow_after_blocks=2.0)
    due(poller)
    ask(poller, 2.0 + 2.0, TOP, seq=1)  # 2 T late: 0.5 T
    assert due(poller) == pytest.approx(4.5)
    ask(poller, 2.0 + 4.0, TOP, seq=2)  # 4 T late: 1.0 T
    assert due(poller) == pytest.approx(7.0)


# Streaming: the hedge. (socket_behind, the socket last spoke at) -> next due after a miss
# at 2.1. The silence probe is due a deadline (1.5 T) after the socket last spoke.
HEDGE_AFTER_MISS = [
    (False, 2.0, 3.1),   # the socket is on time: one hedge per slot
    (True, 2.0, 2.2),    # a hedge already beat the socket: retry at the polling rate
    (False, 1.5, None),  # the silence probe (3.0) comes first: no hedging into a halt
]


@pytest.mark.parametrize(("behind", "spoke_at", "next_due"), HEDGE_AFTER_MISS)
def test_hedge_schedule_after_a_miss(behind: bool, spoke_at: float,
                                     next_due: float | None) -> None:
    """A hedge asks hedge_margin (0.1 T) after the block is due; after a miss it waits a slot
    while the socket is trusted, retries quickly once the socket fell behind, and never goes
    out at or after the silence probe."""
    poller, _ = make_poller()
    poller.heard_socket(spoke_at)
    assert due(poller, streaming=True) == pytest.approx(2.1)
    ask(poller, 2.1, TOP, seq=1, purpose="hedge")
    poller.socket_behind = behind
    got = due(poller, streaming=True)
    assert got == (None if next_due is None else pytest.approx(next_due))


# When no hedge goes out at all: (context, config, the socket last spoke at) -> None.
NO_POLL = [
    ({"stalled": True}, {}, 1.0),  # a halted chain is left to the silence probe
    ({}, {"hedge": False}, 1.0),   # hedging switched off
    ({}, {}, 0.6),                 # the silence probe (2.1) is due with the hedge (2.1)
]


@pytest.mark.parametrize(("context", "config", "spoke_at"), NO_POLL)
def test_when_no_hedge_goes_out(context: dict[str, object], config: dict[str, object],
                                spoke_at: float) -> None:
    """While streaming, no hedge during a stall, with hedge=False, or at the silence probe."""
    poller, _ = make_poller(**config)
    poller.heard_socket(spoke_at)
    assert due(poller, streaming=True, **context) is None  # type: ignore[arg-type]
    assert due(poller) is not None  # the same poller in polling mode would ask


def test_one_read_in_flight_and_turns_while_http_fails() -> None:
    """One poll at a time; while HTTP fails everywhere (serialized) the poll and the silence
    probe take turns instead of both asking."""
    poller, _ = make_poller()
    poll = Poll("a", 1)
    poller.poll_sent(poll, 2.05)
    assert poller.polling and due(poller) is None
    assert poller.silence_due(socket_open=True, serialized=False) is not None
    assert poller.silence_due(socket_open=True, serialized=True) is None
    assert poller.poll_answered(poll) is not None and not poller.polling
    probe = Probe("a", 2)
    poller.probe_sent(probe, 2.1)
    assert due(poller) == pytest.approx(2.05)
    assert due(poller, serialized=True) is None


def test_ask_now_and_backoff() -> None:
    """ask_now sends the next poll as soon as a channel is ready (HTTP backoff included),
    ignoring the phase; sending it clears the request."""
    ready = Ready(0.7)
    poller, _ = make_poller(ready)
    poller.ask_now()
    assert due(poller) == 0.7
    poller.poll_sent(Poll("a", 1), 0.7)
    poller.poll_answered(Poll("a", 1))
    assert due(poller) == pytest.approx(2.05)
    ready.at = 2.5
    assert due(poller) == 2.5  # a backed-off HTTP side delays the due time


def test_nothing_known_asks_at_once() -> None:
    """With no known number (a head start before any answer) the poll goes out when ready."""
    poller, _ = make_poller(Ready(0.3))
    assert due(poller, top=None) == 0.3


# Learning the phase: (answers) -> measurement fed to the clock, and the clock's anchor.
def test_bracketed_hit_is_a_measurement() -> None:
    """A miss then a hit a short retry apart brackets the block: (number, midpoint)."""
    poller, _ = make_poller()
    due(poller)
    assert ask(poller, 2.05, TOP, seq=1) is None
    due(poller)
    assert ask(poller, 2.15, 102, seq=2) == (102, pytest.approx(2.10))


def test_first_try_hits_pull_the_phase_earlier() -> None:
    """A first-try hit only bounds the appearance from above: the anchor moves to the expected
    time (no measurement), pulled earlier by phase_pull x T on every second hit in a row."""
    poller, clock = make_poller()
    due(poller)
    assert ask(poller, 2.05, 102, seq=1) is None
    assert clock.anchor == (102, pytest.approx(2.0))
    due(poller, top=102)
    assert ask(poller, 3.05, 103, seq=2) is None
    assert clock.anchor == (103, pytest.approx(3.0 - 0.05))


def test_late_or_foreign_answers_are_ignored() -> None:
    """An answer for a poll that is not the one in flight changes nothing."""
    poller, _ = make_poller()
    poller.poll_sent(Poll("a", 1), 2.05)
    assert poller.poll_answered(Poll("a", 0)) is None and poller.polling
    assert poller.probe_answered(Probe("a", 1)) is None
    assert not poller.health_answered(Probe("b", 1, purpose="health"))


# The silence probe: (socket spoke at, ready_at) -> probe due.
SILENCE = [
    (10.0, 0.0, 11.5),   # one deadline (1.5 T) after the socket last spoke
    (10.0, 12.0, 12.0),  # later when no channel is ready before then
]


@pytest.mark.parametrize(("spoke_at", "ready_at", "probe_due"), SILENCE)
def test_silence_probe_one_deadline_after_the_socket_spoke(
    spoke_at: float, ready_at: float, probe_due: float
) -> None:
    """The silent socket gets its probe a deadline after it last spoke (or when a channel is
    ready); none without an open socket or while a probe is out."""
    ready = Ready(ready_at)
    poller, _ = make_poller(ready)
    poller.heard_socket(spoke_at)
    assert poller.silence_due(socket_open=True, serialized=False) == probe_due
    assert poller.silence_due(socket_open=False, serialized=False) is None
    probe = Probe("a", 1)
    poller.probe_sent(probe, probe_due)
    assert poller.probing
    assert poller.silence_due(socket_open=True, serialized=False) is None
    inflight = poller.probe_answered(probe)
    assert inflight == InFlight(probe, probe_due, None)
    ready.at = 0.0
    poller.silence_settled(probe_due + 0.2)  # the next probe is a deadline after the verdict
    assert poller.silence_due(socket_open=True, serialized=False) == \
        pytest.approx(probe_due + 0.2 + 1.5)


def test_health_rounds_follow_t() -> None:
    """Idle endpoints are probed every health_check_blocks x T; a socket failure asks at once;
    a change of T rescales the round already planned."""
    poller, _ = make_poller()
    poller.schedule_health(0.0)
    assert poller.health_next_at == pytest.approx(3.0)
    assert not poller.health_round(2.9)
    assert poller.health_round(3.0) and poller.health_next_at == pytest.approx(6.0)
    probe = Probe("b", 7, purpose="health")
    poller.health_sent(probe, 3.0)
    assert poller.health_pending("b") and not poller.health_pending("a")
    assert poller.health_answered(probe) and not poller.health_pending("b")
    poller.rescale(4.0, 1.0, 0.5)  # T halved: the round 2 s away is now 1 s away
    assert poller.health_next_at == pytest.approx(5.0)
    poller.check_health_now(4.5)
    assert poller.health_round(4.5)


# T-scaled durations: (T, config) -> (health interval, HTTP retry cap, fresh window).
SCALED = [
    (1.0, {}, (3.0, 1.0, 6.0)),
    (0.1, {}, (0.5, 0.25, 1.0)),     # floors: 0.5 s health period, 0.25 s HTTP cap
    (20.0, {}, (30.0, 15.0, 80.0)),  # ceilings: 30 s, 15 s
    (1.0, {"http_retry_cap_s": 2.0, "health_check_interval_s": 4.0}, (4.0, 2.0, 8.0)),
]


@pytest.mark.parametrize(("block_time_s", "config", "expected"), SCALED)
def test_t_scaled_durations(block_time_s: float, config: dict[str, object],
                            expected: tuple[float, float, float]) -> None:
    """Health period, HTTP retry cap and the fresh window follow T within absolute bounds,
    unless configured."""
    cfg = FollowerConfig(block_time_s=block_time_s, **config)  # type: ignore[arg-type]
    poller = Poller(BlockClock(block_time_s=block_time_s), cfg, ready_at=Ready())
    got = (poller.health_interval_s(), *poller.ranking_limits())
    assert got == pytest.approx(expected)


# Backfill answers that bring nothing, one after another at 10 s: -> delay before the next.
FRUITLESS = [0.5, 1.0, 2.0, 4.0, 6.0, 6.0]
"""range_retry (0.25 T) x 2, 4, 8, 16 ...; capped at 4 deadlines (6 s)."""


def test_fruitless_backfills_back_off_up_to_four_deadlines() -> None:
    """A backfill that brings nothing (numbers not there yet, or below a pruned node's
    history) waits 0.25 T x 2^k, at most 4 deadlines; progress resets the growth."""
    poller, _ = make_poller()
    delays = []
    for _ in FRUITLESS:
        poller.range_answered(10.0, progressed=False)
        delays.append(poller.range_retry_at - 10.0)
    assert delays == pytest.approx(FRUITLESS)
    poller.range_answered(20.0, progressed=True)
    poller.range_answered(20.0, progressed=False)
    assert poller.range_retry_at == pytest.approx(20.5)


# A failed backfill at 10 s: (over HTTP, channel retry at, socket can fetch) -> next attempt.
RANGE_FAILURES = [
    (True, 10.1, False, 10.1),    # HTTP backoff shorter than range_retry x T: that
    (True, 12.0, False, 10.25),   # longer: range_retry x T (another endpoint may answer)
    (True, 12.0, True, 10.0),     # the open socket can fetch it: at once, over the socket
    (False, 10.1, False, 10.25),  # over the socket: range_retry x T ...
    (False, 11.0, False, 11.0),   # ... but never before the socket's request backoff ends
]


@pytest.mark.parametrize(("over_http", "channel_at", "socket_can_fetch", "retry_at"),
                         RANGE_FAILURES)
def test_failed_backfill_retry_time(over_http: bool, channel_at: float, socket_can_fetch: bool,
                                    retry_at: float) -> None:
    """A failed backfill is retried range_retry x T later, sooner when its channel or the
    open socket allows, never before the socket's own backoff."""
    poller, _ = make_poller()
    poller.range_failed(10.0, over_http=over_http, channel_retry_at=channel_at,
                        socket_can_fetch=socket_can_fetch)
    assert poller.range_retry_at == pytest.approx(retry_at)


def test_backfill_retry_follows_a_new_t() -> None:
    """A backfill retry planned under the old T is rescaled when T changes (a 12 s prior must
    not hold a fast chain)."""
    poller, _ = make_poller()
    poller.range_answered(10.0, progressed=False)  # due at 10.5
    poller.rescale(10.1, 1.0, 0.25)
    assert poller.range_retry_at == pytest.approx(10.1 + 0.4 * 0.25)
