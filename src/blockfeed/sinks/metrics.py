"""Prometheus metrics for sinks, read from each sink's ``status()`` at scrape time.

Labels are the sink's kind and its redacted URL (scheme, host, port), never credentials.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX = "blockfeed_sink"


class SinkCollector(Collector):
    """Lag in blocks, last number written, errors, connection state, per sink."""

    def __init__(self, sinks: Callable[[], Sequence[Any]]) -> None:
        self._sinks = sinks

    def collect(self) -> Iterator[Metric]:
        labels = ["kind", "url"]
        lag = GaugeMetricFamily(
            f"{PREFIX}_lag_blocks",
            "Blocks given to the sink but not yet confirmed by its target",
            labels=labels,
        )
        last = GaugeMetricFamily(
            f"{PREFIX}_last_number", "Newest block number the target holds", labels=labels
        )
        up = GaugeMetricFamily(
            f"{PREFIX}_connected", "1 while the sink is connected to its target", labels=labels
        )
        errors = CounterMetricFamily(
            f"{PREFIX}_errors", "Errors talking to the target", labels=labels
        )
        written = CounterMetricFamily(f"{PREFIX}_published", "Blocks the sink wrote", labels=labels)
        wrong_chain = CounterMetricFamily(
            f"{PREFIX}_wrong_chain_refusals",
            "Writes refused because the target belongs to another chain (another genesis)",
            labels=labels,
        )
        for sink in self._sinks():
            status = sink.status()
            key = [str(status.get("kind", "sink")), str(status.get("url", ""))]
            lag.add_metric(key, float(status.get("lag_blocks") or 0))
            if status.get("last_published") is not None:
                last.add_metric(key, float(status["last_published"]))
            up.add_metric(key, 1.0 if status.get("connected") else 0.0)
            errors.add_metric(key, float(status.get("errors") or 0))
            written.add_metric(key, float(status.get("published") or 0))
            wrong_chain.add_metric(key, float(status.get("wrong_chain_refusals") or 0))
        yield from (lag, last, up, errors, written, wrong_chain)


def sink_rows(sinks: Sequence[Any]) -> list[dict[str, Any]]:
    """The ``sinks`` section of /status: each sink's status, secret-free by construction."""
    return [dict(sink.status()) for sink in sinks]
