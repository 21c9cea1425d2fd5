"""Retry delays: exponential growth, full jitter, a cap.

Kept as a tiny pure generator so the follower (and tests) can swap it for a short or fixed one;
the random source is a parameter, never the global ``random`` state.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

DEFAULT_INITIAL_S = 0.5
DEFAULT_CAP_S = 30.0
DEFAULT_FACTOR = 2.0


def backoff_delay(
    attempt: int,
    *,
    initial_s: float = DEFAULT_INITIAL_S,
    factor: float = DEFAULT_FACTOR,
    cap_s: float = DEFAULT_CAP_S,
    rng: Callable[[], float] = random.random,
) -> float:
    """Delay before retry number ``attempt`` (1-based), with full jitter.

    ``delay = rng() * min(cap_s, initial_s * factor ** (attempt - 1))``, where ``rng()`` is
    uniform in ``[0, 1)``. Full jitter spreads many clients over the whole window, so a node that
    comes back is not hit by all of them at once; the cap bounds how long a healthy node waits
    to be noticed.
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    if initial_s < 0 or cap_s < 0 or factor < 1:
        raise ValueError("backoff needs initial_s >= 0, cap_s >= 0 and factor >= 1")
    # Avoid float overflow for huge attempt counts: past the cap the exponent does not matter.
    exponent = min(attempt - 1, 1024)
    ceiling = min(cap_s, initial_s * factor**exponent) if exponent < 1024 else cap_s
    return rng() * ceiling


def backoff(
    *,
    initial_s: float = DEFAULT_INITIAL_S,
    factor: float = DEFAULT_FACTOR,
    cap_s: float = DEFAULT_CAP_S,
    rng: Callable[[], float] = random.random,
) -> Iterator[float]:
    """Yield the delays before retries 1, 2, 3, ... forever (see :func:`backoff_delay`).

    ``delay_k = rng() * min(cap_s, initial_s * factor ** (k - 1))``.
    """
    attempt = 1
    while True:
        yield backoff_delay(attempt, initial_s=initial_s, factor=factor, cap_s=cap_s, rng=rng)
        attempt += 1
