"""The follower, input by input: (time, input) -> (deliveries, actions, events), fake clock."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from chainsim import liar_header, make_chain

from blockfeed.codec import block_hash
from blockfeed.core import (
    CloseSocket,
    Connect,
    FetchRange,
    Follower,
    FollowerConfig,
    Poll,
    Probe,
    SocketState,
    Subscribe,
)
from blockfeed.core.actions import Action
from blockfeed.types import Block, FeedEvent, Mode, Source, Unavailable, VerificationFailed

START = 500
CHAIN = make_chain(START, 100)
HASH = {n: block_hash(h) for n, h in CHAIN.items()}
T = 1.0


def fixed_backoff(*delays: float):  # type: ignore[no-untyped-def]
    """A reconnect backoff factory yielding ``delays`` then the last one forever."""

    def factory() -> Iterator[float]:
        return itertools.chain(delays, itertools.repeat(delays[-1]))

    return factory


class Step:
    """What one input produced."""

    def __init__(self, blocks: list[Block], actions: list[Action], events: list[FeedEvent]):
        self.blocks, self.actions, self.events = blocks, actions, events

    @property
    def numbers(self) -> list[int]:
        return [b.number for b in self.blocks]

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def of(self, kind: type) -> list[Action]:
        return [a for a in self.actions if isinstance(a, kind)]


class Harness:
    """Drives a follower and returns each input's outputs."""

    def __init__(self, labels: list[str] | None = None, *, anchor: int | None = START,
                 start_number: int | None = None, **config: object) -> None:
        defaults: dict[str, object] = {"block_time_s": T, "hedge": False}
        defaults.update(config)
        self.f = Follower(
            labels or ["a"],
            anchor=None if anchor is None else (anchor, HASH[anchor]),
            start_number=start_number,
            config=FollowerConfig(**defaults),  # type: ignore[arg-type]
            rng=lambda: 1.0,
            reconnect_backoff=fixed_backoff(1.0, 2.0, 4.0, 8.0),
        )

    def out(self) -> Step:
        return Step(self.f.deliverable(), self.f.actions(), self.f.events())

    def start(self, now: float = 0.0) -> Step:
        self.f.start(now)
        return self.out()

    def timer(self, now: float) -> Step:
        self.f.on_timer(now)
        return self.out()

    def stream(self, now: float, *, ep: str = "a") -> Step:
        """Connect + subscribe the pending Connect (answering its Subscribe too)."""
        self.f.on_ws_connected(ep, now)
        sub = self.out()
        assert sub.of(Subscribe)
        self.f.on_ws_subscribed(ep, now)
        return self.out()

    def ws(self, n: int, now: float, *, ep: str = "a", lie: bool = False) -> Step:
        header = liar_header(CHAIN[n]) if lie else CHAIN[n]
        self.f.on_ws_header(header, ep, now)
        return self.out()

    def head(self, read: Poll | Probe, n: int, now: float, *, lie: bool = False) -> Step:
        header = liar_header(CHAIN[n]) if lie else CHAIN[n]
        h = block_hash(header)
        if read.known_hash == h:
            header_or_none = None
        else:
            header_or_none = header
        if isinstance(read, Poll):
            self.f.on_poll_result(read, h, header_or_none, now)
        else:
            self.f.on_probe_result(read, h, header_or_none, now)
        return self.out()

    def fill(self, fetch: FetchRange, now: float, *, known_up_to: int = 10**9) -> Step:
        nums = range(fetch.start, fetch.end + 1)
        hashes = [HASH[n] if n <= known_up_to else None for n in nums]
        headers = [CHAIN[n] if n <= known_up_to else None for n in nums]
        self.f.on_range_result(fetch, hashes, headers, now)
        return self.out()


def streaming_harness(**config: object) -> Harness:
    """A follower streaming from 'a': startup poll saw the anchor, then ws delivered START+1."""
    h = Harness(**config)
    step = h.start(0.0)
    h.head(step.of(Poll)[0], START, 0.005)  # type: ignore[arg-type]
    h.stream(0.01)
    step = h.ws(START + 1, 0.02)
    assert step.numbers == [START + 1] and h.f.mode is Mode.STREAMING
    return h


def test_start_opens_socket_and_reads_head_at_once() -> None:
    """start(): one Connect and one Poll, nothing else; mode starting."""
    h = Harness()
    step = h.start(0.0)
    assert step.actions == [Connect("a", 1), Poll("a", 1, purpose="poll")]
    assert step.events == [] and h.f.mode is Mode.STARTING


def test_restored_only_after_an_accepted_block() -> None:
    """Subscribed is not restored; the first accepted block makes it streaming (with reason)."""
    h = Harness()
    h.start(0.0)
    assert h.stream(0.1).events == []
    assert h.f.socket_state is SocketState.SUBSCRIBED and h.f.mode is Mode.STARTING
    step = h.ws(START + 1, 0.2)
    assert step.numbers == [START + 1] and step.blocks[0].source is Source.WS
    assert [(e.kind, e.new_mode) for e in step.events] == [("mode_changed", Mode.STREAMING)]
    assert "confirmed and delivering" in step.events[0].reason
    assert h.f.transitions() == {"starting->streaming:socket_restored": 1}


def test_head_start_delivers_the_confirmed_poll_head() -> None:
    """Without anchor the first block is the HTTP head (confirmed); the ws dup proves the socket."""
    h = Harness(anchor=None)
    poll = h.start(0.0).of(Poll)[0]
    step = h.head(poll, START + 7, 0.05)  # type: ignore[arg-type]
    assert step.numbers == [START + 7] and step.blocks[0].source is Source.POLL
    h.stream(0.06)
    step = h.ws(START + 7, 0.07)  # the node sends the current head on subscribe
    assert step.numbers == [] and h.f.mode is Mode.STREAMING


def test_closed_healthy_socket_reconnects_and_polls_at_once() -> None:
    """F1: a proven socket closes -> polling (reason), immediate Connect and immediate Poll."""
    h = streaming_harness()
    h.f.on_ws_closed("a", "closed by the node (code 1001)", 5.0)
    step = h.out()
    assert step.of(Connect) == [Connect("a", 2)]
    assert [p.purpose for p in step.of(Poll)] == ["poll"]  # type: ignore[attr-defined]
    assert step.kinds() == ["mode_changed", "reconnect"]
    assert step.events[0].new_mode is Mode.POLLING and "code 1001" in step.events[0].reason
    assert h.f.reconnects == 1


def test_open_then_close_sockets_grow_the_backoff() -> None:
    """Sockets that close right after subscribing are failed attempts: 1, 2, 4, 8 s apart."""
    h = streaming_harness()
    now = 1.0
    h.f.on_ws_closed("a", "reset", now)
    connect = h.out().of(Connect)
    assert connect == [Connect("a", 2)]  # first retry after a proven socket: at once
    gaps = []
    for attempt in range(2, 6):
        h.stream(now)
        h.f.on_ws_closed("a", "closed right after opening", now)
        h.out()
        deadline = h.f.next_deadline()
        assert deadline is not None
        # The only socket action comes at the backoff time, not before.
        assert h.timer(deadline - 0.001).of(Connect) == []
        step = h.timer(deadline)
        gaps.append(round(deadline - now, 6))
        now = deadline
        assert step.of(Connect) == [Connect("a", attempt + 1)]
        # answer any poll so it does not pin the next deadline
        for poll in step.of(Poll):
            h.head(poll, START + 1, now)  # type: ignore[arg-type]
    assert gaps == [1.0, 2.0, 4.0, 8.0]
    assert h.f.mode is Mode.POLLING


def test_subscribe_error_is_a_failed_attempt() -> None:
    """F5: subscribe answered with an error -> close that socket, back off, keep polling."""
    h = Harness()
    h.start(0.0)
    h.f.on_ws_connected("a", 0.1)
    sub = h.out().of(Subscribe)[0]
    h.f.on_failure(sub, "JSON-RPC error -32009: busy", 0.2)
    step = h.out()
    assert step.of(CloseSocket) == [CloseSocket("a", 1, step.of(CloseSocket)[0].reason)]  # type: ignore[attr-defined]
    assert h.f.socket_state is SocketState.IDLE and h.f.mode is Mode.POLLING
    assert "subscribe failed" in step.events[0].reason
    assert h.f.next_deadline() is not None


def test_silent_socket_probe_chain_moved_means_stale() -> None:
    """F3/F4: silent for a deadline -> one probe; chain moved -> deliver from HTTP, recycle."""
    h = streaming_harness()
    assert h.f.next_deadline() == pytest.approx(0.02 + 1.5 * T)
    assert h.timer(1.5).actions == []
    step = h.timer(0.02 + 1.5 * T)
    probes = step.of(Probe)
    assert len(probes) == 1 and probes[0].purpose == "silence"  # type: ignore[attr-defined]
    step = h.head(probes[0], START + 2, 1.53)  # type: ignore[arg-type]
    assert step.numbers == [START + 2] and step.blocks[0].source is Source.POLL
    assert len(step.of(CloseSocket)) == 1 and step.of(Connect) == [Connect("a", 2)]
    assert step.events[0].new_mode is Mode.POLLING and "stale" in step.events[0].reason
    assert h.f.probes["stale"] == 1


def test_silent_socket_probe_chain_still_means_stall_not_reconnect() -> None:
    """F7: probe finds no new block -> no reconnect; stall flag after 6 T; a block clears it."""
    h = streaming_harness()
    assert h.f.config.stall_after_blocks == 6.0
    now = 0.02
    stalled_at = None
    for _ in range(8):
        deadline = h.f.next_deadline()
        assert deadline is not None
        now = deadline
        probes = h.timer(now).of(Probe)
        assert len(probes) == 1
        now += 0.01
        step = h.head(probes[0], START + 1, now)  # type: ignore[arg-type]
        assert step.of(CloseSocket) == [] and step.of(Connect) == []
        if "finality_stalled" in step.kinds():
            stalled_at = now
    assert stalled_at is not None and 6 * T <= stalled_at < 6 * T + 0.1
    assert h.f.finality_stalled and h.f.reconnects == 0 and h.f.mode is Mode.STREAMING
    step = h.ws(START + 2, now + 0.5)
    assert step.numbers == [START + 2] and step.kinds() == ["finality_resumed"]
    assert not h.f.finality_stalled


def test_silent_socket_probe_fails_means_node_down() -> None:
    """The HTTP probe fails, then the same question asked on the socket fails too ->
    disconnected; the socket is distrusted, not closed; its next block restores streaming
    without any reconnect."""
    h = streaming_harness()
    probe = h.timer(1.52).of(Probe)[0]
    h.f.on_failure(probe, "connection refused", 1.6)
    step = h.out()
    assert h.f.mode is Mode.STREAMING  # no verdict from HTTP alone
    retry = step.of(Probe)
    assert [(p.endpoint, p.transport, p.purpose) for p in retry] == [  # type: ignore[attr-defined]
        ("a", "ws", "silence")]
    h.f.on_failure(retry[0], "timed out", 1.7)
    step = h.out()
    assert h.f.mode is Mode.DISCONNECTED and "node or network down" in step.events[-1].reason
    assert step.of(CloseSocket) == [] and step.of(Connect) == []
    assert h.f.socket_state is SocketState.SUBSCRIBED
    step = h.ws(START + 2, 1.8)
    assert step.numbers == [START + 2] and h.f.mode is Mode.STREAMING and h.f.reconnects == 0


def test_silent_subscription_with_http_down_is_judged_over_the_socket() -> None:
    """F4 + F6: the HTTP probe fails; the socket, asked directly, says the chain moved on: the
    subscription is stale and recycled at once; the head read over the socket is delivered."""
    h = streaming_harness()
    probe = h.timer(1.52).of(Probe)[0]
    h.f.on_failure(probe, "HTTP 503", 1.6, status=503)
    ws_probe = h.out().of(Probe)[0]
    assert ws_probe.transport == "ws"  # type: ignore[attr-defined]
    step = h.head(ws_probe, START + 2, 1.61)  # type: ignore[arg-type]
    assert step.numbers == [START + 2] and step.blocks[0].source is Source.POLL
    assert step.of(CloseSocket) and step.of(Connect)  # recycled, no backoff (it was proven)
    assert h.f.probes["stale"] == 1 and h.f.probes["failed"] == 0
    assert h.f.requests["ws_probe"] == 1


def test_hedge_delivers_a_late_block_from_http() -> None:
    """Streaming with hedge: block due at 1.02 not on ws by +0.1 T -> one poll delivers it."""
    h = streaming_harness(hedge=True)
    deadline = h.f.next_deadline()
    assert deadline == pytest.approx(0.02 + T + 0.1 * T)
    hedge = h.timer(deadline).of(Poll)
    assert [p.purpose for p in hedge] == ["hedge"]  # type: ignore[attr-defined]
    step = h.head(hedge[0], START + 2, deadline + 0.01)  # type: ignore[arg-type]
    assert step.numbers == [START + 2] and step.blocks[0].source is Source.POLL
    assert h.f.mode is Mode.STREAMING  # a hedge does not change the mode
    assert h.ws(START + 2, deadline + 0.02).numbers == []  # late ws copy: dropped


def test_hedge_skipped_when_socket_is_on_time() -> None:
    """The socket delivering before the hedge time means no HTTP request at all."""
    h = streaming_harness(hedge=True)
    assert h.ws(START + 2, 1.03).numbers == [START + 2]
    assert h.timer(1.1).actions == []
    learned = h.f.block_interval_s
    assert learned == pytest.approx(1.0)  # one longer sample than the prior needs confirmation
    assert h.f.next_deadline() == pytest.approx(1.03 + 1.1 * learned)


def test_gap_on_the_socket_is_backfilled_before_the_head() -> None:
    """A ws head 4 above the cursor triggers FetchRange(+1..+3); the head follows the backfill."""
    h = streaming_harness()
    step = h.ws(START + 5, 1.0)
    assert step.numbers == []
    fetch = step.of(FetchRange)
    assert [(f.start, f.end, f.purpose) for f in fetch] == [(START + 2, START + 4, "backfill")]  # type: ignore[attr-defined]
    step = h.fill(fetch[0], 1.01)  # type: ignore[arg-type]
    assert step.numbers == [START + 2, START + 3, START + 4, START + 5]
    assert [b.source for b in step.blocks] == [Source.BACKFILL] * 3 + [Source.WS]


def test_liar_is_rechecked_elsewhere_and_quarantined() -> None:
    """F10: wrong parent from 'a' -> verify on 'b' -> deliver b's block, bench 'a', fail over."""
    h = Harness(["a", "b"])
    step = h.start(0.0)
    h.stream(0.01)
    assert h.ws(START + 1, 0.02).numbers == [START + 1]
    step = h.ws(START + 2, 1.02, lie=True)
    assert step.numbers == [] and step.kinds() == ["verification_failed"]
    fetch = step.of(FetchRange)
    assert [(f.start, f.end, f.endpoint, f.purpose) for f in fetch] == [  # type: ignore[attr-defined]
        (START + 2, START + 2, "b", "verify")
    ]
    step = h.fill(fetch[0], 1.05)  # type: ignore[arg-type]
    assert step.numbers == [START + 2] and step.blocks[0].hash == HASH[START + 2]
    assert "endpoint_quarantined" in step.kinds()
    quarantine = next(e for e in step.events if e.kind == "endpoint_quarantined")
    assert quarantine.endpoint == "a"
    assert step.of(CloseSocket) and step.of(Connect) == [Connect("b", 2)]


def test_lagging_endpoint_is_quarantined() -> None:
    """With two endpoints, one whose head is 17+ blocks behind the verified chain is benched."""
    h = Harness(["a", "b"], lag_quarantine_blocks=16, health_check_interval_s=5.0)
    poll = h.start(0.0).of(Poll)[0]
    fetch = h.head(poll, START + 30, 0.01).of(FetchRange)  # type: ignore[arg-type]
    assert [(f.start, f.end) for f in fetch] == [(START + 1, START + 29)]  # type: ignore[attr-defined]
    assert h.fill(fetch[0], 0.02).numbers == list(range(START + 1, START + 31))  # type: ignore[arg-type]
    health = [p for p in h.timer(5.0).of(Probe) if p.purpose == "health"]  # type: ignore[attr-defined]
    assert [p.endpoint for p in health] == ["b"]
    step = h.head(health[0], START + 13, 5.01)  # type: ignore[arg-type]
    quarantines = [e for e in step.events if e.kind == "endpoint_quarantined"]
    assert [(e.endpoint, "17 blocks behind" in e.reason) for e in quarantines] == [("b", True)]
    assert h.f.ranking["b"].is_quarantined(5.01)


def test_poll_failures_back_off_and_mark_disconnected() -> None:
    """F6: polls failing with 503 while the socket is down -> disconnected, growing waits."""
    h = Harness(http_retry_initial_s=0.5)
    step = h.start(0.0)
    h.f.on_failure(step.of(Connect)[0], "refused", 0.01)
    poll = step.of(Poll)[0]
    h.f.on_failure(poll, "HTTP 503", 0.02, status=503)
    step = h.out()
    assert h.f.mode is Mode.DISCONNECTED and "503" in step.events[-1].reason
    first = h.f.next_deadline()
    assert first is not None and first > 0.02


def test_late_answers_from_old_attempts_are_ignored() -> None:
    """A header or close from a previous socket attempt changes nothing."""
    h = streaming_harness()
    h.f.on_ws_closed("a", "reset", 1.0)
    h.out()
    h.f.on_ws_header(CHAIN[START + 2], "a", 1.1, attempt=1)
    h.f.on_ws_closed("a", "late close", 1.1, attempt=1)
    step = h.out()
    assert step.blocks == [] and step.of(Connect) == [] and h.f.attempt == 2


def test_request_reconnect_recycles_now() -> None:
    """request_reconnect closes the socket and opens a new one at once, counted."""
    h = streaming_harness()
    h.f.request_reconnect("admin", 2.0)
    step = h.out()
    assert len(step.of(CloseSocket)) == 1 and step.of(Connect) == [Connect("a", 2)]
    assert h.f.reconnects == 1 and "admin" in step.events[0].reason


def test_malformed_frames_are_counted() -> None:
    """on_malformed only counts; nothing else changes."""
    h = streaming_harness()
    h.f.on_malformed("a", 1.0)
    h.f.on_malformed("a", 1.1)
    assert h.f.malformed_frames == 2 and h.out().actions == [] and h.f.mode is Mode.STREAMING


def test_config_validation() -> None:
    """Nonsense configuration is refused with ValueError."""
    with pytest.raises(ValueError):
        FollowerConfig(block_time_s=0)
    with pytest.raises(ValueError):
        FollowerConfig(range_chunk=0)
    with pytest.raises(ValueError):
        Follower(["a", "a"])


def test_failure_marked_as_lie_quarantines_the_endpoint() -> None:
    """on_failure(lied=True) for an HTTP read benches that endpoint and says why."""
    h = Harness(["a", "b"])
    poll = h.start(0.0).of(Poll)[0]
    h.f.on_failure(poll, "asked for block 0x12, got another", 0.1, lied=True)
    step = h.out()
    assert [e.kind for e in step.events if e.endpoint == "a"][:2] == [
        "verification_failed", "endpoint_quarantined"]
    assert h.f.ranking["a"].is_quarantined(0.1)


def test_backfill_uses_the_socket_while_http_backs_off() -> None:
    """HTTP failing, socket healthy: a gap is fetched over the socket instead of waiting."""
    h = Harness(http_retry_initial_s=30.0)
    poll = h.start(0.0).of(Poll)[0]
    h.f.on_failure(poll, "HTTP 503", 0.005, status=503)
    h.out()
    h.stream(0.01)
    h.ws(START + 1, 0.02)
    step = h.ws(START + 4, 0.5)
    fetch = step.of(FetchRange)
    assert [(f.start, f.end, f.transport) for f in fetch] == [(START + 2, START + 3, "ws")]  # type: ignore[attr-defined]
    assert h.fill(fetch[0], 0.51).numbers == [START + 2, START + 3, START + 4]  # type: ignore[arg-type]


def test_probe_verdict_void_if_the_socket_spoke_meanwhile() -> None:
    """A probe that comes back after the socket delivered again decides nothing."""
    h = streaming_harness()
    probe = h.timer(1.52).of(Probe)[0]
    assert h.ws(START + 2, 1.6).numbers == [START + 2]
    step = h.head(probe, START + 3, 1.7)  # type: ignore[arg-type]
    assert step.of(CloseSocket) == [] and h.f.socket_state is SocketState.HEALTHY
    deadline = h.f.next_deadline()
    assert deadline is not None
    probe = h.timer(deadline).of(Probe)[0]
    h.ws(START + 4, deadline + 0.1)
    h.f.on_failure(probe, "timed out", deadline + 0.2)
    assert h.f.mode is Mode.STREAMING and h.f.socket_state is SocketState.HEALTHY


# -- start-block cross-check (head start, two endpoints) ------------------------------------------


def answer_range(h: Harness, fetch: FetchRange, now: float, *, lie: bool = False,
                 listed_from: int = 0) -> Step:
    """Answer a FetchRange like a node whose history starts at ``listed_from``; a liar serves
    every header with a wrong parent (so its hashes differ and its headers do not link)."""
    numbers = range(fetch.start, fetch.end + 1)
    headers = [(liar_header(CHAIN[n]) if lie else CHAIN[n]) if n >= listed_from else None
               for n in numbers]
    hashes = [None if header is None else block_hash(header) for header in headers]
    h.f.on_range_result(fetch, hashes, headers, now)
    return h.out()


def test_head_start_with_two_endpoints_needs_both_to_list_the_start_block() -> None:
    """Head start, two endpoints: the polled head is not delivered until a and b each listed
    its hash by number (with the parent link to #n-1 checked); then it is, once."""
    h = Harness(["a", "b"], anchor=None)
    poll = h.start(0.0).of(Poll)[0]
    step = h.head(poll, START + 7, 0.05)  # type: ignore[arg-type]
    assert step.numbers == []
    vote_a = step.of(FetchRange)
    assert vote_a == [FetchRange(START + 6, START + 7, "a", vote_a[0].seq, "start", "http",  # type: ignore[attr-defined]
                                 True)]
    step = answer_range(h, vote_a[0], 0.06)  # type: ignore[arg-type]
    assert step.numbers == []
    vote_b = step.of(FetchRange)
    assert [(f.start, f.end, f.endpoint, f.check_only_first) for f in vote_b] == [  # type: ignore[attr-defined]
        (START + 6, START + 7, "b", True)]
    step = answer_range(h, vote_b[0], 0.07)  # type: ignore[arg-type]
    assert step.numbers == [START + 7] and step.blocks[0].hash == HASH[START + 7]
    assert step.blocks[0].source is Source.POLL  # the earliest copy of the agreed header
    assert "verification_failed" not in step.kinds()


def test_head_start_liar_on_one_of_two_is_caught_and_never_delivered() -> None:
    """Endpoint a lies (wrong parents): its vote fails the link check, it is quarantined, and
    the start block delivered is b's (true) one; a's polled head is rejected, never delivered."""
    h = Harness(["a", "b"], anchor=None)
    poll = h.start(0.0).of(Poll)[0]
    step = h.head(poll, START + 7, 0.05, lie=True)  # type: ignore[arg-type]
    assert step.numbers == []
    step = answer_range(h, step.of(FetchRange)[0], 0.06, lie=True)  # type: ignore[arg-type]
    assert step.numbers == []
    assert {e.kind for e in step.events} >= {"verification_failed", "endpoint_quarantined"}
    assert all(e.endpoint == "a" for e in step.events if e.kind == "endpoint_quarantined")
    vote_b = step.of(FetchRange)
    assert [f.endpoint for f in vote_b] == ["b"]  # type: ignore[attr-defined]
    step = answer_range(h, vote_b[0], 0.07)  # type: ignore[arg-type]
    assert step.numbers == [START + 7] and step.blocks[0].hash == HASH[START + 7]
    assert h.f.ranking["a"].is_quarantined(0.07) and not h.f.ranking["b"].is_quarantined(0.07)


def next_fetch(h: Harness, *, head: int) -> tuple[FetchRange, float]:
    """Run timers (answering polls with ``head``) until the follower asks for a range."""
    for _ in range(1000):
        deadline = h.f.next_deadline()
        assert deadline is not None
        step = h.timer(deadline)
        fetches = step.of(FetchRange)
        for poll in step.of(Poll):
            fetches += h.head(poll, head, deadline).of(FetchRange)  # type: ignore[arg-type]
        if fetches:
            return fetches[0], deadline  # type: ignore[return-value]
    raise AssertionError("no FetchRange within 1000 timer steps")


def test_start_votes_that_disagree_block_delivery_and_say_so() -> None:
    """Two self-consistent endpoints listing different start blocks: nothing is delivered, one
    verification_failed event names both votes, blocked is set, and re-asking backs off."""
    h = Harness(["a", "b"], anchor=None)
    poll = h.start(0.0).of(Poll)[0]
    step = h.head(poll, START + 7, 0.05)  # type: ignore[arg-type]
    step = answer_range(h, step.of(FetchRange)[0], 0.06)  # type: ignore[arg-type]
    fetch = step.of(FetchRange)[0]
    assert fetch.endpoint == "b"  # type: ignore[attr-defined]
    other = make_chain(START, 20, seed=99)  # a different, internally consistent history
    numbers = range(fetch.start, fetch.end + 1)  # type: ignore[attr-defined]
    h.f.on_range_result(fetch, [block_hash(other[n]) for n in numbers],  # type: ignore[arg-type]
                        [other[n] for n in numbers], 0.07)
    step = h.out()
    assert step.numbers == []
    conflicts = [e for e in step.events if isinstance(e, VerificationFailed)]
    assert len(conflicts) == 1 and conflicts[0].votes is not None
    assert set(conflicts[0].votes) == {"a", "b"}
    assert f"start block #{conflicts[0].number} " in conflicts[0].reason
    assert h.f.blocked is not None and "disagree on start block" in h.f.blocked
    asked = list(step.of(FetchRange))
    now = 0.07
    while now < 20.0:
        if asked:
            answer_range(h, asked[-1], now)  # type: ignore[arg-type]
        fetch, now = next_fetch(h, head=START + 7)
        asked.append(fetch)
    assert h.f.deliverable() == [] and len(asked) <= 12  # backed off, never delivered
    assert h.f.blocked is not None


def test_a_failing_second_endpoint_does_not_keep_the_feed_from_starting() -> None:
    """b's HTTP fails when asked for its vote: only one healthy endpoint is left, so a's vote
    alone decides and the start block is delivered."""
    h = Harness(["a", "b"], anchor=None)
    poll = h.start(0.0).of(Poll)[0]
    step = h.head(poll, START + 7, 0.05)  # type: ignore[arg-type]
    step = answer_range(h, step.of(FetchRange)[0], 0.06)  # type: ignore[arg-type]
    fetch = step.of(FetchRange)[0]
    assert fetch.endpoint == "b"  # type: ignore[attr-defined]
    h.f.on_failure(fetch, "HTTP 503", 0.07, status=503)
    step = h.out()
    assert step.numbers == [START + 7] and step.blocks[0].hash == HASH[START + 7]


def test_head_start_at_the_nodes_first_block_moves_on_to_a_checkable_one() -> None:
    """The head is the node's first block (its parent is not listed), so no vote can check a
    link: the start moves one block on, where both endpoints' votes are link-checked."""
    h = Harness(["a", "b"], anchor=None)
    poll = h.start(0.0).of(Poll)[0]
    step = h.head(poll, START + 7, 0.05)  # type: ignore[arg-type]
    step = answer_range(h, step.of(FetchRange)[0], 0.06, listed_from=START + 7)  # type: ignore[arg-type]
    assert step.numbers == [] and h.f.ranking.usable_count(0.06) == 2
    assert step.of(FetchRange) == []  # nothing to vote on until #n+1 is known
    fetch, now = next_fetch(h, head=START + 8)
    assert (fetch.start, fetch.end, fetch.check_only_first) == (START + 7, START + 8, True)
    step = answer_range(h, fetch, now)
    step = answer_range(h, step.of(FetchRange)[0], now + 0.01)  # type: ignore[arg-type]
    assert step.numbers == [START + 8] and step.blocks[0].hash == HASH[START + 8]


def test_single_endpoint_head_start_needs_no_second_vote() -> None:
    """One endpoint: the confirmed polled head is delivered at once (no extra requests)."""
    h = Harness(["a"], anchor=None)
    poll = h.start(0.0).of(Poll)[0]
    step = h.head(poll, START + 7, 0.05)  # type: ignore[arg-type]
    assert step.numbers == [START + 7] and step.of(FetchRange) == []


# -- a start below the node's history, a checkpoint from another history -------------------------


def test_start_below_history_is_reported_unavailable_and_retried_with_backoff() -> None:
    """start_number below the node's first block: one 'unavailable' event naming the first
    listed block, blocked set, retries spaced further apart; an archive answer unblocks."""
    h = Harness(["a"], anchor=None, start_number=START + 2)
    poll = h.start(0.0).of(Poll)[0]
    step = h.head(poll, START + 30, 0.05)  # type: ignore[arg-type]
    fetch = step.of(FetchRange)[0]
    assert (fetch.start, fetch.purpose) == (START + 2, "start")  # type: ignore[attr-defined]
    step = answer_range(h, fetch, 0.06, listed_from=START + 10)  # type: ignore[arg-type]
    events = [e for e in step.events if isinstance(e, Unavailable)]
    assert len(events) == 1 and events[0].endpoint == "a"
    assert (events[0].number, events[0].first_listed) == (START + 2, START + 10)
    assert f"#{START + 2}" in events[0].reason and "below" in events[0].reason
    assert h.f.blocked == events[0].reason
    now, gaps = 0.06, []
    for _ in range(4):
        fetch, at = next_fetch(h, head=START + 30)
        gaps.append(at - now)
        now = at
        step = answer_range(h, fetch, now, listed_from=START + 10)
        assert "unavailable" not in step.kinds()  # said once, not on every retry
        assert step.numbers == [] and h.f.blocked is not None
    assert gaps == sorted(gaps) and gaps[-1] >= 4 * gaps[0]
    fetch, now = next_fetch(h, head=START + 30)
    step = answer_range(h, fetch, now)  # an endpoint that keeps the old blocks answers
    assert step.numbers[:2] == [START + 2, START + 3] and h.f.blocked is None


def test_far_below_the_head_with_nothing_listed_is_unavailable_too() -> None:
    """A range far below the endpoint's head with no hash at all (a start long before its
    first block) is unavailable: the event has no first_listed."""
    h = Harness(["a"], anchor=None, start_number=START + 2)
    poll = h.start(0.0).of(Poll)[0]
    fetch = h.head(poll, START + 90, 0.05).of(FetchRange)[0]  # type: ignore[arg-type]
    step = answer_range(h, fetch, 0.06, listed_from=10**9)  # type: ignore[arg-type]
    events = [e for e in step.events if isinstance(e, Unavailable)]
    assert len(events) == 1 and events[0].first_listed is None


def test_not_yet_finalized_numbers_are_not_unavailable() -> None:
    """A number above the endpoint's head comes back unknown too: that is 'not yet', no event."""
    h = Harness(["a"])
    poll = h.start(0.0).of(Poll)[0]
    step = h.head(poll, START + 5, 0.05)  # type: ignore[arg-type]
    fetch = step.of(FetchRange)[0]
    step = h.fill(fetch, 0.06, known_up_to=START + 2)  # type: ignore[arg-type]
    assert step.numbers == [START + 1, START + 2]
    assert "unavailable" not in step.kinds() and h.f.blocked is None


def test_checkpoint_from_another_history_is_named_and_blocks() -> None:
    """Resuming after a checkpoint the only endpoint does not extend: the verification event
    says so (details carry the checkpoint number) and blocked is set; nothing is delivered."""
    h = Harness(["a"])
    poll = h.start(0.0).of(Poll)[0]
    other = make_chain(START, 20, seed=99)
    header = other[START + 4]
    h.f.on_poll_result(poll, block_hash(header), header, 0.05)  # type: ignore[arg-type]
    fetch = h.out().of(FetchRange)[0]
    numbers = range(fetch.start, fetch.end + 1)  # type: ignore[attr-defined]
    h.f.on_range_result(fetch, [block_hash(other[n]) for n in numbers],  # type: ignore[arg-type]
                        [other[n] for n in numbers], 0.06)
    step = h.out()
    assert step.numbers == []
    mismatch = [e for e in step.events
                if isinstance(e, VerificationFailed) and e.checkpoint == START]
    assert mismatch and "does not extend the checkpoint" in mismatch[0].reason
    assert mismatch[0].endpoints_disagreeing == ("a",) and mismatch[0].against_checkpoint
    assert h.f.blocked is not None and "every configured endpoint" in h.f.blocked
