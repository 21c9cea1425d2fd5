"""A request budget per endpoint: a token bucket that caps what the feed may send.

The core already backs off on every error (HTTP and socket requests alike, ``Retry-After``
honoured), which is what keeps a failing provider from being hammered. The bucket is the
safety net under that: whatever the reason (a bug, a pathological mix of faults), one endpoint
never gets more than ``burst`` requests at once nor more than ``rate`` per second on average.
The rate follows the learned block time: ``REQUESTS_PER_BLOCK / T`` within ``MIN_RATE`` and
``MAX_RATE`` per second, generous for normal work (a poll, a probe and a health check per
block, plus backfill batches of 500 blocks per two requests).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

REQUESTS_PER_BLOCK = 10.0
MIN_RATE = 2.0
MAX_RATE = 50.0
"""Requests per second an endpoint may get on average (bounds of ``REQUESTS_PER_BLOCK / T``)."""
BURST = 60
"""Requests an idle endpoint may get at once (a startup, a catch-up)."""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_at: float
    sent: int = 0
    throttled: int = 0


class RequestBudget:
    """Token buckets keyed by endpoint label; :meth:`acquire` waits for a token."""

    def __init__(
        self,
        block_time_s: Callable[[], float],
        *,
        clock: Callable[[], float],
        burst: int = BURST,
    ) -> None:
        self._block_time_s = block_time_s
        self._clock = clock
        self._burst = burst
        self._buckets: dict[str, _Bucket] = {}

    def rate(self) -> float:
        """Tokens per second, from the learned block time."""
        return min(max(REQUESTS_PER_BLOCK / self._block_time_s(), MIN_RATE), MAX_RATE)

    def _refill(self, label: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(label)
        if bucket is None:
            bucket = self._buckets[label] = _Bucket(float(self._burst), now)
        bucket.tokens = min(float(self._burst),
                            bucket.tokens + (now - bucket.updated_at) * self.rate())
        bucket.updated_at = now
        return bucket

    def wait_s(self, label: str) -> float:
        """How long the next request to ``label`` would wait (0: a token is there)."""
        bucket = self._refill(label)
        return 0.0 if bucket.tokens >= 1 else (1 - bucket.tokens) / self.rate()

    def take(self, label: str) -> bool:
        """Take a token if one is there (no waiting)."""
        bucket = self._refill(label)
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        bucket.sent += 1
        return True

    async def acquire(self, label: str) -> None:
        """Wait until ``label`` may get one more request, then take the token."""
        throttled = False
        while not self.take(label):
            if not throttled:
                throttled = True
                self._buckets[label].throttled += 1
            await asyncio.sleep(self.wait_s(label))

    def snapshot(self) -> dict[str, dict[str, float]]:
        """Per endpoint: requests sent, requests that had to wait, tokens left."""
        return {
            label: {"sent": b.sent, "throttled": b.throttled,
                    "tokens": round(self._refill(label).tokens, 2)}
            for label, b in self._buckets.items()
        }
