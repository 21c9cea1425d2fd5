"""Prometheus metrics, read from the feed's status snapshot at scrape time.

A custom collector instead of counters updated in the hot path: the feed already counts
everything in ``FeedStatus``, so a scrape costs one snapshot and the feed carries no Prometheus
code. Each app has its own ``CollectorRegistry`` (several apps in one process, as in tests, do not
collide). Endpoint labels are redacted URLs (scheme, host, port), never keys.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from blockfeed.gateway.hub import SseHub
from blockfeed.gateway.protocols import StatusLike
from blockfeed.types import Block, FeedEvent, Mode
from blockfeed.util.redact import redact_url

PREFIX = "blockfeed"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
GAP_BUCKETS_S: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2, 4, 8, 12, 15, 20, 30, 60, 120, 300)
"""Buckets of the gap between consecutive blocks' arrivals, around Bittensor's 12 s blocks."""
HANDOVER_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
"""Buckets of ``delivered_at - received_at``: verification, backfill order, queueing."""


class _Buckets:
    """A fixed-bucket histogram kept by hand (the collector builds families at scrape time)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self._bounds, value)] += 1
        self._sum += value

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for bound, count in zip(self._bounds, self._counts, strict=False):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))  # le="12.0", as clients write
        buckets.append(("+Inf", cumulative + self._counts[-1]))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self._sum)


def _split_transition(key: str) -> tuple[str, str, str]:
    """``"streaming->polling:socket silent"`` -> ("streaming", "polling", "socket silent")."""
    arrow, _, reason = key.partition(":")
    old, _, new = arrow.partition("->")
    return old or "unknown", new or "unknown", reason or "unknown"


def _endpoint_label(entry: dict[str, Any], index: int) -> str:
    for key in ("endpoint", "url", "ws_url", "name"):
        value = entry.get(key)
        if isinstance(value, str) and value:
            return redact_url(value) if "://" in value else value
    return f"endpoint-{index}"


def _endpoint_health(entry: dict[str, Any]) -> float | None:
    """1 healthy, 0 not (quarantined or failing); ``None`` when the entry does not say."""
    if entry.get("quarantined"):
        return 0.0
    for key in ("healthy", "ok", "up"):
        if key in entry:
            return 1.0 if entry[key] else 0.0
    if "quarantined" in entry:
        return 1.0
    return None


class GatewayCollector(Collector):
    """Turns a ``FeedStatus`` snapshot plus hub and alert counters into metric families."""

    def __init__(
        self,
        *,
        status: Callable[[], StatusLike],
        hub: SseHub,
        alert_counts: Callable[[], dict[tuple[str, str], int]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._status = status
        self._hub = hub
        self._alert_counts = alert_counts
        self._clock = clock
        self._events: Counter[str] = Counter()
        self._gaps = _Buckets(GAP_BUCKETS_S)
        self._handovers = _Buckets(HANDOVER_BUCKETS_S)
        self._last_received_at: float | None = None

    def observe_event(self, event: FeedEvent) -> None:
        """Feed event hook: count events by kind (``verification_failed`` means divergence)."""
        self._events[event.kind] += 1

    def observe_block(self, block: Block) -> None:
        """Feed subscriber step: the gap since the previous block's arrival, and the time from
        receiving the block to handing it over (``delivered_at - received_at``)."""
        if block.delivered_at is not None:
            self._handovers.observe(max(0.0, block.delivered_at - block.received_at))
        previous, self._last_received_at = self._last_received_at, block.received_at
        if previous is None:
            return
        self._gaps.observe(max(0.0, block.received_at - previous))

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        yield from self._mode_metrics(status)
        yield from self._block_metrics(status)
        yield from self._connection_metrics(status)
        yield from self._client_metrics(status)
        yield from self._ops_metrics(status)
        if self._alert_counts is not None:
            alerts = CounterMetricFamily(
                f"{PREFIX}_alerts",
                "Alerts by kind and outcome (sent, failed, suppressed, dropped)",
                labels=["kind", "outcome"],
            )
            for (kind, outcome), count in sorted(self._alert_counts().items()):
                alerts.add_metric([kind, outcome], count)
            yield alerts

    def _mode_metrics(self, status: StatusLike) -> Iterator[Metric]:
        current = GaugeMetricFamily(f"{PREFIX}_mode", "1 for the current mode", labels=["mode"])
        for mode in Mode:
            current.add_metric([str(mode)], 1.0 if status.mode == mode else 0.0)
        yield current
        seconds = CounterMetricFamily(
            f"{PREFIX}_mode_seconds", "Seconds spent in each mode since start", labels=["mode"]
        )
        for name, value in sorted(status.mode_seconds.items()):
            seconds.add_metric([name], value)
        yield seconds
        transitions = CounterMetricFamily(
            f"{PREFIX}_mode_transitions", "Mode transitions by reason",
            labels=["from_mode", "to_mode", "reason"],
        )
        for key, count in sorted(status.transitions.items()):
            transitions.add_metric(list(_split_transition(key)), count)
        yield transitions
        yield GaugeMetricFamily(
            f"{PREFIX}_finality_stalled", "1 while the chain's finality has stalled",
            value=1.0 if status.finality_stalled else 0.0,
        )

    def _block_metrics(self, status: StatusLike) -> Iterator[Metric]:
        by_source = CounterMetricFamily(
            f"{PREFIX}_blocks", "Blocks delivered, by source (ws, poll, backfill)",
            labels=["source"],
        )
        for source, count in sorted(status.blocks_by_source.items()):
            by_source.add_metric([source], count)
        yield by_source
        yield CounterMetricFamily(
            f"{PREFIX}_backfilled_blocks", "Blocks fetched by number to fill gaps",
            value=status.blocks_by_source.get("backfill", 0),
        )
        last = status.last_block
        if last is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_last_block_number", "Number of the last delivered block",
                value=last.number,
            )
        if last is not None and last.spec_version is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_spec_version",
                "Spec version of the runtime of the last delivered block (with --contents; "
                "upgrades also count in feed_events{kind=\"runtime_upgraded\"})",
                value=last.spec_version,
            )
        if status.last_block_age_s is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_last_block_age_seconds", "Seconds since the last block was received",
                value=status.last_block_age_s,
            )
        yield GaugeMetricFamily(
            f"{PREFIX}_block_interval_seconds",
            "Learned block time T (observed arrivals; the hint or declared slot before)",
            value=status.block_interval_s,
        )

    def _connection_metrics(self, status: StatusLike) -> Iterator[Metric]:
        yield CounterMetricFamily(
            f"{PREFIX}_reconnects", "Socket reconnects", value=status.reconnects
        )
        probes = CounterMetricFamily(
            f"{PREFIX}_probes", "HTTP probes after a silent socket, by outcome", labels=["outcome"]
        )
        for outcome, count in sorted(status.probes.items()):
            probes.add_metric([outcome], count)
        yield probes
        yield CounterMetricFamily(
            f"{PREFIX}_malformed_frames", "Frames rejected as malformed",
            value=status.malformed_frames,
        )
        health = GaugeMetricFamily(
            f"{PREFIX}_endpoint_healthy",
            "1 if the endpoint is usable, 0 if failing or quarantined",
            labels=["endpoint"],
        )
        lag = GaugeMetricFamily(
            f"{PREFIX}_endpoint_lag_blocks",
            "How far the endpoint's finalized head trails the best one",
            labels=["endpoint"],
        )
        latency = GaugeMetricFamily(
            f"{PREFIX}_endpoint_latency_seconds", "Smoothed request latency of the endpoint",
            labels=["endpoint"],
        )
        for index, entry in enumerate(status.endpoints):
            if not isinstance(entry, dict):
                continue
            label = _endpoint_label(entry, index)
            value = _endpoint_health(entry)
            if value is not None:
                health.add_metric([label], value)
            if isinstance(entry.get("lag_blocks"), int | float):
                lag.add_metric([label], entry["lag_blocks"])
            if isinstance(entry.get("latency_ms"), int | float):
                latency.add_metric([label], entry["latency_ms"] / 1000)
        yield health
        yield lag
        yield latency
        requests = CounterMetricFamily(
            f"{PREFIX}_requests", "Node requests by purpose (poll, hedge, probe, range, ...)",
            labels=["purpose"],
        )
        for purpose, count in sorted(getattr(status, "requests", {}).items()):
            requests.add_metric([str(purpose)], count)
        yield requests

    def _client_metrics(self, status: StatusLike) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            f"{PREFIX}_subscribers", "In-process feed subscribers", value=status.subscribers
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_sse_clients", "Connected SSE clients", value=self._hub.client_count
        )
        lags = list(self._hub.lags())
        yield GaugeMetricFamily(
            f"{PREFIX}_sse_client_lag_max", "Most frames pending for any one SSE client",
            value=max(lags, default=0),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_sse_client_lag_total", "Frames pending across all SSE clients",
            value=sum(lags),
        )
        yield CounterMetricFamily(
            f"{PREFIX}_sse_clients_dropped", "SSE clients dropped for being too slow",
            value=self._hub.dropped_total,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_sse_connections", "SSE connections accepted",
            value=self._hub.connections_total,
        )


    def _ops_metrics(self, status: StatusLike) -> Iterator[Metric]:
        """What the alert rules and the Grafana dashboard need beyond the status counters."""
        yield GaugeMetricFamily(
            f"{PREFIX}_feed_blocked",
            "1 while the feed stopped or cannot deliver for a lasting reason (see /status)",
            value=1.0 if getattr(status, "error", None) else 0.0,
        )
        budget = getattr(status, "request_budget", None) or {}
        sent = CounterMetricFamily(
            f"{PREFIX}_endpoint_requests", "Requests sent to each endpoint (request budget)",
            labels=["endpoint"])
        throttled = CounterMetricFamily(
            f"{PREFIX}_endpoint_requests_throttled",
            "Requests that waited for the endpoint's request budget (token bucket)",
            labels=["endpoint"])
        tokens = GaugeMetricFamily(
            f"{PREFIX}_endpoint_request_tokens", "Requests an endpoint may still get at once",
            labels=["endpoint"])
        for label, entry in sorted(budget.items()):
            name = redact_url(label) if "://" in label else label
            sent.add_metric([name], entry.get("sent", 0))
            throttled.add_metric([name], entry.get("throttled", 0))
            tokens.add_metric([name], entry.get("tokens", 0))
        yield sent
        yield throttled
        yield tokens
        prior = getattr(status, "block_time_prior_s", None)
        if prior is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_block_time_prior_seconds",
                "Block time assumed before observation (hint or the runtime's declared slot)",
                value=prior)
        events = CounterMetricFamily(
            f"{PREFIX}_feed_events", "Feed events by kind since the gateway started",
            labels=["kind"],
        )
        for kind, count in sorted(self._events.items()):
            events.add_metric([kind], count)
        yield events
        quarantined = GaugeMetricFamily(
            f"{PREFIX}_endpoint_quarantined", "1 while the endpoint is quarantined",
            labels=["endpoint"],
        )
        for index, entry in enumerate(status.endpoints):
            if isinstance(entry, dict) and "quarantined" in entry:
                quarantined.add_metric(
                    [_endpoint_label(entry, index)], 1.0 if entry["quarantined"] else 0.0
                )
        yield quarantined
        yield self._gaps.family(
            f"{PREFIX}_block_gap_seconds",
            "Seconds between the arrivals of consecutive delivered blocks")
        yield self._handovers.family(
            f"{PREFIX}_block_handover_seconds",
            "Seconds from receiving a block to handing it to subscribers "
            "(delivered_at - received_at)")


def new_registry(collector: GatewayCollector) -> CollectorRegistry:
    """A registry of its own for one app."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition."""
    return generate_latest(registry)
