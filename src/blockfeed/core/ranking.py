"""Endpoint health and the order endpoints are tried in.

Each endpoint (a WebSocket URL and its HTTP twin on the same node) keeps a small health record:
consecutive failures per transport, an HTTP latency average, the last finalized number it
reported, when it last showed a sign of life, and an optional quarantine. :meth:`Ranking.order`
sorts usable endpoints first and, among them, those with *fresh* evidence of life (an answer
within ``fresh_s``) before those known only from the past, so a failover never trusts stale
knowledge: a silently dead alternate with a clean record loses to a live endpoint whose socket
just closed.

Requests over an endpoint's open socket (the request channel used while its HTTP side backs
off) have a backoff of their own: every error counts (a JSON-RPC error, a malformed or
unverifiable answer, a timeout), and a rate-limit answer's ``Retry-After`` is honoured, so an
endpoint that answers everything with errors is asked a bounded number of times.

A quarantined endpoint is still used when nothing else is left: a feed with one bad source
waits on it rather than on nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from blockfeed.core.backoff import backoff_delay

DEFAULT_LATENCY_ALPHA = 0.3
"""Weight of the newest sample in the latency moving average."""
DEFAULT_HTTP_RETRY_INITIAL_S = 0.2
DEFAULT_HTTP_RETRY_CAP_S = 10.0
MAX_RETRY_AFTER_S = 300.0
"""A ``Retry-After`` longer than this is not believed (a misconfigured proxy must not silence
an endpoint for hours)."""


@dataclass(slots=True)
class EndpointHealth:
    """Mutable health record of one endpoint (owned by :class:`Ranking`)."""

    label: str
    ws_failures: int = 0
    http_failures: int = 0
    http_retry_at: float = 0.0
    latency_ewma_s: float | None = None
    head_number: int | None = None
    head_seen_at: float | None = None
    alive_at: float | None = None
    """Last sign of life: an HTTP answer, a socket block, a request answered over the socket."""
    ws_request_failures: int = 0
    ws_request_retry_at: float = 0.0
    quarantined_until: float = 0.0
    quarantine_reason: str = ""
    quarantines: int = 0

    def is_quarantined(self, now: float) -> bool:
        """True while a quarantine is in force."""
        return now < self.quarantined_until

    def is_fresh(self, now: float, fresh_s: float) -> bool:
        """True if it showed a sign of life within ``fresh_s`` seconds."""
        return self.alive_at is not None and now - self.alive_at <= fresh_s

    def snapshot(self, now: float, best_number: int | None) -> dict[str, Any]:
        """Plain dict for status pages (labels are already redacted)."""
        return {
            "endpoint": self.label,
            "ws_failures": self.ws_failures,
            "http_failures": self.http_failures,
            "latency_ms": None if self.latency_ewma_s is None else self.latency_ewma_s * 1000,
            "head_number": self.head_number,
            "alive_s_ago": None if self.alive_at is None else max(0.0, now - self.alive_at),
            "lag_blocks": self.lag(best_number),
            "quarantined": self.is_quarantined(now),
            "quarantined_for_s": max(0.0, self.quarantined_until - now),
            "quarantine_reason": self.quarantine_reason if self.is_quarantined(now) else "",
            "quarantines": self.quarantines,
        }

    def lag(self, best_number: int | None) -> int | None:
        """How many numbers this endpoint's last reported head is behind the best known one."""
        if best_number is None or self.head_number is None:
            return None
        return max(0, best_number - self.head_number)


class Ranking:
    """Health records for a fixed list of endpoints, and their preferred order."""

    def __init__(
        self,
        labels: Iterable[str],
        *,
        latency_alpha: float = DEFAULT_LATENCY_ALPHA,
        http_retry_initial_s: float = DEFAULT_HTTP_RETRY_INITIAL_S,
        http_retry_cap_s: float = DEFAULT_HTTP_RETRY_CAP_S,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._health = {label: EndpointHealth(label) for label in labels}
        if not self._health:
            raise ValueError("at least one endpoint is required")
        self._configured_order = list(self._health)
        self._alpha = latency_alpha
        self.http_retry_initial_s = http_retry_initial_s
        self.http_retry_cap_s = http_retry_cap_s
        """Backoff bounds for HTTP and socket-channel request errors; the follower keeps them
        in step with the learned block time."""
        self.fresh_s = float("inf")
        """Evidence of life younger than this counts as fresh (the follower: a few T)."""
        self._rng = rng
        self.best_number: int | None = None
        """The reference for lag: the follower sets it to the last verified block number (a
        number any endpoint merely *claims* could be a lie, and would make honest ones look
        lagging)."""

    @property
    def labels(self) -> list[str]:
        """Endpoints in configuration order."""
        return list(self._configured_order)

    def __getitem__(self, label: str) -> EndpointHealth:
        return self._health[label]

    def order(self, now: float, *, exclude: Iterable[str] = ()) -> list[str]:
        """Endpoints best first: not quarantined, fresh evidence of life, fewest failures, least
        lag, lowest latency.

        Configuration order breaks ties, so with equal health the first endpoint is preferred.
        Freshness only separates endpoints when some are fresh and some are not: at start, with
        no evidence anywhere, the configured order rules.
        """
        excluded = set(exclude)
        candidates = [label for label in self._configured_order if label not in excluded]

        def key(label: str) -> tuple[bool, bool, int, int, float, int]:
            health = self._health[label]
            return (
                health.is_quarantined(now),
                not health.is_fresh(now, self.fresh_s),
                health.ws_failures + health.http_failures,
                health.lag(self.best_number) or 0,
                health.latency_ewma_s or 0.0,
                self._configured_order.index(label),
            )

        return sorted(candidates, key=key)

    def best(self, now: float, *, exclude: Iterable[str] = ()) -> str | None:
        """The preferred endpoint, or None if all are excluded."""
        ordered = self.order(now, exclude=exclude)
        return ordered[0] if ordered else None

    def best_http(self, now: float, *, exclude: Iterable[str] = ()) -> tuple[str | None, float]:
        """The best endpoint whose HTTP side may be used now, else the soonest one and its time.

        Returns ``(label, at)``: ``at <= now`` means "use it now".
        """
        ordered = self.order(now, exclude=exclude)
        if not ordered:
            return None, now
        ready = [label for label in ordered if self._health[label].http_retry_at <= now]
        if ready:
            return ready[0], now
        soonest = min(ordered, key=lambda label: self._health[label].http_retry_at)
        return soonest, self._health[soonest].http_retry_at

    def record_ws_failure(self, label: str) -> None:
        """The socket of ``label`` failed (refused, closed early, subscribe error, stale)."""
        self._health[label].ws_failures += 1

    def record_ws_success(self, label: str, now: float | None = None) -> None:
        """The socket of ``label`` delivered a block the merge accepted."""
        health = self._health[label]
        health.ws_failures = 0
        if now is not None:
            health.alive_at = now

    def record_alive(self, label: str, now: float) -> None:
        """``label`` showed a sign of life (an answer of any kind that was not an error)."""
        self._health[label].alive_at = now

    def _retry_at(self, failures: int, now: float, retry_after_s: float | None) -> float:
        """Equal jitter (half fixed, half random) rather than full: a failing endpoint is asked
        about once per cap, not twice, while many clients still spread out."""
        delay = backoff_delay(
            failures,
            initial_s=self.http_retry_initial_s,
            cap_s=self.http_retry_cap_s,
            rng=lambda: 0.5 + 0.5 * self._rng(),
        )
        if retry_after_s is not None and retry_after_s > 0:
            delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
        return now + delay

    def record_http_failure(
        self, label: str, now: float, *, retry_after_s: float | None = None
    ) -> float:
        """An HTTP request to ``label`` failed; returns when it may be tried again.

        ``retry_after_s`` (a rate limit's ``Retry-After``) is honoured, up to
        :data:`MAX_RETRY_AFTER_S`.
        """
        health = self._health[label]
        health.http_failures += 1
        health.http_retry_at = self._retry_at(health.http_failures, now, retry_after_s)
        return health.http_retry_at

    def record_ws_request_failure(
        self, label: str, now: float, *, retry_after_s: float | None = None
    ) -> float:
        """A request over ``label``'s open socket failed; returns when it may be asked again."""
        health = self._health[label]
        health.ws_request_failures += 1
        health.ws_request_retry_at = self._retry_at(health.ws_request_failures, now,
                                                    retry_after_s)
        return health.ws_request_retry_at

    def record_ws_request_success(self, label: str, now: float) -> None:
        """A request over ``label``'s open socket was answered: its backoff ends."""
        health = self._health[label]
        health.ws_request_failures = 0
        health.ws_request_retry_at = 0.0
        health.alive_at = now

    def record_http_success(
        self, label: str, latency_s: float | None, now: float | None = None
    ) -> bool:
        """An HTTP request to ``label`` succeeded in ``latency_s`` seconds.

        Returns True when this ends a run of failures: the endpoint is back (evidence the
        follower acts on at once).
        """
        health = self._health[label]
        back = health.http_failures > 0
        health.http_failures = 0
        health.http_retry_at = 0.0
        if now is not None:
            health.alive_at = now
        if latency_s is not None and latency_s >= 0:
            if health.latency_ewma_s is None:
                health.latency_ewma_s = latency_s
            else:
                health.latency_ewma_s += self._alpha * (latency_s - health.latency_ewma_s)
        return back

    def record_head(self, label: str, number: int, now: float) -> None:
        """``label`` reported ``number`` as its finalized head."""
        health = self._health[label]
        if health.head_number is None or number >= health.head_number:
            health.head_number = number
            health.head_seen_at = now

    def quarantine(self, label: str, until: float, reason: str, *, now: float) -> bool:
        """Quarantine ``label`` until ``until``; returns True only for a new quarantine.

        Repeated evidence against an endpoint already in quarantine extends it quietly.
        """
        health = self._health[label]
        if health.is_quarantined(now):
            health.quarantined_until = max(health.quarantined_until, until)
            return False
        health.quarantined_until = until
        health.quarantine_reason = reason
        health.quarantines += 1
        return True

    def usable_count(self, now: float) -> int:
        """How many endpoints are not quarantined."""
        return sum(not h.is_quarantined(now) for h in self._health.values())

    def snapshot(self, now: float) -> list[dict[str, Any]]:
        """Health of every endpoint, in configuration order."""
        best = self.best_number
        return [self._health[label].snapshot(now, best) for label in self._configured_order]
