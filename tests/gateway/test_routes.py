"""Every plain HTTP route of the gateway, against a fake feed and store (no network)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from gateway_fakes import FakeFeed, FakeStore

from blockfeed.gateway import GatewayOptions, create_app
from blockfeed.types import Mode, SinkWrongChain, Source

TOKEN = "s3cret-admin-token-value"
KEY = "abcdefghijklmnopqrstuvwxyz123456"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> FakeStore:
    return FakeStore(window=50)


@pytest.fixture
def feed(store: FakeStore, clock: Clock) -> FakeFeed:
    return FakeFeed(store=store, clock=clock)


def make_client(feed: FakeFeed, store: FakeStore | None, clock: Clock, **opts) -> httpx.AsyncClient:
    opts.setdefault("ring_size", 16)  # smaller than the store window, so both are exercised
    options = GatewayOptions(clock=clock, ready_max_block_age_s=60.0, epoch_length=360, **opts)
    app = create_app(feed=feed, store=store, options=options, manage_feed=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


@pytest.fixture
async def client(
    feed: FakeFeed, store: FakeStore, clock: Clock
) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(feed, store, clock, admin_token=TOKEN) as c:
        yield c


async def test_health_is_always_ok(client: httpx.AsyncClient) -> None:
    """/health answers 200 even before any block (liveness, not readiness)."""
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_reports_reason_while_starting_then_ok(
    client: httpx.AsyncClient, feed: FakeFeed
) -> None:
    """/ready is 503 with a reason before the first block, 200 once streaming a fresh block."""
    first = await client.get("/ready")
    assert first.status_code == 503
    assert first.json() == {"ready": False, "reason": "starting: no block received yet"}
    feed.set_mode(Mode.STREAMING)
    feed.emit_block(720)
    ok = await client.get("/ready")
    assert ok.status_code == 200
    assert ok.json()["ready"] is True
    assert "#720" in ok.json()["reason"]


async def test_ready_503_when_disconnected(client: httpx.AsyncClient, feed: FakeFeed) -> None:
    """/ready is 503 while disconnected, even with a recent block."""
    feed.emit_block(5)
    feed.set_mode(Mode.DISCONNECTED)
    response = await client.get("/ready")
    assert response.status_code == 503
    assert response.json()["reason"].startswith("disconnected")


async def test_ready_503_when_last_block_too_old(
    client: httpx.AsyncClient, feed: FakeFeed, clock: Clock
) -> None:
    """/ready turns 503 once the last block is older than the limit, naming age and limit."""
    feed.set_mode(Mode.STREAMING)
    feed.emit_block(5)
    clock.now += 61
    feed.finality_stalled = True
    response = await client.get("/ready")
    assert response.status_code == 503
    reason = response.json()["reason"]
    assert reason == "last block #5 is 61 s old (limit 60 s); chain finality has stalled"


async def test_status_document(client: httpx.AsyncClient, feed: FakeFeed, clock: Clock) -> None:
    """/status carries mode, last block + age, epoch position, percentages, timeline and events."""
    feed.extra = {"mode_seconds": {"streaming": 30.0, "polling": 10.0}, "reconnects": 2}
    feed.set_mode(Mode.STREAMING, "subscribed")
    clock.now += 5
    feed.emit_block(6940429)
    clock.now += 2
    feed.set_mode(Mode.POLLING, "socket silent")
    body = (await client.get("/status")).json()
    assert body["mode"] == "polling"
    assert body["last_block"]["number"] == 6940429
    assert body["last_block_age_s"] == pytest.approx(2.0)
    assert body["epoch"]["epoch"] == 19278 and body["epoch"]["label"] == "Block 349/360"
    assert body["mode_percent"] == {"streaming": 75.0, "polling": 25.0}
    assert body["reconnects"] == 2
    modes = [seg["mode"] for seg in body["timeline"]]
    assert modes == ["starting", "streaming", "polling"]
    assert body["timeline"][-1]["end"] is None
    assert [e["new_mode"] for e in body["recent_events"]] == ["polling", "streaming"]
    assert body["ready"] is True


async def test_status_redacts_urls_in_events(client: httpx.AsyncClient, feed: FakeFeed) -> None:
    """A URL with a key inside an event's details or endpoint is masked in /status."""
    feed.emit(SinkWrongChain(at=1.0, reason="another chain", endpoint=f"wss://node.example/ws/{KEY}",
                             stream="blocks", stream_genesis="0x" + "11" * 32,
                             genesis="0x" + "22" * 32, redis=f"https://rpc.example/?apikey={KEY}"))
    text = (await client.get("/status")).text
    assert KEY not in text
    assert "node.example" in text


async def test_blocks_latest_and_by_number(client: httpx.AsyncClient, feed: FakeFeed) -> None:
    """/blocks/latest and /blocks/{n} return the block JSON with epoch fields; 404 outside."""
    assert (await client.get("/blocks/latest")).status_code == 404
    for n in range(100, 110):
        feed.emit_block(n, source=Source.POLL)
    latest = (await client.get("/blocks/latest")).json()
    assert latest["number"] == 109 and latest["source"] == "poll"
    assert latest["block_in_epoch"] == 109 and latest["epoch"] == 0
    one = await client.get("/blocks/103")
    assert one.status_code == 200
    assert one.json()["parent_hash"] == (await client.get("/blocks/102")).json()["hash"]
    too_new = await client.get("/blocks/110")
    assert too_new.status_code == 404
    assert "latest is 109" in too_new.json()["detail"]


async def test_blocks_by_number_rejects_bad_input(client: httpx.AsyncClient) -> None:
    """Non-numbers, negatives and numbers beyond u32 get 422, not 5xx."""
    for path in ("/blocks/abc", "/blocks/-1", "/blocks/99999999999"):
        assert (await client.get(path)).status_code == 422, path


async def test_blocks_range(client: httpx.AsyncClient, feed: FakeFeed, store: FakeStore) -> None:
    """/blocks pages consecutive blocks, clamps limit, and says 404 outside the window."""
    for n in range(1, 101):  # window keeps the last 50: 51..100
        feed.emit_block(n)
    page = (await client.get("/blocks", params={"from": 60, "limit": 5})).json()
    assert [b["number"] for b in page["blocks"]] == [60, 61, 62, 63, 64]
    assert page["next"] == 65 and page["first_available"] == 51 and page["last_available"] == 100
    newest = (await client.get("/blocks", params={"limit": 3})).json()
    assert [b["number"] for b in newest["blocks"]] == [98, 99, 100] and newest["next"] is None
    clamped = (await client.get("/blocks", params={"from": 51, "limit": 5000})).json()
    assert clamped["limit"] == 1000 and clamped["count"] == 50
    old = await client.get("/blocks", params={"from": 10})
    assert old.status_code == 404
    assert old.json()["detail"] == "block 10 is older than the kept window (51..100)"
    assert (await client.get("/blocks", params={"from": 101})).status_code == 404
    assert (await client.get("/blocks", params={"limit": 0})).status_code == 422
    assert (await client.get("/blocks", params={"from": "x"})).status_code == 422


async def test_blocks_range_empty_window(client: httpx.AsyncClient) -> None:
    """/blocks before any block is a clear 404."""
    response = await client.get("/blocks")
    assert response.status_code == 404
    assert "no blocks are kept yet" in response.json()["detail"]


async def test_blocks_served_from_ring_without_store(feed: FakeFeed, clock: Clock) -> None:
    """Without a store the gateway still serves recent blocks from its memory ring."""
    feed.store = None
    async with make_client(feed, None, clock) as c:
        for n in range(7, 12):
            feed.emit_block(n)
        assert (await c.get("/blocks/9")).json()["number"] == 9
        page = (await c.get("/blocks", params={"from": 7})).json()
        assert page["count"] == 5


async def test_metrics_exposition(client: httpx.AsyncClient, feed: FakeFeed) -> None:
    """/metrics has mode, per-mode seconds, transitions, blocks, last block and client gauges."""
    feed.extra = {
        "mode_seconds": {"streaming": 12.5},
        "transitions": {"streaming->polling:socket silent": 3},
        "probes": {"stale": 2},
        "reconnects": 4,
        "malformed_frames": 7,
        "endpoints": [{"url": f"wss://node.example/ws/{KEY}", "quarantined": False}],
    }
    feed.set_mode(Mode.STREAMING)
    feed.emit_block(42)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'blockfeed_mode{mode="streaming"} 1.0' in text
    assert 'blockfeed_mode{mode="polling"} 0.0' in text
    assert 'blockfeed_mode_seconds_total{mode="streaming"} 12.5' in text
    assert ('blockfeed_mode_transitions_total{from_mode="streaming",reason="socket silent",'
            'to_mode="polling"} 3.0') in text
    assert "blockfeed_reconnects_total 4.0" in text
    assert "blockfeed_last_block_number 42.0" in text
    assert 'blockfeed_probes_total{outcome="stale"} 2.0' in text
    assert "blockfeed_malformed_frames_total 7.0" in text
    assert 'blockfeed_endpoint_healthy{endpoint="wss://node.example/***"} 1.0' in text
    assert "blockfeed_sse_clients 0.0" in text
    assert KEY not in text


async def test_two_apps_have_separate_registries(
    feed: FakeFeed, store: FakeStore, clock: Clock
) -> None:
    """Two apps in one process do not collide in Prometheus registration."""
    async with make_client(feed, store, clock) as a, make_client(feed, store, clock) as b:
        assert (await a.get("/metrics")).status_code == 200
        assert (await b.get("/metrics")).status_code == 200


async def test_admin_off_without_token(feed: FakeFeed, store: FakeStore, clock: Clock) -> None:
    """With no admin token configured, admin routes answer 404 and do nothing."""
    async with make_client(feed, store, clock) as c:
        response = await c.post("/admin/reconnect", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 404
    assert "BLOCKFEED_ADMIN_TOKEN" in response.json()["detail"]
    assert feed.reconnect_requests == []


async def test_admin_auth(client: httpx.AsyncClient, feed: FakeFeed) -> None:
    """Missing credentials -> 401, wrong token -> 403, right token -> 202 and a reconnect."""
    missing = await client.post("/admin/reconnect")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    basic = await client.post("/admin/reconnect", headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401
    wrong = await client.post("/admin/reconnect", headers={"Authorization": "Bearer nope-nope"})
    assert wrong.status_code == 403
    assert TOKEN not in wrong.text
    assert feed.reconnect_requests == []
    right = await client.post("/admin/reconnect", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 202
    assert right.json() == {"status": "accepted", "action": "reconnect"}
    assert feed.reconnect_requests == ["admin"]


async def test_openapi_and_docs(client: httpx.AsyncClient) -> None:
    """The OpenAPI schema lists every API route; the docs page is served."""
    schema = (await client.get("/openapi.json")).json()
    assert {"/health", "/ready", "/status", "/blocks", "/blocks/latest", "/blocks/{number}",
            "/stream", "/metrics", "/admin/reconnect"} <= set(schema["paths"])
    assert (await client.get("/docs")).status_code == 200


async def test_dashboard_page(client: httpx.AsyncClient) -> None:
    """GET / serves the self-contained dashboard page wired to /status and /stream."""
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "EventSource" in response.text and "/status" in response.text


async def test_stream_rejects_bad_resume_points(client: httpx.AsyncClient, feed: FakeFeed) -> None:
    """/stream: a non-numeric Last-Event-ID is 422, a point older than the window is 404."""
    for n in range(1, 101):
        feed.emit_block(n)
    bad = await client.get("/stream", headers={"Last-Event-ID": "abc"})
    assert bad.status_code == 422
    assert "last-event-id" in bad.text
    old = await client.get("/stream", params={"from": 3})
    assert old.status_code == 404
    assert "first available: 51" in old.json()["detail"]


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    """Unknown paths are 404 and wrong methods 405, never 5xx."""
    assert (await client.get("/nope")).status_code == 404
    assert (await client.delete("/status")).status_code == 405
