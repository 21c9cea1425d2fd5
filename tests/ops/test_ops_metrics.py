"""Metrics added for alerting and Grafana: block gaps, events, blocked, quarantine, sinks."""

from __future__ import annotations

import dataclasses
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from blockfeed.gateway.hub import SseHub
from blockfeed.gateway.metrics import GatewayCollector, new_registry, render
from blockfeed.types import Block, FeedEvent, Mode, Reconnect, Source, VerificationFailed

KEY = "k3yk3yk3yk3yk3yk3yk3yk3yk3yk3y"


@dataclasses.dataclass(frozen=True)
class Status:
    mode: Mode = Mode.STREAMING
    finality_stalled: bool = False
    endpoint: str | None = None
    last_block: Block | None = None
    last_block_age_s: float | None = None
    started_at: float = 0.0
    mode_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    reconnects: int = 0
    blocks_by_source: dict[str, int] = dataclasses.field(default_factory=dict)
    transitions: dict[str, int] = dataclasses.field(default_factory=dict)
    probes: dict[str, int] = dataclasses.field(default_factory=dict)
    malformed_frames: int = 0
    block_interval_s: float = 12.0
    endpoints: list[dict[str, object]] = dataclasses.field(default_factory=list)
    subscribers: int = 0
    recent_events: list[FeedEvent] = dataclasses.field(default_factory=list)
    error: str | None = None


def block(number: int, at: float) -> Block:
    return Block(number=number, hash=f"0x{number:064x}", parent_hash=f"0x{number - 1:064x}",
                 source=Source.WS, received_at=at)


def scrape(collector: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = render(new_registry(collector)).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def test_block_gap_histogram() -> None:
    """Gaps between arrivals land in cumulative buckets with the right count and sum."""
    collector = GatewayCollector(status=Status, hub=SseHub(epoch_length=360))
    for number, at in [(1, 100.0), (2, 112.0), (3, 112.05), (4, 142.05)]:
        collector.observe_block(block(number, at))
    got = scrape(collector)
    assert got[("blockfeed_block_gap_seconds_count", ())] == 3
    assert abs(got[("blockfeed_block_gap_seconds_sum", ())] - 42.05) < 1e-6
    assert got[("blockfeed_block_gap_seconds_bucket", (("le", "0.1"),))] == 1
    assert got[("blockfeed_block_gap_seconds_bucket", (("le", "12.0"),))] == 2
    assert got[("blockfeed_block_gap_seconds_bucket", (("le", "20.0"),))] == 2
    assert got[("blockfeed_block_gap_seconds_bucket", (("le", "+Inf"),))] == 3


def test_feed_events_and_blocked() -> None:
    """Events are counted by kind; feed_blocked follows the status's error."""
    state = {"status": Status()}
    collector = GatewayCollector(status=lambda: state["status"], hub=SseHub(epoch_length=360))
    events = (VerificationFailed(at=0.0, reason="test"), Reconnect(at=0.0, reason="test",
              attempt=1), Reconnect(at=0.0, reason="test", attempt=2))
    for event in events:
        collector.observe_event(event)
    got = scrape(collector)
    assert got[("blockfeed_feed_events_total", (("kind", "reconnect"),))] == 2
    assert got[("blockfeed_feed_events_total", (("kind", "verification_failed"),))] == 1
    assert got[("blockfeed_feed_blocked", ())] == 0
    state["status"] = Status(error="endpoints disagree on start block #5")
    assert scrape(collector)[("blockfeed_feed_blocked", ())] == 1


def test_quarantine_label_is_redacted() -> None:
    """The quarantine gauge is labelled by the redacted endpoint, never its key."""
    status = Status(endpoints=[
        {"endpoint": f"wss://node.example:443/ws/{KEY}", "quarantined": True},
        {"endpoint": "wss://good.example:443", "quarantined": False},
    ])
    collector = GatewayCollector(status=lambda: status, hub=SseHub(epoch_length=360))
    text = render(new_registry(collector)).decode()
    assert KEY not in text
    got = scrape(collector)
    assert got[("blockfeed_endpoint_quarantined",
                (("endpoint", "wss://node.example:443/***"),))] == 1
    assert got[("blockfeed_endpoint_quarantined", (("endpoint", "wss://good.example:443"),))] == 0


def test_sinks_and_a_broken_sink() -> None:
    """A sink's lag and connection are exported (the sinks' collector, labels kind and url)."""
    from blockfeed.sinks.metrics import SinkCollector

    class Sink:
        def __init__(self, status: dict[str, object]) -> None:
            self._status = status

        def status(self) -> dict[str, object]:
            return self._status

    collector = SinkCollector(lambda: [Sink({"kind": "redis", "url": "redis://h:6379",
                                             "lag_blocks": 42, "connected": False})])
    got = scrape(collector)
    labels = (("kind", "redis"), ("url", "redis://h:6379"))
    assert got[("blockfeed_sink_lag_blocks", labels)] == 42
    assert got[("blockfeed_sink_connected", labels)] == 0
