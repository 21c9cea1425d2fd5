"""Issue 14, gateway side: bounded descriptors, heads, replay and webhooks; row-9 answers.

Each test drives a real uvicorn server on 127.0.0.1 (or a fake clock) and waits on events with
generous bounds; the figures under load are in ``bench/hardening_gateway.py``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from gateway_fakes import FakeFeed, FakeStore, SseReader, serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from blockfeed.errors import ConfigError
from blockfeed.gateway import GatewayOptions, create_app
from blockfeed.gateway.alerts import MAX_RESPONSE_BYTES, AlertDispatcher
from blockfeed.gateway.limits import (
    ACCEPT_ERROR,
    LogThrottle,
    ReplayPacer,
    ThrottledMessages,
    connection_limit,
    default_max_sse_clients,
    install_accept_error_throttle,
)
from blockfeed.gateway.protocol import MAX_HEAD_BYTES, MAX_HEADERS
from blockfeed.types import FeedEvent, Mode, ModeChanged

WAIT_S = 20.0


async def wait_until(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    """Bounded wait for a condition that the server task makes true."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - state changed by the server task
            await asyncio.sleep(0.005)


async def raw_request(url: str, payload: bytes, *, rcvbuf: int | None = None) -> socket.socket:
    """A non-blocking loopback socket that has sent ``payload`` (and reads nothing yet)."""
    port = int(url.rsplit(":", 1)[1])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, payload)
    return sock


async def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (bounded by the caller)."""
    loop = asyncio.get_running_loop()
    chunks = []
    while chunk := await loop.sock_recv(sock, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


# --- descriptors and connection caps ------------------------------------------------------------


def test_caps_follow_the_open_file_limit() -> None:
    """With 1,024 descriptors: 896 streams, 960 connections (room for /status); never above 20k."""
    assert default_max_sse_clients(1024) == 896
    assert connection_limit(1024) == 960
    assert default_max_sse_clients(1 << 20) == 20_000
    assert default_max_sse_clients(100) >= 16 and connection_limit(100) > 16


async def test_stream_cap_answers_503_with_retry_after() -> None:
    """At the SSE client cap a new stream gets 503, Retry-After and Connection: close."""
    feed = FakeFeed(store=FakeStore())
    app = create_app(feed=feed, store=feed.store, options=GatewayOptions(max_sse_clients=1))
    async with serve(app) as url, httpx.AsyncClient(timeout=WAIT_S) as http:
        async with http.stream("GET", f"{url}/stream") as first:
            assert first.status_code == 200
            second = await http.get(f"{url}/stream")
            assert second.status_code == 503
            assert second.headers["retry-after"] == "5"
            assert second.headers["connection"] == "close"
            assert "too many stream clients" in second.json()["detail"]
            assert (await http.get(f"{url}/status")).status_code == 200


def test_accept_errors_are_one_line_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    """2,000 accept() failures give one warning line without traceback; other errors pass on."""
    loop = asyncio.new_event_loop()
    passed: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: passed.append(context))
    try:
        install_accept_error_throttle(loop, interval_s=3600)
        emfile = OSError(errno.EMFILE, "Too many open files")
        with caplog.at_level(logging.WARNING, logger="blockfeed.gateway"):
            for _ in range(2000):
                loop.call_exception_handler({"message": ACCEPT_ERROR, "exception": emfile})
            loop.call_exception_handler({"message": "something else"})
    finally:
        loop.close()
    lines = [r for r in caplog.records if r.name == "blockfeed.gateway"]
    assert len(lines) == 1 and "Too many open files" in lines[0].getMessage()
    assert lines[0].exc_info is None
    assert [c["message"] for c in passed] == ["something else"]


def test_log_throttle_reports_the_swallowed_count() -> None:
    """Within the interval hits are swallowed; the next line carries their number."""
    now = [0.0]
    throttle = LogThrottle(10.0, clock=lambda: now[0])
    assert throttle.hit() == 1
    assert [throttle.hit() for _ in range(5)] == [0] * 5
    now[0] = 10.0
    assert throttle.hit(2) == 7
    assert throttle.total == 8


async def test_connection_limit_refuses_streams_but_not_short_requests() -> None:
    """At uvicorn's limit a new stream gets 503 while /status on another connection is served."""
    feed = FakeFeed(store=FakeStore())
    app = create_app(feed=feed, store=feed.store, options=GatewayOptions())
    async with serve(app, bounded=True, limit_concurrency=2) as url, httpx.AsyncClient(
        timeout=WAIT_S
    ) as http:
        async with http.stream("GET", f"{url}/stream") as first:
            assert first.status_code == 200
            assert (await http.get(f"{url}/status")).status_code == 200
            assert (await http.get(f"{url}/stream")).status_code == 503


def test_throttled_messages_filter_counts_repeats() -> None:
    """A listed library warning passes once per interval with a count; others pass untouched."""
    now = [0.0]
    noise = ThrottledMessages(("Exceeded concurrency limit.",), 10.0, clock=lambda: now[0])

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.error", logging.WARNING, __file__, 1, msg, None, None)

    assert noise.filter(record("Exceeded concurrency limit."))
    assert not any(noise.filter(record("Exceeded concurrency limit.")) for _ in range(99))
    now[0] = 11.0
    late = record("Exceeded concurrency limit.")
    assert noise.filter(late) and "(100 time(s)" in late.getMessage()
    assert noise.filter(record("something else"))


# --- request heads ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b"GET /health HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 10_000),
        b"GET /health HTTP/1.1\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADERS + 1))
        + b"\r\n",
    ],
    ids=["unfinished-huge-header", "too-many-headers"],
)
async def test_oversized_request_head_gets_431_and_close(head: bytes) -> None:
    """A head beyond the byte or field limit is answered 431 and the connection closed."""
    feed = FakeFeed(store=FakeStore())
    app = create_app(feed=feed, store=feed.store, options=GatewayOptions())
    async with serve(app, bounded=True) as url, httpx.AsyncClient(timeout=WAIT_S) as http:
        sock = await raw_request(url, head)
        try:
            answer = await asyncio.wait_for(read_all(sock), WAIT_S)
        finally:
            sock.close()
        assert answer.startswith(b"HTTP/1.1 431 ")
        ok = await http.get(f"{url}/health", headers={"X-Fine": "a" * 1000})
        assert ok.status_code == 200


# --- stalled clients and replay -----------------------------------------------------------------


def _abort_spy(app: Any, aborted: list[bool]) -> Any:
    """ASGI wrapper that records when the gateway aborts a connection."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        extension = scope.get("extensions", {}).get("blockfeed.abort")
        if extension is not None:
            real = extension["abort"]

            def abort() -> None:
                aborted.append(True)
                real()

            extension["abort"] = abort
        await app(scope, receive, send)

    return wrapped


async def test_client_that_stops_reading_is_dropped_and_aborted() -> None:
    """A stream whose socket takes nothing for write_timeout_s is dropped and its socket aborted."""
    feed = FakeFeed(store=FakeStore(window=100_000))
    options = GatewayOptions(client_queue_size=100_000, write_timeout_s=0.5, ring_size=64)
    app = create_app(feed=feed, store=feed.store, options=options)
    hub = app.state.gateway.hub
    aborted: list[bool] = []
    async with serve(_abort_spy(app, aborted), sndbuf_bytes=8192, bounded=True) as url:
        sock = await raw_request(
            url, b"GET /stream HTTP/1.1\r\nHost: gw\r\n\r\n", rcvbuf=4096
        )
        try:
            await wait_until(lambda: hub.client_count == 1)

            async def fill() -> None:
                while hub.dropped_total == 0:
                    feed.emit_block()
                    await asyncio.sleep(0.001)

            await asyncio.wait_for(fill(), WAIT_S)
            await wait_until(lambda: bool(aborted))
            assert hub.client_count == 0
            await asyncio.wait_for(read_all(sock), WAIT_S)  # the connection ends
        except ConnectionResetError:
            pass
        finally:
            sock.close()


async def test_many_replaying_clients_are_paced_and_complete() -> None:
    """40 clients replaying 300 stored blocks share a small budget; each gets all, in order."""
    store = FakeStore(window=10_000)
    feed = FakeFeed(store=store)
    feed.mode = Mode.STREAMING
    for _ in range(300):
        feed.emit_block()
    app = create_app(feed=feed, store=store, options=GatewayOptions(ring_size=16))
    hub = app.state.gateway.hub
    hub.pacer = ReplayPacer(frames_per_slice=128, slice_s=0.005)

    async with serve(app, bounded=True) as url, httpx.AsyncClient(timeout=WAIT_S) as http:

        async def client() -> list[int]:
            async with http.stream("GET", f"{url}/stream?from=1000") as response:
                return await SseReader(response).blocks_until(1299)

        results = await asyncio.wait_for(asyncio.gather(*(client() for _ in range(40))), WAIT_S)
    assert all(got == list(range(1000, 1300)) for got in results)
    assert hub.pacer.waits > 0


async def test_store_blocks_are_read_once_for_many_replays() -> None:
    """Five replays of the same stored range query the store only for the first one."""
    store = FakeStore(window=10_000)
    feed = FakeFeed(store=store)
    for _ in range(300):
        feed.emit_block()
    calls: list[int] = []
    real_get_range = store.get_range

    def counting_get_range(start: int, limit: int) -> list[Any]:
        calls.append(start)
        return real_get_range(start, limit)

    store.get_range = counting_get_range  # type: ignore[method-assign]
    app = create_app(feed=feed, store=store, options=GatewayOptions(ring_size=16))
    async with serve(app, bounded=True) as url, httpx.AsyncClient(timeout=WAIT_S) as http:
        for round_ in range(5):
            async with http.stream("GET", f"{url}/stream?from=1000") as response:
                got = await asyncio.wait_for(SseReader(response).blocks_until(1299), WAIT_S)
            assert got == list(range(1000, 1300))
            if round_ == 0:
                first_round = len(calls)
    assert 0 < first_round == len(calls)


async def test_replay_pacer_budget_per_slice() -> None:
    """Within a slice the budget is shared; the next caller waits exactly until the slice ends."""
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = ReplayPacer(frames_per_slice=100, slice_s=0.02, clock=lambda: now[0], sleep=sleep)
    await pacer.take(64)
    await pacer.take(64)  # still under the budget when asked: goes through
    assert slept == []
    await pacer.take(64)  # over: waits for the next slice
    assert slept == [pytest.approx(0.02)] and pacer.waits == 1


# --- row 9: resume points, admin token, docs ----------------------------------------------------


async def test_last_event_id_beyond_range_is_answered_like_from() -> None:
    """Last-Event-ID 9999999999 gets the same 422 as ?from=9999999999, not a silent stream."""
    feed = FakeFeed(store=FakeStore())
    feed.emit_block()
    app = create_app(feed=feed, store=feed.store, manage_feed=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        by_header = await http.get("/stream", headers={"Last-Event-ID": "9999999999"})
        by_query = await http.get("/stream", params={"from": "9999999999"})
    assert by_header.status_code == by_query.status_code == 422
    header_error, query_error = by_header.json()["detail"][0], by_query.json()["detail"][0]
    assert header_error["type"] == query_error["type"] == "less_than_equal"
    assert header_error["loc"] == ["header", "last-event-id"]


@pytest.mark.parametrize("token", ["        ", " padded-admin-token ", "\t"])
def test_blank_or_padded_admin_token_is_refused(
    token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token that can never match is an error at start, from settings and from options."""
    from blockfeed.config import load_settings

    with pytest.raises(ConfigError, match="admin token must not be blank"):
        GatewayOptions(admin_token=token)
    monkeypatch.setenv("BLOCKFEED_ADMIN_TOKEN", token)
    with pytest.raises(ConfigError, match="admin token must not be blank"):
        load_settings()


async def test_docs_are_served_without_a_cdn() -> None:
    """/docs and /redoc load their scripts from the gateway itself, and those are served."""
    feed = FakeFeed(store=FakeStore())
    app = create_app(feed=feed, store=feed.store, manage_feed=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        for page, script in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
            html = (await http.get(page)).text
            assert f'src="/docs-assets/{script}"' in html, page
            assert "cdn." not in html and "fonts.googleapis" not in html, page
            asset = await http.get(f"/docs-assets/{script}")
            assert asset.status_code == 200 and len(asset.content) > 100_000


# --- webhooks -----------------------------------------------------------------------------------


class Hostile:
    """Webhook receivers that misbehave: an endless 200 body, or no answer at all."""

    def __init__(self) -> None:
        self.body_bytes = 0
        self.release = asyncio.Event()
        self.hanging = 0

    async def endless(self, request: Request) -> Response:
        await request.body()

        async def chunks() -> AsyncIterator[bytes]:
            chunk = b"x" * 65536
            while not self.release.is_set() and not await request.is_disconnected():
                self.body_bytes += len(chunk)
                yield chunk
                await asyncio.sleep(0)  # same loop as the client: let it read

        return StreamingResponse(chunks(), status_code=200)

    async def hang(self, request: Request) -> Response:
        self.hanging += 1
        await self.release.wait()
        return Response(status_code=200)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/endless", self.endless, methods=["POST"]),
                Route("/hang", self.hang, methods=["POST"]),
            ]
        )


class Healthy:
    def __init__(self) -> None:
        self.kinds: list[str] = []

    async def handle(self, request: Request) -> Response:
        self.kinds.append((await request.json())["kind"])
        return Response(status_code=200)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self.handle, methods=["POST"])])


def _events() -> list[FeedEvent]:
    return [
        ModeChanged(at=1.0, reason="socket closed",
                    old_mode=Mode.STREAMING, new_mode=Mode.DISCONNECTED),
        ModeChanged(at=2.0, reason="restored",
                    old_mode=Mode.POLLING, new_mode=Mode.STREAMING),
    ]


async def test_endless_webhook_body_is_cut_and_never_delays_others() -> None:
    """An endless 200 body is read up to the limit; a hung webhook never delays a healthy one."""
    hostile, healthy = Hostile(), Healthy()
    async with serve(hostile.app()) as bad_url, serve(healthy.app()) as good_url:
        dispatcher = AlertDispatcher(
            [f"{bad_url}/endless", f"{bad_url}/hang", f"{good_url}/hook"],
            network="local", min_interval_s=0, retries=0, timeout_s=60,
        )
        try:
            async with dispatcher:
                for event in _events():
                    dispatcher.on_event(event)
                # The hung webhook holds its first alert for up to 60 s; the others go on.
                await wait_until(lambda: healthy.kinds == ["disconnected", "recovered"])
                await wait_until(lambda: dispatcher.counts[("recovered", "sent")] == 2)
                assert hostile.hanging == 1
                assert dispatcher.counts[("disconnected", "sent")] == 2
                hostile.release.set()
        finally:
            hostile.release.set()
    # What the endless receiver produced is bounded by socket buffers, not by the stream.
    assert MAX_RESPONSE_BYTES <= 64 * 1024
    assert hostile.body_bytes < 64 * 1024 * 1024


async def test_webhook_delivery_has_a_total_timeout() -> None:
    """A receiver that never answers fails after timeout_s instead of holding its queue."""
    hostile = Hostile()
    async with serve(hostile.app()) as bad_url:
        dispatcher = AlertDispatcher(
            [f"{bad_url}/hang"], network="local", min_interval_s=0, retries=0, timeout_s=0.3
        )
        try:
            async with dispatcher:
                for event in _events():
                    dispatcher.on_event(event)
                await asyncio.wait_for(dispatcher.wait_idle(), WAIT_S)
            assert dispatcher.counts[("disconnected", "failed")] == 1
            assert dispatcher.counts[("recovered", "failed")] == 1
            assert hostile.hanging == 2
        finally:
            hostile.release.set()
