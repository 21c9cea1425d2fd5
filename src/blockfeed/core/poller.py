"""Poll timing: *when* to read the finalized head, as a small sans-I/O state object.

The follower reads the head (``chain_getFinalizedHead`` + ``chain_getHeader``) for three
reasons, and this module owns the schedule and the read in flight for each:

* the **poll** (socket down) and the **hedge** (socket up, block late): phase-locked to the
  learned block time ``T``. Ask ``poll_margin x T`` after the next block is due (a hedge
  ``hedge_margin x T`` after), then every ``poll_retry x T`` for ``poll_late_window x T``, then
  once per slot, and after ``poll_slow_after_blocks`` empty slots (a halt) every
  ``poll_retry_growth x lateness``, at most a deadline apart. A miss followed by a hit a short
  retry apart brackets the block's appearance: a measurement for the :class:`BlockClock`. A
  first-try hit only bounds it from above, so the phase is pulled a little earlier.
* the **silence probe**: one per deadline (``1.5 x T``) while the open socket says nothing.
* **health probes** of idle endpoints, every ``health_check_blocks x T`` (0.5-30 s).

It also paces backfill retries (``range_retry x T`` after a failure; doubling after answers
that bring nothing, at most 4 deadlines apart) and scales the HTTP error backoff cap and the
"fresh evidence" window to ``T``.

*Where* a read goes (which endpoint, HTTP or the socket) and *what an answer means* (merge,
modes, stale socket or stalled chain) stay with the follower, which passes in what the schedule
depends on (``streaming``; ``serialized``: HTTP fails everywhere, so the poll and the probe take
turns) and, once, a ``ready_at()`` callback: when some channel may next carry a read (the
endpoints' backoff, asked only when a due time is computed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from blockfeed.core.actions import HeadRead, Poll, Probe
from blockfeed.core.deadline import BlockClock

HTTP_RETRY_CAP_MIN_S = 0.25
HTTP_RETRY_CAP_MAX_S = 15.0
"""Bounds of the learned HTTP retry cap (``http_retry_cap_blocks x T``)."""
HEALTH_CHECK_MIN_S = 0.5
HEALTH_CHECK_MAX_S = 30.0
"""Bounds of the learned idle-endpoint check period (``health_check_blocks x T``)."""


class PollConfig(Protocol):
    """The timing fields the poller reads (``FollowerConfig`` has them; fractions of T)."""

    @property
    def poll_margin(self) -> float: ...
    @property
    def poll_retry(self) -> float: ...
    @property
    def poll_late_window(self) -> float: ...
    @property
    def poll_slow_after_blocks(self) -> float: ...
    @property
    def poll_retry_growth(self) -> float: ...
    @property
    def phase_pull(self) -> float: ...
    @property
    def hedge(self) -> bool: ...
    @property
    def hedge_margin(self) -> float: ...
    @property
    def http_retry_cap_s(self) -> float | None: ...
    @property
    def http_retry_cap_blocks(self) -> float: ...
    @property
    def health_check_interval_s(self) -> float | None: ...
    @property
    def health_check_blocks(self) -> float: ...
    @property
    def fresh_blocks(self) -> float: ...
    @property
    def range_retry(self) -> float: ...


@dataclass(slots=True)
class InFlight:
    """A head read on its way: when it was sent and what number it hoped to see."""

    read: HeadRead
    sent_at: float
    target: int | None


class Poller:
    """Due times of polls, hedges, silence probes and health probes; the reads in flight.

    Shares the follower's :class:`BlockClock` (reads ``T`` and the phase; after a first-try
    hit it shifts the phase anchor). Measurements go back through :meth:`learn`'s return value,
    so the follower can report a changed block time.
    """

    def __init__(
        self, clock: BlockClock, config: PollConfig, *, ready_at: Callable[[], float]
    ) -> None:
        """``ready_at()``: earliest time a head read can go out on some channel."""
        self._clock = clock
        self.config = config
        self._ready_at = ready_at
        # poll / hedge
        self._poll: InFlight | None = None
        self._asap = False
        self.socket_behind = False
        """A hedge found a block the socket had not brought: hedge every retry, not per slot,
        until the socket brings a new block again."""
        self._target: int | None = None
        self._misses = 0
        self._last_miss_at = 0.0
        self._first_try_hits = 0
        # silence probe
        self._probe: InFlight | None = None
        self._silence_base = 0.0
        # health probes
        self._health: dict[str, InFlight] = {}
        self._health_next_at = 0.0
        # backfill retries
        self._range_retry_at = 0.0
        self._range_stalls = 0

    # ------------------------------------------------------------------ T-scaled durations

    def health_interval_s(self) -> float:
        """How often idle endpoints are probed: configured, or ``health_check_blocks x T``."""
        return self._health_interval_s(self._clock.interval_s)

    def ranking_limits(self) -> tuple[float, float]:
        """``(http_retry_cap_s, fresh_s)`` for the current T: the cap of the HTTP error backoff
        (configured, or ``http_retry_cap_blocks x T``), and how recent a sign of life must be
        to count as fresh (``fresh_blocks x T``, at least two health rounds)."""
        cfg = self.config
        interval = self._clock.interval_s
        retry_cap_s = cfg.http_retry_cap_s or min(
            max(cfg.http_retry_cap_blocks * interval, HTTP_RETRY_CAP_MIN_S), HTTP_RETRY_CAP_MAX_S
        )
        fresh_s = max(cfg.fresh_blocks * interval, 2 * self._health_interval_s(interval))
        return retry_cap_s, fresh_s

    def _health_interval_s(self, interval: float) -> float:
        cfg = self.config
        if cfg.health_check_interval_s is not None:
            return cfg.health_check_interval_s
        return min(max(cfg.health_check_blocks * interval, HEALTH_CHECK_MIN_S),
                   HEALTH_CHECK_MAX_S)

    def rescale(self, now: float, old_s: float, new_s: float) -> None:
        """T moved from ``old_s`` to ``new_s``: waits planned in units of the old T follow the
        new one (a backfill retry planned with a 12 s prior must not hold a 0.2 s chain)."""
        if self._range_retry_at > now:
            self._range_retry_at = now + (self._range_retry_at - now) * new_s / old_s
        if self._health_next_at > now:
            self._health_next_at = now + (self._health_next_at - now) * new_s / old_s

    # ------------------------------------------------------------------ poll and hedge

    def ask_now(self) -> None:
        """The next poll goes out as soon as a channel is ready (start, a proven socket lost)."""
        self._asap = True

    @property
    def polling(self) -> bool:
        """A poll or hedge is in flight."""
        return self._poll is not None

    def poll_due(
        self,
        *,
        streaming: bool,
        stalled: bool,
        known_top: int | None,
        serialized: bool,
    ) -> float | None:
        """When the poller (``streaming``: the hedge) should ask next; None if it should not.

        ``known_top``: the highest number known from any source (the poller waits for the one
        after it). A hedge never goes out at or after the silence probe.
        """
        if self._poll is not None:
            return None
        if self._probe is not None and serialized:
            return None
        ready_at = self._ready_at()
        if self._asap:
            return ready_at
        cfg = self.config
        if streaming and (not cfg.hedge or stalled):
            return None  # a halted chain is watched by the silence probe alone
        target = self._sync_target(known_top)
        expected = None if target is None else self._clock.expected_at(target)
        if expected is None:
            return ready_at  # nothing known yet: ask now
        interval = self._clock.interval_s
        margin = cfg.hedge_margin if streaming else cfg.poll_margin
        if self._misses == 0:
            due = expected + margin * interval
        elif streaming and not self.socket_behind:
            # A trusted socket that is on time brings a late block itself: one hedge per slot.
            slot = int(max(0.0, self._last_miss_at - expected) // interval)
            due = expected + (slot + 1 + margin) * interval
        else:
            due = self._retry_due(expected, self._last_miss_at, margin)
        if streaming:
            silence_due = self.silence_due(socket_open=True, serialized=serialized)
            if silence_due is not None and due >= silence_due:
                return None  # the silence probe decides first; no hedging into a halt
        return max(due, ready_at)

    def _retry_due(self, expected: float, missed_at: float, margin: float) -> float:
        """Next ask after a miss: quick retries in the block's own slot, then once per slot.

        Within ``poll_late_window x T`` of when it was due the block is probably just late:
        retry every ``poll_retry x T``. Later, GRANDPA most likely holds it to finalize it with
        the next ones: ask just after each following slot, and once more ``poll_retry x T``
        later. Once nothing came for ``poll_slow_after_blocks`` slots the chain is halted: ask
        every ``poll_retry_growth x lateness``, at most a deadline apart.
        """
        cfg = self.config
        interval = self._clock.interval_s
        lateness = max(0.0, missed_at - expected)
        if lateness >= cfg.poll_slow_after_blocks * interval:
            retry = max(cfg.poll_retry * interval, cfg.poll_retry_growth * lateness)
            return missed_at + min(retry, self._clock.deadline_s)
        slot = int(lateness // interval)
        into_slot = lateness - slot * interval
        window = cfg.poll_late_window if slot == 0 else 1.5 * cfg.poll_retry
        if into_slot < window * interval:
            return missed_at + cfg.poll_retry * interval
        due = expected + (slot + 1 + margin) * interval
        return max(due, missed_at + cfg.poll_retry * interval)

    def _sync_target(self, known_top: int | None) -> int | None:
        """The poller waits for the number after the highest one known from any source."""
        if known_top is None:
            return None
        if self._target is None or self._target <= known_top:
            self._target = known_top + 1
            self._misses = 0
        return self._target

    def poll_sent(self, poll: Poll, now: float) -> None:
        """``poll`` went out at ``now``: it is the one in flight."""
        self._poll = InFlight(poll, now, self._target)
        self._asap = False

    def poll_answered(self, poll: Poll) -> InFlight | None:
        """Match an answer (or failure) with the poll in flight and clear it; None: not ours."""
        inflight = self._poll
        if inflight is None or inflight.read != poll:
            return None
        self._poll = None
        return inflight

    def learn(self, head_number: int, inflight: InFlight) -> tuple[int, float] | None:
        """Learn the chain's phase from a poll's answer: a miss bounds it from below, a hit
        from above. Returns ``(number, appeared_at)`` when the hit brackets the block's
        appearance (a measurement the caller feeds to the clock), else None."""
        target, sent_at = inflight.target, inflight.sent_at
        if target is not None and head_number < target:
            if self._target == target:
                self._misses += 1
                self._last_miss_at = sent_at
            return None
        interval = self._clock.interval_s
        bracketed = (
            self._misses > 0
            and target is not None
            and self._target == target
            and sent_at - self._last_miss_at <= 1.5 * self.config.poll_retry * interval
        )
        measured: tuple[int, float] | None = None
        if bracketed:
            # Appeared between the last miss and this hit, a short retry apart: a measurement.
            measured = (head_number, (self._last_miss_at + sent_at) / 2)
            self._first_try_hits = 0
        else:
            self._first_try_hits += 1
            expected = self._clock.expected_at(head_number)
            # Pull on every other first-try hit, harder after long runs (startup, drift).
            hits = self._first_try_hits
            pull = 0.0 if hits % 2 else self.config.phase_pull * interval * 2 ** min(hits // 4, 2)
            base = sent_at if expected is None else min(expected, sent_at)
            anchor = self._clock.anchor
            if anchor is None or head_number >= anchor[0]:
                self._clock.shift_anchor(head_number, base - pull)
        self._misses = 0
        self._target = head_number + 1
        return measured

    # ------------------------------------------------------------------ silence probe

    def heard_socket(self, now: float) -> None:
        """The socket spoke (subscribed, or a notification): the silence deadline restarts."""
        self._silence_base = now

    def silence_settled(self, now: float) -> None:
        """A silence probe ended (verdict or failure): the next one is a deadline later."""
        self._silence_base = max(now, self._silence_base)

    @property
    def probing(self) -> bool:
        """A silence probe is in flight."""
        return self._probe is not None

    def silence_due(self, *, socket_open: bool, serialized: bool) -> float | None:
        """When the silent open socket gets its probe; None: no socket, or a read is out."""
        if not socket_open or self._probe is not None:
            return None
        if self._poll is not None and serialized:
            return None
        return max(self._silence_base + self._clock.deadline_s, self._ready_at())

    def probe_sent(self, probe: Probe, now: float) -> None:
        """The silence ``probe`` went out at ``now``."""
        self._probe = InFlight(probe, now, None)

    def probe_answered(self, probe: Probe) -> InFlight | None:
        """Match an answer (or failure) with the silence probe in flight and clear it."""
        inflight = self._probe
        if inflight is None or inflight.read != probe:
            return None
        self._probe = None
        return inflight

    # ------------------------------------------------------------------ health probes

    @property
    def health_next_at(self) -> float:
        """When the next round of health probes is due."""
        return self._health_next_at

    def schedule_health(self, now: float) -> None:
        """The first round is one health interval after ``now``."""
        self._health_next_at = now + self.health_interval_s()

    def check_health_now(self, now: float) -> None:
        """Probe the other endpoints at once (the socket just failed: find one alive)."""
        self._health_next_at = now

    def health_round(self, now: float) -> bool:
        """True if a round is due at ``now`` (and plan the next one)."""
        if now < self._health_next_at:
            return False
        self._health_next_at = now + self.health_interval_s()
        return True

    def health_pending(self, endpoint: str) -> bool:
        """A health probe of ``endpoint`` is in flight."""
        return endpoint in self._health

    def health_sent(self, probe: Probe, now: float) -> None:
        """The health ``probe`` went out at ``now``."""
        self._health[probe.endpoint] = InFlight(probe, now, None)

    def health_answered(self, probe: Probe) -> bool:
        """Match an answer (or failure) with its endpoint's health probe and clear it."""
        inflight = self._health.get(probe.endpoint)
        if inflight is None or inflight.read != probe:
            return False
        del self._health[probe.endpoint]
        return True

    # ------------------------------------------------------------------ backfill retries

    @property
    def range_retry_at(self) -> float:
        """Earliest time the next backfill request may go out (channel readiness aside)."""
        return self._range_retry_at

    def range_answered(self, now: float, *, progressed: bool) -> None:
        """A backfill was answered. No progress (nobody has these numbers yet, or they were
        wrong): wait ``range_retry x T``, doubling per fruitless answer, at most 4 deadlines,
        so a start below a pruned node's history does not turn into a request storm."""
        if progressed:
            self._range_stalls = 0
            return
        self._range_stalls += 1
        growth = 2 ** min(self._range_stalls, 6)
        wait = self.config.range_retry * self._clock.interval_s * growth
        self._range_retry_at = now + min(wait, self._clock.deadline_s * 4)

    def range_failed(
        self, now: float, *, over_http: bool, channel_retry_at: float, socket_can_fetch: bool
    ) -> None:
        """A backfill failed on a channel that may carry requests again at
        ``channel_retry_at``. Over HTTP: retry ``range_retry x T`` later, or sooner if that
        channel allows, or at once over the open socket (``socket_can_fetch``). Over the
        socket: not before its own backoff ends."""
        retry_at = now + self.config.range_retry * self._clock.interval_s
        if over_http:
            retry_at = now if socket_can_fetch else min(retry_at, channel_retry_at)
        else:
            retry_at = max(retry_at, channel_retry_at)
        self._range_retry_at = retry_at
