"""The feed's timing profile for a fast test chain (every duration a multiple of T)."""

from __future__ import annotations

from typing import Any


def fast_config(block_time_s: float) -> dict[str, Any]:
    """``BlockFeed`` keyword arguments for a chain with ``block_time_s`` blocks, block lines off.

    Timeouts, pings, backoff and health checks scale with T, as the feed's own defaults do on
    a real chain, so a test at T = 0.1 s behaves like finney at 12 s, only faster.
    """
    t = float(block_time_s)
    if not t > 0:
        raise ValueError(f"block_time_s must be positive, got {block_time_s!r}")
    return {
        "block_time_s": t,
        "reconnect_initial_s": 0.5 * t,
        "reconnect_cap_s": 10 * t,
        "http_timeout_s": 5 * t,
        "open_timeout_s": 5 * t,
        "ping_interval_s": 3 * t,
        "ping_timeout_s": 3 * t,
        "health_check_interval_s": 5 * t,
        "log_blocks": False,
    }
