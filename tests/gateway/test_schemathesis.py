"""Property-based API test: schemathesis drives every documented route; no request yields a 5xx."""

from __future__ import annotations

import schemathesis
from gateway_fakes import FakeFeed, FakeStore
from hypothesis import HealthCheck, settings

from blockfeed.gateway import GatewayOptions, create_app
from blockfeed.types import Mode

STREAM_READ_S = 0.3
"""/stream never ends: schemathesis keeps what arrived by then (or its first 20 events)."""


NOW = 1_700_000_000.0


def _frozen_clock() -> float:
    """Time stands still: the blocks stay fresh and /ready stays 200 however slow the run."""
    return NOW


def _app() -> object:
    store = FakeStore(window=200)
    feed = FakeFeed(store=store, clock=_frozen_clock)
    feed.mode = Mode.STREAMING
    for number in range(6_940_000, 6_940_300):
        feed.emit_block(number)
    options = GatewayOptions(
        admin_token="schemathesis-admin-token", ring_size=64, clock=_frozen_clock
    )
    return create_app(feed=feed, store=store, options=options, manage_feed=False)


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_never_answers_5xx(case: schemathesis.Case) -> None:
    """Generated requests (valid and invalid) get documented, schema-conformant, non-5xx answers."""
    if case.path == "/stream":
        case.call_and_validate(timeout=STREAM_READ_S)
    else:
        case.call_and_validate()
