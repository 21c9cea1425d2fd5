"""The follower: the block-following logic as one sans-I/O state machine, made of parts.

The follower orchestrates; the parts it holds each own one concern and are tested alone:

* :class:`~blockfeed.core.merge.Merge`: delivery order and exactly-once;
* :class:`~blockfeed.core.poller.Poller`: *when* to poll, hedge, probe a silent socket and
  check idle endpoints (the phase-locked schedule), and the head reads in flight;
* :class:`~blockfeed.core.verify.Verifier`: suspects, lies, start votes, unavailable blocks,
  lag and chain checks, and why delivery is ``blocked``;
* :class:`~blockfeed.core.ranking.Ranking`, :class:`~blockfeed.core.deadline.BlockClock`,
  :class:`~blockfeed.core.modes.ModeMachine`: endpoint health, learned T, modes.

What stays here: the socket's life (:class:`SocketState`), what an answer means (a poll's head
offered to the merge, a probe's verdict on the socket), backfill requests, the mode, and the
output buffers.

Inputs (the driver calls these with the current time; nothing here reads a clock or a socket)::

    start(now)
    on_ws_connected(ep, now)   on_ws_subscribed(ep, now)   on_ws_header(header, ep, now)
    on_ws_closed(ep, reason, now)
    on_poll_result(poll, head_hash, header, now)    on_probe_result(probe, head_hash, header, now)
    on_range_result(fetch, hashes, headers, now)    on_failure(action, reason, now)
    on_malformed(ep, now)      request_reconnect(reason, now)      on_timer(now)

Outputs (each hands back and clears its buffer)::

    deliverable() -> list[Block]     blocks to hand to subscribers, in order
    actions()     -> list[Action]    I/O to start now (see ``core.actions``)
    events()      -> list[FeedEvent] mode changes, stalls, quarantines, reconnects, lies
    next_deadline() -> float | None  call ``on_timer`` at this time (never earlier is needed)

After every input, :meth:`_step` compares the state with what is wanted (a socket, a poll, a
probe, a backfill) and issues what is due, like a controller; ``next_deadline`` is when the next
thing becomes due, so a driver that sleeps until then never busy-loops.

Modes: ``streaming`` while the socket is *proven* (subscription confirmed and it delivered a
block the merge accepted); otherwise ``polling`` if HTTP answers, ``disconnected`` if it does
not; ``starting`` until the first of those is known. ``finality_stalled`` is raised when HTTP
confirms that nothing new was finalized for ``stall_after_blocks`` intervals, and cleared by the
next block. Delivery order and exactly-once live in :mod:`blockfeed.core.merge`.

Detection, in short:

* socket closed or failed -> mode changes at once, HTTP is read at once, and a socket that had
  been proven is reopened at once (later failures back off, with full jitter);
* socket silent for a deadline (``1.5 x`` learned interval) -> one HTTP probe: the chain moved
  -> stale socket, recycle it; the chain did not move -> not the socket's fault, keep it (a
  finality halt causes zero reconnects); the probe fails -> node or network down
  (``disconnected``; the socket is no longer trusted but left to keepalive, since closing it
  cannot help);
* while streaming, a block late by ``hedge_margin x T`` is asked for over HTTP once, then at the
  polling retry rate, so a silent socket costs polling-mode latency, not a deadline.
"""

from __future__ import annotations

import enum
import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from blockfeed import defaults
from blockfeed.codec import block_hash
from blockfeed.core.actions import (
    Action,
    CheckChain,
    CloseSocket,
    Connect,
    FetchRange,
    HeadRead,
    Poll,
    Probe,
    Subscribe,
)
from blockfeed.core.backoff import backoff
from blockfeed.core.deadline import BlockClock
from blockfeed.core.merge import Candidate, Merge, OfferOutcome
from blockfeed.core.modes import ModeMachine
from blockfeed.core.poller import Poller
from blockfeed.core.ranking import Ranking
from blockfeed.core.verify import Verifier
from blockfeed.types import (
    Block,
    BlockTimeChanged,
    Diverged,
    FeedEvent,
    Header,
    Mode,
    Reconnect,
    Source,
)


class SocketState(enum.Enum):
    """Where the (single) WebSocket is in its life."""

    IDLE = "idle"
    """No socket; the next attempt is due at ``reconnect_at``."""
    CONNECTING = "connecting"
    """``Connect`` issued, waiting for ``on_ws_connected``."""
    SUBSCRIBING = "subscribing"
    """``Subscribe`` issued, waiting for ``on_ws_subscribed``."""
    SUBSCRIBED = "subscribed"
    """Subscription confirmed but no accepted block yet: not restored, not trusted."""
    HEALTHY = "healthy"
    """Delivered a block the merge accepted: the feed is streaming."""


_OPEN_STATES = (SocketState.SUBSCRIBED, SocketState.HEALTHY)
_LIVE_STATES = (
    SocketState.CONNECTING,
    SocketState.SUBSCRIBING,
    SocketState.SUBSCRIBED,
    SocketState.HEALTHY,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class FollowerConfig:
    """Tuning of the follower; plain fractions are of the learned block interval ``T``.

    ``block_time_s`` is a prior, not a truth: the interval is learned from arrivals and every
    timer (deadline, poll cadence, hedge, HTTP retry cap, idle-endpoint checks) follows the
    learned value, within absolute bounds only.
    """

    block_time_s: float = defaults.BLOCK_TIME_S
    """The block time assumed until intervals are learned (a hint or the declared slot)."""
    deadline_factor: float = 1.5
    """A socket silent for ``deadline_factor x T`` is checked with one HTTP probe."""
    deadline_floor_s: float | None = None
    """Lower bound of interval and deadline (default: ``deadline.MIN_INTERVAL_S``)."""
    deadline_ceiling_s: float | None = None
    """Upper bound of interval and deadline (default: ``deadline.MAX_INTERVAL_S``)."""
    poll_margin: float = 0.05
    """Polling mode asks ``poll_margin x T`` after a block is due ..."""
    poll_retry: float = 0.1
    """... then every ``poll_retry x T`` until it appears ..."""
    poll_late_window: float = 0.3
    """... for up to ``poll_late_window x T``; later than that the block most likely comes with
    the next one (a GRANDPA jump), so the poller waits for the next slot ..."""
    poll_slow_after_blocks: float = 6.0
    """... and after this many empty slots (a halt, not a GRANDPA hold) it asks every ..."""
    poll_retry_growth: float = 0.25
    """... ``poll_retry_growth x lateness``, at least once per deadline."""
    phase_pull: float = 0.05
    """After a first-try hit, assume the block appeared this much earlier (doubling per
    consecutive first-try hit), so the phase cannot drift late without a miss to correct it."""
    hedge: bool = True
    """While streaming, ask HTTP when the socket is ``hedge_margin x T`` late with a block."""
    hedge_margin: float = 0.1
    stall_after_blocks: float = 6.0
    """Raise ``finality_stalled`` after this many intervals with no new block, HTTP-confirmed."""
    reconnect_initial_s: float = 0.5
    reconnect_cap_s: float = 30.0
    """Socket backoff (full jitter) for endpoints that give no sign of life; any evidence that
    an endpoint is back (an HTTP answer after failures) ends it at once."""
    http_retry_initial_s: float = 0.2
    http_retry_cap_s: float | None = None
    """Cap of the HTTP (and socket-request) error backoff; None: ``http_retry_cap_blocks x T``
    within 0.25-15 s, so a disconnected feed asks about once per block time."""
    http_retry_cap_blocks: float = 1.0
    range_chunk: int = 500
    """Most numbers asked for in one backfill request."""
    range_retry: float = 0.25
    """After a backfill that made no progress, wait ``range_retry x T`` before asking again."""
    lag_quarantine_blocks: int = 16
    """With several endpoints, one whose head is this far behind the verified chain is benched."""
    quarantine_s: float = 300.0
    health_check_interval_s: float | None = None
    """With several endpoints, probe the idle ones this often (lag and liveness); None:
    ``health_check_blocks x T`` within 0.5-30 s."""
    health_check_blocks: float = 3.0
    fresh_blocks: float = 4.0
    """An endpoint that showed life within this many T counts as fresh: failover prefers it."""

    def __post_init__(self) -> None:
        if self.block_time_s <= 0:
            raise ValueError("block_time_s must be positive")
        if self.range_chunk < 1:
            raise ValueError("range_chunk must be at least 1")
        if self.reconnect_initial_s < 0 or self.reconnect_cap_s <= 0:
            raise ValueError("reconnect backoff needs initial_s >= 0 and cap_s > 0")
        if self.quarantine_s < 0 or (
            self.health_check_interval_s is not None and self.health_check_interval_s <= 0
        ):
            raise ValueError("quarantine_s must be >= 0 and health_check_interval_s > 0")
        if self.http_retry_cap_s is not None and self.http_retry_cap_s <= 0:
            raise ValueError("http_retry_cap_s must be positive")


DEFAULT_CONFIG = FollowerConfig()
BackoffFactory = Callable[[], Iterator[float]]


class Follower:
    """Composite state machine: socket lifecycle, merge, modes; delegates poll timing to a
    :class:`Poller` and verification to a :class:`Verifier`."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        config: FollowerConfig = DEFAULT_CONFIG,
        start_number: int | None = None,
        anchor: tuple[int, str] | None = None,
        wall_offset_s: float = 0.0,
        rng: Callable[[], float] = random.random,
        reconnect_backoff: BackoffFactory | None = None,
        http_labels: dict[str, str] | None = None,
        genesis_hash: str | None = None,
        numbering_from: int = 0,
    ) -> None:
        """``endpoints`` are labels (already redacted, unique), in order of preference.

        Start after ``anchor`` (checkpoint number and hash), at ``start_number``, or (neither) at
        the current finalized head. ``wall_offset_s`` is added to ``now`` to stamp
        ``Block.received_at`` (driver's monotonic clock -> Unix time). ``reconnect_backoff`` makes
        a fresh delay iterator (tests pass a fixed one); default: :func:`core.backoff.backoff`.
        ``http_labels`` names each endpoint's HTTP side in messages (default: the label).
        ``genesis_hash``, when known, lets a chain check tell another chain from a lagging node
        (see :meth:`on_chain_check`). ``numbering_from``: request sequence numbers and socket
        attempts start above it, so answers to a previous follower's actions never match.
        """
        if len(set(endpoints)) != len(endpoints):
            raise ValueError("endpoint labels must be unique")
        cfg = self.config = config
        self._ranking = Ranking(
            endpoints,
            http_retry_initial_s=cfg.http_retry_initial_s,
            http_retry_cap_s=cfg.http_retry_cap_s or cfg.block_time_s,
            rng=rng,
        )
        self._http_labels = dict(http_labels or {})
        self._merge = Merge(anchor=anchor, start_number=start_number)
        if anchor is not None:
            self._ranking.best_number = anchor[0]
        self._head_start = anchor is None and start_number is None
        if self._head_start and len(endpoints) > 1:
            # Starting at the head with a second opinion available: the first block's hash
            # must be listed by two endpoints (each checked for a parent link) before delivery.
            self._merge.start_quorum = 2
        self._clock = BlockClock(
            block_time_s=cfg.block_time_s,
            deadline_factor=cfg.deadline_factor,
            floor_s=cfg.deadline_floor_s,
            ceiling_s=cfg.deadline_ceiling_s,
        )
        self._poller = Poller(self._clock, cfg, ready_at=self._read_ready_at)
        self._verify = Verifier(
            self._merge, self._ranking, self._clock, cfg, anchor=anchor,
            genesis_hash=genesis_hash, emit=self._emit, check_chain=self._send_chain_check,
        )
        self._backoff_factory: BackoffFactory = reconnect_backoff or (
            lambda: backoff(initial_s=cfg.reconnect_initial_s, cap_s=cfg.reconnect_cap_s, rng=rng)
        )
        self._wall_offset_s = wall_offset_s
        self._modes: ModeMachine | None = None
        self._started_at = 0.0
        self._reported_interval_s = self._clock.interval_s

        # the socket
        self._sock = SocketState.IDLE
        self._sock_ep: str | None = None
        self._attempt = numbering_from
        self._reconnect_at: float | None = None
        self._backoff: Iterator[float] = self._backoff_factory()
        self._ws_activity_at = 0.0
        self._ws_high: int | None = None
        self._ws_ref: int | None = None
        self._ws_proof: str | None = None
        """Hash of the newest block a subscribed (not yet proven) socket brought: its delivery
        proves the socket."""
        self._socket_ever_failed = False
        self._last_socket_failure = ""

        # HTTP head reads (their timing and the reads in flight: self._poller)
        self._seq = numbering_from
        self._http_ok: bool | None = None
        self._head_known: tuple[int, str] | None = None

        # backfill and progress (verification state: self._verify)
        self._range: FetchRange | None = None
        self._best_seen: int | None = None
        self._progress_at = 0.0

        # outputs and counters
        self._out_blocks: list[Block] = []
        self._out_actions: list[Action] = []
        self._out_events: list[FeedEvent] = []
        self.connects = 0
        self.reconnects = 0
        self.malformed_frames = 0
        self.blocks_by_source: Counter[str] = Counter()
        self.probes: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()

    # ------------------------------------------------------------------ outputs

    def deliverable(self) -> list[Block]:
        """Blocks to hand to subscribers, in order (already exactly-once); clears the buffer."""
        out, self._out_blocks = self._out_blocks, []
        return out

    def actions(self) -> list[Action]:
        """I/O the driver must start now, in order; clears the buffer."""
        out, self._out_actions = self._out_actions, []
        return out

    def events(self) -> list[FeedEvent]:
        """Events for logs, hooks and alerts, in order; clears the buffer."""
        out, self._out_events = self._out_events, []
        return out

    def next_deadline(self) -> float | None:
        """When ``on_timer`` must next be called (None: only an input can change anything)."""
        if self._modes is None:
            return None
        times: list[float] = []
        if self._sock is SocketState.IDLE and self._reconnect_at is not None:
            times.append(self._reconnect_at)
        for due in (self._poll_due(), self._silence_due(), self._range_due()):
            if due is not None:
                times.append(due)
        if len(self._ranking.labels) > 1:
            times.append(self._poller.health_next_at)
        if self._modes.mode is Mode.STARTING:
            times.append(self._started_at + self._clock.deadline_s)
        return min(times) if times else None

    # ------------------------------------------------------------------ state for status pages

    @property
    def mode(self) -> Mode:
        """Current mode (``starting`` until known)."""
        return Mode.STARTING if self._modes is None else self._modes.mode

    @property
    def finality_stalled(self) -> bool:
        """True while HTTP confirms the chain has stopped finalizing."""
        return self._modes is not None and self._modes.finality_stalled

    @property
    def socket_state(self) -> SocketState:
        """Where the socket is in its life."""
        return self._sock

    @property
    def socket_endpoint(self) -> str | None:
        """Label of the endpoint the current socket belongs to (None when there is none)."""
        return None if self._sock is SocketState.IDLE else self._sock_ep

    @property
    def attempt(self) -> int:
        """Number of the current (or last) socket attempt."""
        return self._attempt

    @property
    def block_interval_s(self) -> float:
        """Learned block interval."""
        return self._clock.interval_s

    @property
    def deadline_s(self) -> float:
        """Current silence deadline."""
        return self._clock.deadline_s

    @property
    def block_time_prior_s(self) -> float:
        """The block time assumed before observation (hint, or the runtime's declared slot)."""
        return self._clock.prior_s

    @property
    def diverged(self) -> Diverged | None:
        """The ``chain_diverged`` event once every endpoint proved to serve another chain than
        the one delivered; None otherwise. Nothing more can be delivered on this chain."""
        return self._verify.diverged

    @property
    def last(self) -> tuple[int, str] | None:
        """(number, hash) of the last delivered block, or the resume anchor."""
        return self._merge.last

    @property
    def blocked(self) -> str | None:
        """Why nothing can be delivered right now, when the reason is known and lasting: the
        next block is below every endpoint's history (pruned node, or a start before the
        chain's first block), no endpoint extends the checkpoint, or the endpoints disagree on
        the start block. None otherwise; cleared by the next delivery. Retries go on."""
        return self._verify.blocked

    @property
    def ranking(self) -> Ranking:
        """Endpoint health records (for status; do not mutate)."""
        return self._ranking

    def mode_seconds(self, now: float) -> dict[str, float]:
        """Seconds spent in each mode."""
        return {} if self._modes is None else self._modes.seconds(now)

    def transitions(self) -> dict[str, int]:
        """Mode transitions counted by ``"<from>-><to>:<reason kind>"``."""
        return {} if self._modes is None else dict(self._modes.transitions)

    # ------------------------------------------------------------------ inputs

    def start(self, now: float) -> None:
        """Begin: open the socket and read the head over HTTP at once (whichever wins)."""
        if self._modes is not None:
            raise RuntimeError("start() called twice")
        self._modes = ModeMachine(now)
        self._started_at = self._progress_at = now
        self._tune_to_interval()
        self._poller.schedule_health(now)
        self._reconnect_at = now
        self._poller.ask_now()
        self._step(now)

    def set_block_time_prior(self, block_time_s: float, source: str, now: float) -> None:
        """The chain declared its block time (e.g. the runtime's Aura slot duration): use it
        as the prior. Observed intervals still rule once there are a few of them."""
        if not block_time_s > 0:
            return
        self._clock.set_prior(block_time_s)
        self._note_interval(now, f"declared by {source}")
        self._step(now)

    def set_chain_identity(self, genesis_hash: str | None, first_hash: str | None = None) -> None:
        """The hashes of blocks 0 and 1 of the followed chain became known: chain checks
        compare against them (another genesis, or the same genesis restarted from scratch)."""
        self._verify.set_identity(genesis_hash, first_hash)

    @property
    def numbering(self) -> int:
        """Highest request sequence or socket attempt number used so far."""
        return max(self._seq, self._attempt)

    def on_ws_connected(self, endpoint: str, now: float, *, attempt: int | None = None) -> None:
        """The socket of the current attempt is open: subscribe next."""
        if not self._is_current(endpoint, attempt, SocketState.CONNECTING):
            return
        self._sock = SocketState.SUBSCRIBING
        self._out_actions.append(Subscribe(endpoint, self._attempt))
        self._step(now)

    def on_ws_subscribed(self, endpoint: str, now: float, *, attempt: int | None = None) -> None:
        """The node confirmed the subscription. Not restored yet: a block must arrive first."""
        if not self._is_current(endpoint, attempt, SocketState.SUBSCRIBING):
            return
        self._sock = SocketState.SUBSCRIBED
        self._ws_activity_at = now
        self._poller.heard_socket(now)
        self._ws_high = None
        self._ws_ref = self._merge.best_known
        self._step(now)

    def on_ws_header(
        self, header: Header, endpoint: str, now: float, *, attempt: int | None = None
    ) -> None:
        """A finalized-head notification, already parsed by ``codec.header_from_json``."""
        if not self._is_current(endpoint, attempt, *_OPEN_STATES):
            return
        self._ws_activity_at = now
        self._poller.heard_socket(now)
        self._ws_high = max(header.number, self._ws_high or 0)
        candidate = Candidate.of(
            header, source=Source.WS, endpoint=endpoint, received_at=now + self._wall_offset_s
        )
        outcome = self._merge.offer(candidate)
        self._ranking.record_head(endpoint, header.number, now)
        self._ranking.record_alive(endpoint, now)
        if outcome == OfferOutcome.HELD:
            self._observe(header.number, now)
            self._note_head(header.number, candidate.hash, now)
            self._poller.socket_behind = False
            if self._sock is SocketState.SUBSCRIBED:
                self._ws_proof = candidate.hash
        elif outcome == OfferOutcome.STALE:
            self._verify.check_far_below(endpoint, header.number, now)
        self._absorb(now)
        if (self._sock is SocketState.SUBSCRIBED
                and self._merge.delivered_hash(header.number) == candidate.hash):
            self._promote_socket(endpoint, now)  # it brought a block that was delivered
        self._verify.check_lag(endpoint, header.number, now)
        self._step(now)

    def _promote_socket(self, endpoint: str, now: float) -> None:
        """The subscribed socket brought a block that was delivered: it is restored."""
        self._sock = SocketState.HEALTHY
        self._ws_proof = None
        self._ranking.record_ws_success(endpoint, now)
        self._backoff = self._backoff_factory()
        self._refresh_mode(now, "subscription confirmed and delivering", kind="socket_restored")

    def on_ws_closed(
        self, endpoint: str, reason: str, now: float, *, attempt: int | None = None
    ) -> None:
        """The socket ended (close frame, reset, keepalive timeout, read error)."""
        if not self._is_current(endpoint, attempt, *_LIVE_STATES):
            return
        self._socket_failed(now, f"socket closed: {reason}", kind="socket_closed", close=False)
        self._step(now)

    def on_poll_result(
        self,
        poll: Poll,
        head_hash: str,
        header: Header | None,
        now: float,
        *,
        latency_s: float | None = None,
    ) -> None:
        """Answer to a :class:`Poll`: the head hash, and its header unless it was the known one."""
        inflight = self._poller.poll_answered(poll)
        if inflight is None:
            return
        number = self._read_head(poll, head_hash, header, now, latency_s)
        if number is not None:
            measured = self._poller.learn(number, inflight)
            if measured is not None:
                self._observe(*measured)
        self._step(now)

    def on_probe_result(
        self,
        probe: Probe,
        head_hash: str,
        header: Header | None,
        now: float,
        *,
        latency_s: float | None = None,
    ) -> None:
        """Answer to a :class:`Probe`: stale socket vs stalled chain, or an endpoint's lag."""
        if probe.purpose == "health":
            if not self._poller.health_answered(probe):
                return
            self.probes["health"] += 1
            number = self._read_head(probe, head_hash, header, now, latency_s)
            if number is not None:
                self._verify.check_lag(probe.endpoint, number, now)
        else:
            inflight = self._poller.probe_answered(probe)
            if inflight is None:
                return
            number = self._read_head(probe, head_hash, header, now, latency_s)
            if number is not None:
                self._decide_silence(number, inflight.sent_at, now)
        self._step(now)

    def on_range_result(
        self,
        fetch: FetchRange,
        hashes: Sequence[str | None],
        headers: Sequence[Header | None],
        now: float,
        *,
        latency_s: float | None = None,
    ) -> None:
        """Answer to a :class:`FetchRange`: listed hashes by number and their headers, aligned."""
        if self._range != fetch:
            return
        self._range = None
        ep = fetch.endpoint
        if fetch.transport == "http":
            self._http_success(ep, latency_s, now)
        else:
            self._ranking.record_ws_request_success(ep, now)
        before = self._merge.last
        votes_before = len(self._merge.start_votes(fetch.end)) if fetch.check_only_first else 0
        check = self._merge.offer_range(
            fetch.start, hashes, headers, endpoint=ep, received_at=now + self._wall_offset_s,
            check_only_first=fetch.check_only_first,
        )
        self._verify.judge_range(fetch, check, hashes, now)
        self._absorb(now)
        voted = fetch.check_only_first and len(self._merge.start_votes(fetch.end)) > votes_before
        if fetch.check_only_first:
            self._verify.check_start_conflict(fetch.end, now)
        liar_benched = check.invalid_reason is not None and self._ranking.usable_count(now) > 0
        progressed = self._merge.last != before or voted or liar_benched
        self._poller.range_answered(now, progressed=progressed)
        self._step(now)

    def on_chain_check(
        self, check: CheckChain, listed: dict[int, str | None], now: float,
        *, parent_hash: str | None = None,
    ) -> None:
        """Answer to a :class:`CheckChain`: the hashes the endpoint lists by number.

        Another hash at a number whose hash the follower knows (block 0, block 1, or a
        delivered one) proves the endpoint serves another chain (a replaced dev chain, a
        misconfigured proxy, a lie): it is quarantined and recorded. Once every endpoint is in
        that state, ``chain_diverged`` is raised once. An endpoint that agrees (or cannot tell
        yet: it does not list the number) is cleared. An endpoint whose block at the checked
        number does not link to its own block before it (``parent_hash``) lies: it is
        quarantined as a liar and never counts as serving another chain.
        """
        if not self._verify.claim_check(check):
            return
        self._http_success(check.endpoint, None, now)
        self._verify.on_chain_check(check, listed, now, parent_hash=parent_hash)
        self._step(now)

    def on_failure(
        self,
        action: Action,
        reason: str,
        now: float,
        *,
        status: int | None = None,
        lied: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        """An action failed (refused, timed out, HTTP 429/5xx, JSON-RPC error, bad answer).

        ``lied=True``: the endpoint served data that contradicts itself (a header that does not
        hash to the hash it was asked for); it is quarantined on top of the failure.
        ``retry_after_s``: the endpoint asked for that pause (a rate limit); it is honoured.
        Every failure backs off the channel it used (HTTP, or requests over the socket), so an
        endpoint that answers only errors is asked a bounded number of times.
        """
        if status is not None and str(status) not in reason:
            reason = f"{reason} (HTTP {status})"
        pause = retry_after_s
        if lied and isinstance(action, Poll | Probe | FetchRange):
            self._verify.lie(action.endpoint, f"served inconsistent data: {reason}", now)
        if isinstance(action, Connect | Subscribe):
            if self._is_current(action.endpoint, action.attempt, *_LIVE_STATES):
                kind = "connect_failed" if isinstance(action, Connect) else "subscribe_failed"
                self._socket_failed(
                    now, f"{kind.replace('_', ' ')}: {reason}", kind=kind,
                    close=isinstance(action, Subscribe),
                )
        elif isinstance(action, Poll):
            if self._poller.poll_answered(action) is not None:
                if action.transport == "http":
                    self._http_failure(action.endpoint, reason, now, retry_after_s=pause)
                else:
                    self._ws_request_failure(action.endpoint, now, retry_after_s=pause)
        elif isinstance(action, Probe):
            self._probe_failed(action, reason, now, retry_after_s=pause)
        elif isinstance(action, FetchRange):
            if self._range == action:
                self._range = None
                over_http = action.transport == "http"
                if over_http:
                    channel_at = self._http_failure(action.endpoint, reason, now,
                                                    retry_after_s=pause)
                else:
                    channel_at = self._ws_request_failure(action.endpoint, now,
                                                          retry_after_s=pause)
                self._poller.range_failed(
                    now, over_http=over_http, channel_retry_at=channel_at,
                    socket_can_fetch=over_http and self._socket_can_fetch(action.start),
                )
        elif isinstance(action, CheckChain):
            if self._verify.claim_check(action):
                self._http_failure(action.endpoint, reason, now, retry_after_s=pause)
        self._step(now)

    def on_malformed(self, endpoint: str, now: float) -> None:
        """A frame from ``endpoint`` was rejected by the codec or RPC layer: count it, go on."""
        del endpoint, now
        self.malformed_frames += 1

    def request_reconnect(self, reason: str, now: float) -> None:
        """Recycle the socket at once (an operator asked, or the driver knows better)."""
        if self._modes is None:
            return
        if self._sock is SocketState.IDLE:
            self._reconnect_at = now
        else:
            self._drop_socket(now, f"reconnect requested: {reason}", kind="reconnect_requested",
                              close=True, immediate=True, failed=False)
        self._step(now)

    def on_timer(self, now: float) -> None:
        """Time passed: start whatever became due (polls, probes, reconnects, backfill)."""
        if self._modes is not None:
            self._step(now)

    # ------------------------------------------------------------------ the controller

    def _step(self, now: float) -> None:
        modes = self._modes
        if modes is None:
            return
        cfg = self.config
        self._tune_to_interval()
        if self._verify.update_start_quorum(now):
            self._absorb(now)
        # 1. A socket on a quarantined endpoint moves to a better one, if there is one.
        if self._sock is not SocketState.IDLE and self._sock_ep is not None:
            health = self._ranking[self._sock_ep]
            if health.is_quarantined(now) and self._ranking.usable_count(now) > 0:
                self._drop_socket(
                    now, f"endpoint {self._sock_ep} quarantined ({health.quarantine_reason})",
                    kind="endpoint_quarantined", close=True, immediate=True, failed=False,
                )
        # 2. The socket: one attempt at a time, when its backoff allows.
        if (
            self._sock is SocketState.IDLE
            and self._reconnect_at is not None
            and now >= self._reconnect_at
        ):
            self._connect(now)
        # 3. Backfill by number, one range at a time, avoiding endpoints that got it wrong.
        range_due = self._range_due()
        if range_due is not None and now >= range_due:
            gap = self._merge.gap(chunk=cfg.range_chunk)
            assert gap is not None
            ep, transport = self._range_source(gap[0], now)
            suspects = self._verify.suspected_at(gap[0])
            purpose = "verify" if suspects else "start" if self._merge.last is None else "backfill"
            start, end, vote = gap[0], gap[1], False
            if purpose == "start" and self._merge.start_quorum is not None and start > 0:
                start, end, vote = start - 1, start, True  # a vote: its hash, linked to #n-1
            self._range = FetchRange(start, end, ep, self._next_seq(), purpose, transport, vote)
            self.requests["range"] += 1
            self._out_actions.append(self._range)
        # 4. Phase-locked polling (socket down) or a hedge (socket up, block late). While reads
        #    fail, one head read at a time, the silence probe first (see _one_read_at_a_time).
        silence_due = self._silence_due()
        probe_first = (silence_due is not None and now >= silence_due
                       and self._one_read_at_a_time())
        poll_due = None if probe_first else self._poll_due()
        if poll_due is not None and now >= poll_due:
            purpose = "hedge" if self._sock is SocketState.HEALTHY else "poll"
            ep, transport = self._read_source(now)
            poll = Poll(ep, self._next_seq(), *self._known(), purpose=purpose, transport=transport)
            self._poller.poll_sent(poll, now)
            self.requests[purpose if transport == "http" else f"ws_{purpose}"] += 1
            self._out_actions.append(poll)
        # 5. A silent socket gets one probe per deadline.
        silence_due = self._silence_due()
        if silence_due is not None and now >= silence_due:
            ep, transport = self._read_source(now)
            probe = Probe(ep, self._next_seq(), *self._known(), purpose="silence",
                          transport=transport)
            self._poller.probe_sent(probe, now)
            self.requests["probe" if transport == "http" else "ws_probe"] += 1
            self._out_actions.append(probe)
        # 6. With several endpoints, look at the idle ones now and then (lag, liveness).
        if len(self._ranking.labels) > 1 and self._poller.health_round(now):
            for ep in self._ranking.labels:
                if ep == self.socket_endpoint or self._poller.health_pending(ep):
                    continue
                if self._ranking[ep].http_retry_at > now:
                    continue
                probe = Probe(ep, self._next_seq(), purpose="health")
                self._poller.health_sent(probe, now)
                self.requests["health"] += 1
                self._out_actions.append(probe)
        # 7. Starting ends when the socket proves itself, something fails, or a deadline passes.
        if modes.mode is Mode.STARTING and now >= self._started_at + self._clock.deadline_s:
            self._refresh_mode(now, "no socket block within the first deadline",
                               kind="start_timeout")

    def _tune_to_interval(self) -> None:
        """Keep every learned-T-relative bound in step with the current interval."""
        self._ranking.http_retry_cap_s, self._ranking.fresh_s = self._poller.ranking_limits()

    def _observe(self, number: int, at: float) -> None:
        """A measured appearance time: learn from it, and say so when T moved by over 25 %."""
        self._clock.observe(number, at)
        self._note_interval(at, f"learned from {self._clock.samples} intervals")

    def _note_interval(self, now: float, how: str) -> None:
        new, old = self._clock.interval_s, self._reported_interval_s
        if abs(new - old) <= 0.25 * old:
            return
        self._reported_interval_s = new
        self._tune_to_interval()
        # Waits scheduled in units of the old T follow the new one (a backfill retry planned
        # with a 12 s prior must not hold a 0.2 s chain for seconds).
        self._poller.rescale(now, old, new)
        self._emit(BlockTimeChanged(
            at=now, reason=f"block time {new:.3g}s (was {old:.3g}s; {how})",
            block_time_s=new, previous_s=old,
        ))

    def _known(self) -> tuple[int | None, str | None]:
        if self._head_known is None:
            return None, None
        return self._head_known

    # ------------------------------------------------------------------ due times

    def _one_read_at_a_time(self) -> bool:
        """While HTTP fails, the poll and the silence probe take turns instead of both asking:
        an endpoint that answers only errors must see a bounded request rate (issue: request
        storms get clients banned by providers)."""
        return self._http_ok is False

    def _poll_due(self) -> float | None:
        """When the poller (or the hedge) should ask next; None if it should not."""
        if self._modes is None:
            return None
        return self._poller.poll_due(
            streaming=self._sock is SocketState.HEALTHY,
            stalled=self.finality_stalled,
            known_top=self._known_top(),
            serialized=self._http_ok is False,  # _one_read_at_a_time(), inlined: a hot path
        )

    def _silence_due(self) -> float | None:
        return self._poller.silence_due(
            socket_open=self._sock in _OPEN_STATES,
            serialized=self._http_ok is False,  # _one_read_at_a_time(), inlined: a hot path
        )

    def _range_due(self) -> float | None:
        if self._range is not None or self._merge.gap(chunk=self.config.range_chunk) is None:
            return None
        return max(self._poller.range_retry_at, self._fetch_ready_at())

    def _fetch_ready_at(self) -> float:
        """Earliest time a backfill can go out: HTTP, or the open socket while HTTP backs off."""
        http_at = self._http_ready_at()
        ws_at = self._ws_channel_ready_at() if self._socket_can_fetch(None) else None
        return http_at if ws_at is None else min(http_at, ws_at)

    def _socket_can_fetch(self, start: int | None) -> bool:
        if self._sock not in _OPEN_STATES or self._sock_ep is None:
            return False
        return start is None or self._sock_ep not in self._verify.suspected_at(start)

    def _read_source(self, now: float) -> tuple[str, str]:
        """Where a head read goes: the best endpoint's HTTP side if one is ready; while every
        HTTP side backs off, the open socket's request channel (F6: use the socket)."""
        label, at = self._ranking.best_http(now)
        assert label is not None  # Ranking is never empty
        ws_at = self._ws_channel_ready_at()
        if at > now and ws_at is not None and ws_at <= now and self._sock_ep is not None:
            return self._sock_ep, "ws"
        return label, "http"

    def _ws_channel_ready_at(self) -> float | None:
        """When the open socket may carry a request (its own error backoff); None: no socket."""
        if self._sock not in _OPEN_STATES or self._sock_ep is None:
            return None
        return self._ranking[self._sock_ep].ws_request_retry_at

    def _read_ready_at(self) -> float:
        """Earliest time a head read can go out: when some endpoint's HTTP backoff allows, or
        the open socket's request backoff does."""
        http_at = self._http_ready_at()
        ws_at = self._ws_channel_ready_at()
        return http_at if ws_at is None else min(http_at, ws_at)

    def _http_ready_at(self) -> float:
        """Earliest time some endpoint's HTTP side may be used (HTTP backoff)."""
        return min(self._ranking[ep].http_retry_at for ep in self._ranking.labels)

    def _http_endpoint(self, now: float) -> str:
        label, _ = self._ranking.best_http(now)
        assert label is not None  # Ranking is never empty
        return label

    def _range_source(self, start: int, now: float) -> tuple[str, str]:
        """Where to backfill from ``start``: the best HTTP endpoint that is ready, did not get
        ``start`` wrong, is known to have it (and, for a start-block vote, has not voted yet);
        else the open socket (HTTP backing off); else the best HTTP endpoint at all."""
        suspects = set(self._verify.suspected_at(start))
        lacking = set(self._verify.lacking(start))
        voted = set(self._merge.start_votes(start)) if self._merge.last is None else set()
        behind = {
            ep for ep in self._ranking.labels
            if (head := self._ranking[ep].head_number) is not None and head < start
        }
        for exclude in (suspects | behind | lacking | voted, suspects | lacking | voted,
                        suspects | lacking, suspects):
            ep, at = self._ranking.best_http(now, exclude=exclude)
            if ep is not None and at <= now:
                return ep, "http"
        ws_at = self._ws_channel_ready_at()
        if self._socket_can_fetch(start) and self._sock_ep is not None and ws_at is not None \
                and ws_at <= now:
            return self._sock_ep, "ws"
        return self._http_endpoint(now), "http"

    def _known_top(self) -> int | None:
        """The highest number known from any source (the poller waits for the next one)."""
        best = self._merge.best_known
        last = self._merge.last
        tops = [x for x in (best, last[0] if last else None) if x is not None]
        return max(tops) if tops else None

    # ------------------------------------------------------------------ socket helpers

    def _is_current(self, endpoint: str, attempt: int | None, *states: SocketState) -> bool:
        if self._sock not in states or endpoint != self._sock_ep:
            return False
        return attempt is None or attempt == self._attempt

    def _connect(self, now: float) -> None:
        ep = self._ranking.best(now)
        assert ep is not None
        self._attempt += 1
        self._sock = SocketState.CONNECTING
        self._sock_ep = ep
        self._reconnect_at = None
        self.connects += 1
        if self.connects > 1:
            self.reconnects += 1
            after = f" after: {self._last_socket_failure}" if self._last_socket_failure else ""
            self._emit(Reconnect(
                at=now, reason=f"socket attempt {self._attempt}{after}",
                endpoint=ep, attempt=self._attempt,
            ))
        self._out_actions.append(Connect(ep, self._attempt))

    def _socket_failed(self, now: float, reason: str, *, kind: str, close: bool) -> None:
        """A proven socket is reopened at once; an unproven one only after backoff."""
        immediate = self._sock is SocketState.HEALTHY
        self._drop_socket(now, reason, kind=kind, close=close, immediate=immediate, failed=True)

    def _drop_socket(
        self, now: float, reason: str, *, kind: str, close: bool, immediate: bool, failed: bool
    ) -> None:
        ep = self._sock_ep
        self._last_socket_failure = reason
        if close and ep is not None:
            self._out_actions.append(CloseSocket(ep, self._attempt, reason))
        if failed and ep is not None:
            self._ranking.record_ws_failure(ep)
            self._socket_ever_failed = True
            if len(self._ranking.labels) > 1:
                # Ask every other endpoint now, in parallel: the first good answer delivers,
                # and the next socket goes to one with fresh evidence of life.
                self._poller.check_health_now(now)
        was_healthy = self._sock is SocketState.HEALTHY
        self._sock = SocketState.IDLE
        self._ws_proof = None
        if immediate:
            self._backoff = self._backoff_factory()
            self._reconnect_at = now
        else:
            self._reconnect_at = now + max(0.0, next(self._backoff))
        if was_healthy:
            self._poller.ask_now()  # the next block must not wait for a new socket
        self._refresh_mode(now, reason, kind=kind)

    def _decide_silence(self, head_number: int, sent_at: float, now: float) -> None:
        """The probe's verdict: the chain moved (stale socket) or did not (stall, not our fault).

        No verdict if the socket spoke while the probe was on its way: it is not silent.
        """
        self._poller.silence_settled(now)
        if self._sock not in _OPEN_STATES or self._ws_activity_at > sent_at:
            return
        reference = self._ws_high if self._ws_high is not None else self._ws_ref
        silent_s = now - self._ws_activity_at
        if reference is None or head_number > reference:
            self.probes["stale"] += 1
            if self._sock is SocketState.SUBSCRIBED and self._http_ready_at() > now:
                # A fresh subscription that never delivered, on a socket that answers
                # requests, while HTTP backs off: closing it would leave no transport at all.
                # Keep it as the request channel (polls go over it); it is recycled once HTTP
                # answers again, or when it closes.
                self.probes["stale_kept"] += 1
                return
            self._socket_failed(
                now,
                f"socket silent for {silent_s:.2f}s while the chain moved to #{head_number}: stale",
                kind="socket_stale",
                close=True,
            )
        else:
            self.probes["not_moved"] += 1

    def _probe_failed(
        self, probe: Probe, reason: str, now: float, *, retry_after_s: float | None = None
    ) -> None:
        if probe.purpose == "health":
            if self._poller.health_answered(probe):
                self._ranking.record_http_failure(probe.endpoint, now,
                                                  retry_after_s=retry_after_s)
                self.probes["health_failed"] += 1
            return
        inflight = self._poller.probe_answered(probe)
        if inflight is None:
            return
        sent_at = inflight.sent_at
        if probe.transport == "ws":
            self._ws_request_failure(probe.endpoint, now, retry_after_s=retry_after_s)
        if probe.transport == "http":
            self._ranking.record_http_failure(probe.endpoint, now, retry_after_s=retry_after_s)
            self._http_ok = not self._http_all_failing()
            if self._sock in _OPEN_STATES and self._ws_activity_at <= sent_at:
                # No verdict yet: the socket may only have a silent subscription. Ask the
                # socket itself at once (HTTP now backs off, so the probe goes over it).
                self.probes["http_failed"] += 1
                return
        self._poller.silence_settled(now)
        self.probes["failed"] += 1
        failing = ("HTTP fails too" if probe.transport == "http"
                   else "HTTP backs off while the socket does not answer requests either")
        if self._sock is SocketState.HEALTHY and self._ws_activity_at <= sent_at:
            # Nothing answers with blocks: the node or the network is down. The socket is no
            # longer trusted, but it is not closed here: if it is dead, keepalive closes it; if
            # it was only quiet, its next block restores streaming with no reconnect at all.
            self._sock = SocketState.SUBSCRIBED
            self._ws_ref = self._ws_high
        self._refresh_mode(
            now,
            f"socket silent for {now - self._ws_activity_at:.2f}s and {failing} "
            f"({reason}): node or network down",
            kind="node_unreachable",
        )

    # ------------------------------------------------------------------ HTTP head reads

    def _read_head(
        self, read: HeadRead, head_hash: str, header: Header | None, now: float,
        latency_s: float | None,
    ) -> int | None:
        """Common part of poll and probe answers; returns the head number, None if unusable."""
        ep = read.endpoint
        over_http = read.transport == "http"
        head_hash = head_hash.lower()
        if header is None:
            if read.known_number is None or head_hash != read.known_hash:
                if over_http:
                    self._http_failure(ep, "head read came back without a header", now)
                return None
            if over_http:
                self._http_success(ep, latency_s, now)
            else:
                self._ranking.record_ws_request_success(ep, now)
            self._ranking.record_head(ep, read.known_number, now)
            self._check_stall(now)
            return read.known_number
        computed = block_hash(header)
        if computed != head_hash:
            if over_http:
                self._http_failure(ep, "finalized head header does not match its hash", now)
            self._verify.lie(ep, "served a finalized head whose header does not hash to it", now)
            return None
        if over_http:
            self._http_success(ep, latency_s, now)
        else:
            self._ranking.record_ws_request_success(ep, now)
        self._ranking.record_head(ep, header.number, now)
        self._note_progress(header.number, now)
        candidate = Candidate(
            header, computed, Source.POLL, ep, now + self._wall_offset_s, confirmed=True
        )
        outcome = self._merge.offer(candidate)
        if outcome == OfferOutcome.HELD:
            self._note_head(header.number, computed, now)
            if isinstance(read, Poll) and read.purpose == "hedge":
                self._poller.socket_behind = True  # HTTP had a block the socket had not brought
        else:
            if outcome == OfferOutcome.STALE:
                self._verify.check_far_below(ep, header.number, now)
            if self._head_known is None or header.number >= self._head_known[0]:
                self._head_known = (header.number, computed)
        self._absorb(now)
        self._check_stall(now)
        return header.number

    # ------------------------------------------------------------------ bookkeeping

    def _note_head(self, number: int, hash_: str, now: float) -> None:
        if self._head_known is None or number >= self._head_known[0]:
            self._head_known = (number, hash_)
        self._note_progress(number, now)

    def _note_progress(self, number: int, now: float) -> None:
        """The chain finalized ``number`` (a new best means finality moves, whether or not the
        block is one this feed delivers: a start above the head waits without a false stall)."""
        if self._best_seen is None or number > self._best_seen:
            self._best_seen = number
            self._progress_at = now
            # Only a new head means finality moved; delivering old blocks (a backfill while
            # the chain is halted) must not clear the flag, or it flaps with every batch.
            if self._modes is not None:
                self._emit(self._modes.set_stalled(False, f"block #{number} finalized", now))

    def _absorb(self, now: float) -> None:
        """Collect the merge's deliveries and rejections after an offer."""
        blocks = self._merge.drain()
        for rejection in self._merge.rejections():
            self._verify.on_rejection(rejection, now)
        proof = self._ws_proof
        for block in blocks:
            self.blocks_by_source[str(block.source)] += 1
            self._verify.resolve(block.number, block.hash, now)
            if proof is not None and block.hash == proof and self._sock_ep is not None:
                self._promote_socket(self._sock_ep, now)
        self._out_blocks.extend(blocks)
        self._verify.on_delivered(blocks)
        if blocks and self._modes is not None:
            self._ranking.best_number = blocks[-1].number
            self._verify.prune()

    def _send_chain_check(self, endpoint: str, number: int) -> CheckChain:
        """Issue a :class:`CheckChain` for the verifier (numbered in order with the rest)."""
        check = CheckChain(endpoint, self._next_seq(), number)
        self.requests["chain_check"] += 1
        self._out_actions.append(check)
        return check

    def _check_stall(self, now: float) -> None:
        """HTTP just confirmed the head; flag a stall if nothing new came for too long."""
        if self._modes is None:
            return
        quiet_s = now - self._progress_at
        if quiet_s >= self.config.stall_after_blocks * self._clock.interval_s:
            self._emit(self._modes.set_stalled(
                True, f"no block finalized for {quiet_s:.2f}s while connections are healthy", now
            ))

    def _http_success(self, endpoint: str, latency_s: float | None, now: float) -> None:
        back = self._ranking.record_http_success(endpoint, latency_s, now)
        if back:
            self._on_sign_of_life(endpoint, now)
        if self._http_ok is not True:
            self._http_ok = True
            self._refresh_mode(now, f"HTTP answering on {self._http_label(endpoint)}",
                               kind="http_ok")

    def _on_sign_of_life(self, endpoint: str, now: float) -> None:
        """``endpoint`` answered after failing: it is back. A socket waiting out its backoff
        is tried at once (evidence beats timers); the backoff starts over."""
        self._ranking[endpoint].ws_failures = 0
        if self._sock is SocketState.IDLE and (
            self._reconnect_at is None or self._reconnect_at > now
        ):
            self._backoff = self._backoff_factory()
            self._reconnect_at = now

    def _http_failure(
        self, endpoint: str, reason: str, now: float, *, retry_after_s: float | None = None
    ) -> float:
        """Back off ``endpoint``'s HTTP side; returns when it may be asked again."""
        retry_at = self._ranking.record_http_failure(endpoint, now, retry_after_s=retry_after_s)
        self._http_ok = not self._http_all_failing()
        self._refresh_mode(now, f"HTTP failing on {self._http_label(endpoint)}: {reason}",
                           kind="http_failed")
        return retry_at

    def _http_all_failing(self) -> bool:
        """True when no endpoint's HTTP side answered its last request: a dead alternate does
        not make a feed whose primary answers "disconnected"."""
        return all(self._ranking[ep].http_failures > 0 for ep in self._ranking.labels)

    def _ws_request_failure(
        self, endpoint: str, now: float, *, retry_after_s: float | None = None
    ) -> float:
        """Back off requests over ``endpoint``'s socket; returns when it may carry one again."""
        self.requests["ws_failed"] += 1
        return self._ranking.record_ws_request_failure(endpoint, now,
                                                       retry_after_s=retry_after_s)

    def _http_label(self, endpoint: str) -> str:
        return self._http_labels.get(endpoint, endpoint)

    def _refresh_mode(self, now: float, reason: str, *, kind: str) -> None:
        modes = self._modes
        if modes is None:
            return
        if self._sock is SocketState.HEALTHY:
            target = Mode.STREAMING
        elif modes.mode is Mode.STARTING and not self._start_settled(now):
            return
        elif self._http_ok is False:
            target = Mode.DISCONNECTED
        else:
            target = Mode.POLLING
        self._emit(modes.set(target, reason, now, kind=kind))

    def _start_settled(self, now: float) -> bool:
        if self._socket_ever_failed or self._http_ok is False:
            return True
        return now >= self._started_at + self._clock.deadline_s

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _emit(self, event: FeedEvent | None) -> None:
        if event is not None:
            self._out_events.append(event)
