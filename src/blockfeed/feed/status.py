"""FeedStatus: a frozen snapshot of how the feed is doing, for status pages and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from blockfeed.types import Block, FeedEvent, Mode


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """Everything a dashboard or health check needs, taken at one instant. Safe to share."""

    mode: Mode
    finality_stalled: bool
    endpoint: str | None
    """The endpoint the socket is on (redacted), None while there is no socket."""
    last_block: Block | None
    last_block_age_s: float | None
    """Seconds since the last block was received (None before the first)."""
    started_at: float
    """Unix time the feed started."""
    mode_seconds: dict[str, float]
    reconnects: int
    blocks_by_source: dict[str, int]
    transitions: dict[str, int]
    """Mode changes by ``"<from>-><to>:<reason kind>"``."""
    probes: dict[str, int]
    malformed_frames: int
    block_interval_s: float
    """Learned block interval (the configured block time until learned)."""
    endpoints: list[dict[str, Any]]
    """Health of each endpoint (labels are redacted)."""
    subscribers: int
    recent_events: list[FeedEvent] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)
    """HTTP reads and socket attempts by purpose (``poll``, ``hedge``, ``probe``, ``range``...)."""
    request_budget: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per endpoint: requests ``sent``, requests ``throttled`` by the budget (they waited),
    ``tokens`` left (see :mod:`blockfeed.feed.budget`)."""
    block_time_prior_s: float | None = None
    """The block time assumed before observation: the hint, or the runtime's declared slot."""
    error: str | None = None
    """Set when the feed stopped because of an error (e.g. a StoreError), or while it cannot
    deliver for a known, lasting reason it keeps retrying (the next block is below every
    endpoint's history, no endpoint extends the checkpoint, the endpoints disagree on the start
    block); cleared when blocks flow again."""
