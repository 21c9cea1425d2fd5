"""A request budget per endpoint: a token bucket that caps what the feed may send.

The core already backs off on every error (HTTP and socket requests alike, ``Retry-After``
honoured), which is what keeps a failing provider from being hammered. The bucket is the
safety net under that: whatever the reason (a bug, a pathological mix of faults), one endpoint
never gets more than ``burst`` requests at once nor more than ``rate`` per second on average.
The rate of head reads, probes and checks follows the learned block time:
``REQUESTS_PER_BLOCK / T`` within ``MIN_RATE`` and ``MAX_RATE`` per second, generous for a
poll, a probe and a health check per block. Backfill batches (500 blocks per two requests)
have a bucket of their own with a fixed ``BULK_RATE``: catching up is bounded by the node's
speed, not by the block time, and a 12 s chain must still backfill at thousands of blocks per
second (a failing endpoint's batches are paced by the core's backoff long before this).
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
BULK_RATE = 20.0
"""Backfill requests per second per endpoint: 5,000 blocks/s at 500 blocks per 2 requests."""
BULK_SUFFIX = "#backfill"
"""The key of an endpoint's backfill bucket (its label plus this)."""


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

    def rate(self, key: str = "") -> float:
        """Tokens per second of bucket ``key``: backfill buckets a fixed rate, the others one
        from the learned block time."""
        if key.endswith(BULK_SUFFIX):
            return BULK_RATE
        return min(max(REQUESTS_PER_BLOCK / self._block_time_s(), MIN_RATE), MAX_RATE)

    def _refill(self, key: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self._burst), now)
        bucket.tokens = min(float(self._burst),
                            bucket.tokens + (now - bucket.updated_at) * self.rate(key))
        bucket.updated_at = now
        return bucket

    def wait_s(self, label: str, *, bulk: bool = False) -> float:
        """How long the next request to ``label`` would wait (0: a token is there)."""
        key = _key(label, bulk)
        bucket = self._refill(key)
        return 0.0 if bucket.tokens >= 1 else (1 - bucket.tokens) / self.rate(key)

    def take(self, label: str, *, bulk: bool = False) -> bool:
        """Take a token if one is there (no waiting); ``bulk``: from the backfill bucket."""
        bucket = self._refill(_key(label, bulk))
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        bucket.sent += 1
        return True

    async def acquire(self, label: str, *, bulk: bool = False) -> None:
        """Wait until ``label`` may get one more request, then take the token."""
        throttled = False
        while not self.take(label, bulk=bulk):
            if not throttled:
                throttled = True
                self._buckets[_key(label, bulk)].throttled += 1
            await asyncio.sleep(self.wait_s(label, bulk=bulk))

    def snapshot(self) -> dict[str, dict[str, float]]:
        """Per endpoint: requests sent and requests that had to wait (both buckets), tokens
        left for head reads, and for backfill once it was used (``backfill_tokens``)."""
        out: dict[str, dict[str, float]] = {}
        for key in list(self._buckets):
            bucket = self._refill(key)
            bulk = key.endswith(BULK_SUFFIX)
            entry = out.setdefault(key.removesuffix(BULK_SUFFIX) if bulk else key,
                                   {"sent": 0, "throttled": 0, "tokens": float(self._burst)})
            entry["sent"] += bucket.sent
            entry["throttled"] += bucket.throttled
            entry["backfill_tokens" if bulk else "tokens"] = round(bucket.tokens, 2)
        return out


def _key(label: str, bulk: bool) -> str:
    return label + BULK_SUFFIX if bulk else label
