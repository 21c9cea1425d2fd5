"""The feed's mode, the ``finality_stalled`` flag, and the time spent in each mode.

Every change carries a reason and is counted under ``"<from>-><to>:<reason kind>"``, so a status
page can say not only *that* the feed left streaming but *why*, and how often.
"""

from __future__ import annotations

from collections import Counter

from blockfeed.types import FeedEvent, FinalityResumed, FinalityStalled, Mode, ModeChanged


class ModeMachine:
    """Current mode + stalled flag, with per-mode time accounting; emits :class:`FeedEvent`."""

    def __init__(self, now: float) -> None:
        self.mode = Mode.STARTING
        self.finality_stalled = False
        self._entered_at = now
        self._seconds: dict[str, float] = {str(mode): 0.0 for mode in Mode}
        self.transitions: Counter[str] = Counter()

    def set(self, mode: Mode, reason: str, now: float, *, kind: str = "") -> FeedEvent | None:
        """Switch to ``mode`` because of ``reason``; returns the event, or None if unchanged.

        ``kind`` is a short, stable reason key for counters (``reason`` may hold details such
        as block numbers); it defaults to ``reason``.
        """
        if mode == self.mode:
            return None
        old = self.mode
        self._account(now)
        self.mode = mode
        self.transitions[f"{old}->{mode}:{kind or reason}"] += 1
        return ModeChanged(at=now, reason=reason, old_mode=old, new_mode=mode)

    def set_stalled(self, stalled: bool, reason: str, now: float) -> FeedEvent | None:
        """Raise or clear ``finality_stalled``; returns the event, or None if unchanged."""
        if stalled == self.finality_stalled:
            return None
        self.finality_stalled = stalled
        event_type = FinalityStalled if stalled else FinalityResumed
        return event_type(at=now, reason=reason, mode=self.mode)

    def seconds(self, now: float) -> dict[str, float]:
        """Seconds spent in each mode so far, including the current stretch."""
        out = dict(self._seconds)
        out[str(self.mode)] += max(0.0, now - self._entered_at)
        return out

    def _account(self, now: float) -> None:
        self._seconds[str(self.mode)] += max(0.0, now - self._entered_at)
        self._entered_at = now
