"""The request budget (token bucket per endpoint), on a fake clock."""

from __future__ import annotations

import pytest

from blockfeed.feed.budget import BULK_RATE, BURST, MAX_RATE, MIN_RATE, RequestBudget


def test_bucket_allows_a_burst_then_the_rate_that_follows_t() -> None:
    """60 at once, then 10 per T (T = 0.5 s: 20 per second), bounded by 2..50 per second."""
    now = [0.0]
    budget = RequestBudget(lambda: 0.5, clock=lambda: now[0])
    assert sum(budget.take("a") for _ in range(BURST + 10)) == BURST
    now[0] = 1.0
    assert sum(budget.take("a") for _ in range(100)) == 20
    assert budget.take("b")  # each endpoint has its own bucket
    assert RequestBudget(lambda: 100.0, clock=lambda: 0.0).rate() == MIN_RATE
    assert RequestBudget(lambda: 0.01, clock=lambda: 0.0).rate() == MAX_RATE


def test_fifteen_seconds_of_errors_cost_a_bounded_number_of_requests() -> None:
    """Even a client that asked nonstop gets at most burst + rate x 15 s through."""
    now = [0.0]
    budget = RequestBudget(lambda: 0.5, clock=lambda: now[0])
    sent = 0
    for step in range(15_000):
        now[0] = step / 1000
        sent += budget.take("a")
    assert sent <= BURST + 20 * 15 + 1
    snapshot = budget.snapshot()["a"]
    assert snapshot["sent"] == sent


async def test_acquire_waits_for_a_token_and_counts_it() -> None:
    """acquire() on an empty bucket waits (real time, 1/rate) and records one throttle."""
    budget = RequestBudget(lambda: 0.01, clock=__import__("time").monotonic, burst=1)
    await budget.acquire("a")
    await budget.acquire("a")  # waits ~1/50 s
    assert budget.snapshot()["a"]["throttled"] == 1
    assert budget.snapshot()["a"]["sent"] == 2
    assert budget.wait_s("a") == pytest.approx(1 / MAX_RATE, abs=0.03)


def test_backfill_has_its_own_bucket_at_a_fixed_rate() -> None:
    """On a 12 s chain head reads get 2 per second, backfill batches 20 (thousands of blocks
    per second), and neither bucket spends the other's tokens."""
    now = [0.0]
    budget = RequestBudget(lambda: 12.0, clock=lambda: now[0])
    assert sum(budget.take("a", bulk=True) for _ in range(BURST + 10)) == BURST
    assert budget.take("a")  # head reads untouched by a drained backfill bucket
    now[0] = 1.0
    assert sum(budget.take("a", bulk=True) for _ in range(100)) == BULK_RATE
    assert budget.rate("a") == MIN_RATE
    snapshot = budget.snapshot()["a"]
    assert snapshot["sent"] == BURST + 1 + BULK_RATE and snapshot["backfill_tokens"] == 0
