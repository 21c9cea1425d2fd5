"""The feed's timing profile for a fast test chain (every duration a multiple of T)."""

from __future__ import annotations

from typing import Any

from blockfeed.feed.config import FeedConfig


def fast_config(block_time_s: float, /, **overrides: Any) -> FeedConfig:
    """``FeedConfig.for_block_time(block_time_s, log_blocks=False)``: the feed's settings for a
    chain with ``block_time_s`` blocks, without a log line per block.

    Timeouts, pings, backoff and health checks scale with T, as the feed's defaults do on a real
    chain, so a test at T = 0.1 s behaves like finney at 12 s, only faster. ``overrides`` are
    FeedConfig field names applied last (``ConfigError`` on an unknown one); for a feed that is
    not told T, keep the T-scaled timings and pass ``block_time_s=None``.
    """
    return FeedConfig.for_block_time(block_time_s, **{"log_blocks": False, **overrides})
