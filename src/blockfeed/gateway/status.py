"""What /status, /ready and the dashboard report, computed from a ``FeedStatus`` snapshot.

The feed keeps totals (seconds per mode, transitions); the gateway adds the one thing a person
wants to *see*: a timeline of modes over the recent hours, recorded from the feed's mode events.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Any

from blockfeed.gateway.hub import block_payload, event_payload
from blockfeed.gateway.protocols import StatusLike
from blockfeed.types import FeedEvent, Mode, ModeChanged, RuntimeUpgraded
from blockfeed.util.redact import redact_text, redact_url

TIMELINE_KEEP_S = 24 * 3600.0
"""The timeline covers at most the last 24 hours."""
TIMELINE_MAX_SEGMENTS = 5000
"""A flapping connection must not grow memory without bound."""
RECENT_EVENTS_SHOWN = 50

_URLISH = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of time spent in one mode; ``end`` is ``None`` for the current one."""

    mode: str
    start: float
    end: float | None


class ModeTimeline:
    """Mode segments recorded from mode-change events, trimmed to the recent past."""

    def __init__(
        self,
        *,
        initial_mode: Mode | str,
        started_at: float,
        keep_s: float = TIMELINE_KEEP_S,
        max_segments: int = TIMELINE_MAX_SEGMENTS,
    ) -> None:
        self._keep_s = keep_s
        self._starts: deque[tuple[float, str]] = deque([(started_at, str(initial_mode))],
                                                      maxlen=max_segments)

    @property
    def current(self) -> str:
        return self._starts[-1][1]

    def record(self, mode: Mode | str, at: float) -> None:
        """Note that the feed entered ``mode`` at ``at`` (repeats of the same mode are ignored)."""
        mode = str(mode)
        if mode == self.current:
            return
        at = max(at, self._starts[-1][0])  # never let a late event run time backwards
        self._starts.append((at, mode))

    def observe(self, event: FeedEvent) -> None:
        """Feed event hook: record the new mode of every mode change."""
        if isinstance(event, ModeChanged):
            self.record(event.new_mode, event.at)

    def segments(self, now: float) -> list[Segment]:
        """Segments overlapping the last ``keep_s`` seconds, oldest first, clipped to it."""
        horizon = now - self._keep_s
        starts = list(self._starts)
        out: list[Segment] = []
        for i, (start, mode) in enumerate(starts):
            end = starts[i + 1][0] if i + 1 < len(starts) else None
            if end is not None and end <= horizon:
                continue
            out.append(Segment(mode=mode, start=max(start, horizon), end=end))
        return out


def scrub(value: Any) -> Any:
    """Make event details JSON-safe and mask any URL in them (they may carry API keys)."""
    if isinstance(value, str):
        return redact_url(value) if _URLISH.match(value) else redact_text(value)
    if isinstance(value, dict):
        return {str(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


def event_json(event: FeedEvent) -> dict[str, Any]:
    """A feed event for JSON output, with endpoint and details scrubbed."""
    scrubbed: dict[str, Any] = scrub(event_payload(event))
    return scrubbed


def epoch_info(number: int, epoch_length: int) -> dict[str, Any]:
    """Epoch and position as in the log line ``Epoch 19278 | Block 349/360``."""
    position = number % epoch_length
    return {
        "length": epoch_length,
        "epoch": number // epoch_length,
        "block_in_epoch": position,
        "label": f"Block {position}/{epoch_length}",
        "progress": position / epoch_length,
    }


def readiness(status: StatusLike, *, max_block_age_s: float) -> tuple[bool, str]:
    """Whether the gateway serves fresh blocks, and why not."""
    error = getattr(status, "error", None)
    if error:
        return False, f"the feed stopped: {error}"
    if status.mode == Mode.DISCONNECTED:
        return False, "disconnected: no endpoint answers"
    if status.last_block is None:
        if status.mode == Mode.STARTING:
            return False, "starting: no block received yet"
        return False, "no block received yet"
    age = status.last_block_age_s
    if age is not None and age > max_block_age_s:
        number = status.last_block.number
        why = f"last block #{number} is {age:.0f} s old (limit {max_block_age_s:g} s)"
        if status.finality_stalled:
            why += "; chain finality has stalled"
        return False, why
    return True, f"{status.mode}: last block #{status.last_block.number}"


def status_payload(
    status: StatusLike,
    *,
    now: float,
    network: str,
    epoch_length: int,
    timeline: ModeTimeline,
    events: list[FeedEvent],
    sse_clients: int,
    ready: tuple[bool, str],
) -> dict[str, Any]:
    """The /status document (also the dashboard's initial state)."""
    total_s = sum(status.mode_seconds.values())
    percent = {
        mode: (100.0 * seconds / total_s if total_s > 0 else 0.0)
        for mode, seconds in status.mode_seconds.items()
    }
    last = status.last_block
    events = events[-RECENT_EVENTS_SHOWN:]
    return {
        "network": network,
        "mode": str(status.mode),
        "finality_stalled": status.finality_stalled,
        "ready": ready[0],
        "ready_reason": ready[1],
        "endpoint": redact_url(status.endpoint) if status.endpoint else None,
        "last_block": block_payload(last, epoch_length) if last is not None else None,
        "last_block_age_s": status.last_block_age_s,
        "epoch_length": epoch_length,
        "epoch": epoch_info(last.number, epoch_length) if last is not None else None,
        "block_interval_s": status.block_interval_s,
        "started_at": status.started_at,
        "uptime_s": max(0.0, now - status.started_at),
        "server_time": now,
        "mode_seconds": dict(status.mode_seconds),
        "mode_percent": percent,
        "reconnects": status.reconnects,
        "blocks_by_source": dict(status.blocks_by_source),
        "transitions": dict(status.transitions),
        "probes": dict(status.probes),
        "malformed_frames": status.malformed_frames,
        "requests": dict(getattr(status, "requests", {})),
        "error": getattr(status, "error", None),
        "endpoints": scrub(list(status.endpoints)),
        "subscribers": status.subscribers,
        "sse_clients": sse_clients,
        "timeline": [
            {"mode": s.mode, "start": s.start, "end": s.end} for s in timeline.segments(now)
        ],
        "recent_events": [event_json(e) for e in reversed(events)],
        # With --contents: the runtime of the last block, and the latest upgrade still recent.
        "spec_version": last.spec_version if last is not None else None,
        "runtime_upgraded": next(
            (event_json(e) for e in reversed(events) if isinstance(e, RuntimeUpgraded)), None
        ),
    }
