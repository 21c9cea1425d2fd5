"""When the next block is due: a learned block interval and phase.

The follower needs two numbers about the chain's rhythm:

* the **interval** between consecutive block numbers, learned from recent arrivals. Finalized
  heads often skip numbers (one GRANDPA round finalizes several blocks), so an arrival ``k``
  numbers after the previous one counts as ``k`` intervals of ``elapsed / k``; the median of the
  recent per-number intervals ignores the odd late or early arrival.
* the **phase**: an estimate of when a given number appears, so the poller can ask just after it
  is due instead of on a fixed tick.

From these come the silence deadline (about 1.5 x interval, between a floor and a ceiling) and
the expected time of any future number.

The configured block time is only a **prior** (a hint, or the runtime's declared slot
duration): observation rules. Bounds are absolute (:data:`MIN_INTERVAL_S`,
:data:`MAX_INTERVAL_S`), never relative to the prior, so a chain that is much faster or slower
than it was said to be is followed at its real pace. Until :data:`TRUST_AFTER_SAMPLES` samples
exist, two samples shorter than the prior win over it (the larger of them) while longer ones
wait for confirmation (one late arrival must not stretch every timer).
"""

from __future__ import annotations

import statistics
from collections import deque

DEFAULT_WINDOW = 16
DEFAULT_DEADLINE_FACTOR = 1.5
MIN_INTERVAL_S = 0.01
"""Interval and deadline never drop below this (a sanity bound, not a tuning value) ..."""
MAX_INTERVAL_S = 600.0
"""... nor rise above this."""
TRUST_AFTER_SAMPLES = 3
"""From this many interval samples on, their median rules in both directions."""


class BlockClock:
    """Learned block interval + phase; fed with ``observe(number, at)``, pure arithmetic."""

    def __init__(
        self,
        *,
        block_time_s: float,
        window: int = DEFAULT_WINDOW,
        deadline_factor: float = DEFAULT_DEADLINE_FACTOR,
        floor_s: float | None = None,
        ceiling_s: float | None = None,
    ) -> None:
        if block_time_s <= 0:
            raise ValueError("block_time_s must be positive")
        if window < 1:
            raise ValueError("window must be at least 1")
        self._configured_s = block_time_s
        self._floor_s = floor_s if floor_s is not None else MIN_INTERVAL_S
        self._ceiling_s = ceiling_s if ceiling_s is not None else MAX_INTERVAL_S
        if not 0 < self._floor_s <= self._ceiling_s:
            raise ValueError("need 0 < floor_s <= ceiling_s")
        self._deadline_factor = deadline_factor
        self._intervals: deque[float] = deque(maxlen=window)
        self._anchor: tuple[int, float] | None = None
        self._observed: tuple[int, float] | None = None

    @property
    def interval_s(self) -> float:
        """Median recent per-number interval (the prior until data arrives; see the module
        docstring for how the first samples and the prior combine)."""
        if not self._intervals:
            return self._clamp(self._configured_s)
        samples = len(self._intervals)
        if samples < TRUST_AFTER_SAMPLES:
            # Few samples: a shorter pace than the prior is believed once two samples agree on
            # it (the larger of them: one arrival right after a poll is not a block time); a
            # longer one waits for confirmation (one late arrival must not stretch timers).
            if samples < 2:
                return self._clamp(self._configured_s)
            return self._clamp(min(max(self._intervals), self._configured_s))
        return self._clamp(statistics.median(self._intervals))

    @property
    def prior_s(self) -> float:
        """The block time assumed before observation (hint or declared slot duration)."""
        return self._configured_s

    @property
    def samples(self) -> int:
        """How many interval samples the current estimate rests on."""
        return len(self._intervals)

    def set_prior(self, block_time_s: float) -> None:
        """Replace the prior (e.g. with the runtime's declared slot duration, once known)."""
        if not block_time_s > 0:
            raise ValueError("block_time_s must be positive")
        self._configured_s = block_time_s

    @property
    def deadline_s(self) -> float:
        """How long a healthy source may stay silent: ``factor x interval``, clamped."""
        return self._clamp(self._deadline_factor * self.interval_s)

    @property
    def anchor(self) -> tuple[int, float] | None:
        """The latest ``(number, appeared_at)`` estimate, or None before any observation."""
        return self._anchor

    def observe(self, number: int, at: float) -> None:
        """Record that ``number`` appeared at ``at`` (a measurement, not a guess).

        Numbers not above the previous measurement are ignored. A jump of ``k`` numbers
        contributes one sample of ``elapsed / k``. Interval samples come only from pairs of
        measurements, never from a guessed anchor (see :meth:`shift_anchor`).
        """
        if self._observed is not None:
            prev_number, prev_at = self._observed
            if number <= prev_number:
                return
            elapsed = at - prev_at
            if elapsed > 0:
                self._intervals.append(elapsed / (number - prev_number))
        self._observed = (number, at)
        if self._anchor is None or number >= self._anchor[0]:
            self._anchor = (number, at)

    def shift_anchor(self, number: int, at: float) -> None:
        """Guess when ``number`` appeared, for the phase only (no interval sample).

        Used by the poller after a first-try hit, which only bounds the time from above.
        """
        self._anchor = (number, at)

    def expected_at(self, number: int) -> float | None:
        """Estimated time ``number`` appears, or None before any observation."""
        if self._anchor is None:
            return None
        anchor_number, anchor_at = self._anchor
        return anchor_at + (number - anchor_number) * self.interval_s

    def _clamp(self, value_s: float) -> float:
        return min(max(value_s, self._floor_s), self._ceiling_s)
