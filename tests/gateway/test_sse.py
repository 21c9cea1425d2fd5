"""GET /stream over a real uvicorn server on loopback: live, replay, resume, modes, slow clients."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from gateway_fakes import FakeFeed, FakeStore, SseReader, make_block, serve

from blockfeed.gateway import GatewayOptions, create_app
from blockfeed.types import FinalityStalled, Mode

WAIT_S = 20.0


def app_for(feed: FakeFeed, store: FakeStore | None, **opts: Any) -> Any:
    return create_app(feed=feed, store=store, options=GatewayOptions(**opts))


async def wait_until(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    """Bounded wait for a condition that real events make true."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - state changed by the server task, no event to await
            await asyncio.sleep(0.005)


@pytest.fixture
async def producer() -> AsyncIterator[Callable[[FakeFeed, int, float], asyncio.Task[None]]]:
    """Starts a task that keeps emitting blocks (the 'chain') while a test reconnects."""
    tasks: list[asyncio.Task[None]] = []

    def start(feed: FakeFeed, count: int, interval_s: float) -> asyncio.Task[None]:
        async def run() -> None:
            for _ in range(count):
                feed.emit_block()
                await asyncio.sleep(interval_s)

        task = asyncio.create_task(run())
        tasks.append(task)
        return task

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_live_blocks_and_initial_mode() -> None:
    """A new client first gets the current mode, then one `block` event per block, id = number."""
    feed = FakeFeed(store=FakeStore())
    feed.mode = Mode.STREAMING
    async with serve(app_for(feed, feed.store)) as url, httpx.AsyncClient(timeout=WAIT_S) as http:
        async with http.stream("GET", f"{url}/stream") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            reader = SseReader(response)
            first = await reader.next()
            assert first["event"] == "mode"
            assert json.loads(first["data"])["new_mode"] == "streaming"
            for n in range(500, 505):
                feed.emit_block(n)
            got = await asyncio.wait_for(reader.blocks_until(504), WAIT_S)
    assert got == [500, 501, 502, 503, 504]


async def test_resume_with_last_event_id_has_no_gap_or_duplicate(producer: Any) -> None:
    """Reconnecting with Last-Event-ID while blocks keep coming yields each number exactly once."""
    feed = FakeFeed(store=FakeStore())
    for n in range(1, 21):
        feed.emit_block(n)
    app = app_for(feed, feed.store, ring_size=32)
    async with serve(app) as url, httpx.AsyncClient(timeout=WAIT_S) as http:
        seen: list[int] = []
        async with http.stream("GET", f"{url}/stream", params={"from": 1}) as response:
            producer(feed, 400, 0.001)
            await asyncio.wait_for(SseReader(response).blocks_until(60, seen), WAIT_S)
        for _ in range(3):  # several disconnect/reconnect cycles while the chain moves on
            last = seen[-1]
            headers = {"Last-Event-ID": str(last)}
            # ?from= is what EventSource repeats on reconnect; Last-Event-ID must win over it.
            async with http.stream("GET", f"{url}/stream", params={"from": 1},
                                   headers=headers) as response:
                await asyncio.wait_for(SseReader(response).blocks_until(last + 60, seen), WAIT_S)
    assert seen == list(range(1, seen[-1] + 1))


async def test_from_replays_store_then_ring_then_live() -> None:
    """?from= replays from the store (older than the ring), then the ring, then live blocks."""
    store = FakeStore(window=500)
    feed = FakeFeed(store=store)
    for n in range(1000, 1300):
        feed.emit_block(n)
    app = app_for(feed, store, ring_size=8)
    async with serve(app) as url, httpx.AsyncClient(timeout=WAIT_S) as http:
        async with http.stream("GET", f"{url}/stream", params={"from": 1010}) as response:
            reader = SseReader(response)
            seen = await asyncio.wait_for(reader.blocks_until(1299), WAIT_S)
            for _ in range(5):
                feed.emit_block()
            await asyncio.wait_for(reader.blocks_until(1304, seen), WAIT_S)
    assert seen == list(range(1010, 1305))


async def test_gap_between_hub_and_store_is_filled() -> None:
    """Blocks the feed delivered before the hub subscribed are filled from the store, in order."""
    store = FakeStore()
    feed = FakeFeed(store=store)
    app = app_for(feed, store)
    async with serve(app) as url, httpx.AsyncClient(timeout=WAIT_S) as http:
        subs, feed.subs = feed.subs, []  # the hub misses 1..9 (only the store sees them)
        for n in range(1, 10):
            feed.emit_block(n)
        feed.subs = subs
        async with http.stream("GET", f"{url}/stream") as response:
            reader = SseReader(response)
            await reader.next()  # the mode snapshot
            feed.emit_block(10)
            feed.emit_block(11)
            first = await asyncio.wait_for(reader.blocks_until(11), WAIT_S)
        async with http.stream("GET", f"{url}/stream", headers={"Last-Event-ID": "3"}) as response:
            seen = await asyncio.wait_for(SseReader(response).blocks_until(11), WAIT_S)
    assert first == [10, 11]
    assert seen == list(range(4, 12))


async def test_mode_and_feed_events_are_streamed() -> None:
    """Mode changes arrive as `event: mode`, other feed events as `event: feed`, without ids."""
    feed = FakeFeed(store=FakeStore())
    async with serve(app_for(feed, feed.store)) as url, httpx.AsyncClient(timeout=WAIT_S) as http:
        async with http.stream("GET", f"{url}/stream") as response:
            reader = SseReader(response)
            assert (await reader.next())["event"] == "mode"
            feed.set_mode(Mode.POLLING, "socket silent")
            feed.emit(FinalityStalled(at=1.0, reason="no finality for 60 s"))
            mode = await asyncio.wait_for(reader.next(), WAIT_S)
            other = await asyncio.wait_for(reader.next(), WAIT_S)
    assert mode["event"] == "mode" and "id" not in mode
    assert json.loads(mode["data"])["new_mode"] == "polling"
    assert json.loads(mode["data"])["reason"] == "socket silent"
    assert other["event"] == "feed"
    assert json.loads(other["data"])["kind"] == "finality_stalled"


async def test_keepalive_comments_when_idle() -> None:
    """An idle stream sends `: keep-alive` comments so proxies keep it open."""
    feed = FakeFeed(store=FakeStore())
    app = app_for(feed, feed.store, keepalive_s=0.05)
    async with serve(app) as url, httpx.AsyncClient(timeout=WAIT_S) as http:
        async with http.stream("GET", f"{url}/stream") as response:
            reader = SseReader(response)
            async with asyncio.timeout(WAIT_S):
                while (await reader.next()).get("comment") != "keep-alive":
                    pass


async def test_future_from_waits_for_live_blocks() -> None:
    """?from= beyond the head is not an error: the stream starts when that block arrives."""
    feed = FakeFeed(store=FakeStore())
    feed.emit_block(100)
    async with serve(app_for(feed, feed.store)) as url, httpx.AsyncClient(timeout=WAIT_S) as http:
        async with http.stream("GET", f"{url}/stream", params={"from": 103}) as response:
            assert response.status_code == 200
            for _ in range(5):
                feed.emit_block()
            got = await asyncio.wait_for(SseReader(response).blocks_until(105), WAIT_S)
    assert got == [103, 104, 105]


async def test_slow_client_is_dropped_without_slowing_others() -> None:
    """A client that stops reading is dropped when its queue overflows; a reader gets all blocks."""
    feed = FakeFeed(store=FakeStore(window=100_000))
    app = create_app(feed=feed, store=feed.store,
                     options=GatewayOptions(client_queue_size=8, ring_size=64))
    hub = app.state.gateway.hub
    total = 3000
    async with serve(app, sndbuf_bytes=8192) as url, httpx.AsyncClient(timeout=WAIT_S) as http:
        port = int(url.rsplit(":", 1)[1])
        slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.setblocking(False)
        await asyncio.get_running_loop().sock_connect(slow, ("127.0.0.1", port))
        await asyncio.get_running_loop().sock_sendall(
            slow, b"GET /stream HTTP/1.1\r\nHost: gw\r\nAccept: text/event-stream\r\n\r\n"
        )
        async with http.stream("GET", f"{url}/stream") as response:
            await wait_until(lambda: hub.client_count == 2)

            async def produce() -> None:
                for _ in range(total):
                    feed.emit_block()
                    await asyncio.sleep(0)

            producing = asyncio.create_task(produce())
            fast = await asyncio.wait_for(
                SseReader(response).blocks_until(1000 + total - 1), WAIT_S
            )
            await producing
        assert hub.dropped_total == 1
        assert fast == list(range(1000, 1000 + total))
        received = await asyncio.wait_for(_read_until_closed(slow), WAIT_S)
        slow.close()
    ids = [int(line[4:]) for line in received.decode().splitlines() if line.startswith("id: ")]
    assert ids == list(range(1000, 1000 + len(ids)))  # what it got was in order, no gap
    assert len(ids) < total  # and it was cut off


async def _read_until_closed(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    chunks = []
    while True:
        chunk = await loop.sock_recv(sock, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


async def test_client_disconnect_unregisters() -> None:
    """Closing a stream removes the client from the hub (no leak of queues)."""
    feed = FakeFeed(store=FakeStore())
    app = app_for(feed, feed.store)
    hub = app.state.gateway.hub
    async with serve(app) as url, httpx.AsyncClient(timeout=WAIT_S) as http:
        for _ in range(3):
            async with http.stream("GET", f"{url}/stream") as response:
                await SseReader(response).next()
                assert hub.client_count == 1
        await wait_until(lambda: hub.client_count == 0)
    assert hub.connections_total == 3


async def test_too_many_clients_gets_503() -> None:
    """Beyond max_sse_clients, /stream answers 503 instead of degrading everyone."""
    feed = FakeFeed(store=FakeStore())
    app = app_for(feed, feed.store, max_sse_clients=1)
    async with serve(app) as url, httpx.AsyncClient(timeout=WAIT_S) as http:
        async with http.stream("GET", f"{url}/stream") as response:
            await SseReader(response).next()
            second = await http.get(f"{url}/stream")
    assert second.status_code == 503
    assert "too many stream clients" in second.json()["detail"]


async def test_burst_overflow_ends_stream_and_server_stays_responsive() -> None:
    """A client that overflows in one burst (its writer idle) gets its stream ended; no spin."""
    feed = FakeFeed(store=FakeStore())
    app = create_app(feed=feed, store=feed.store, options=GatewayOptions(client_queue_size=4))
    hub = app.state.gateway.hub
    async with serve(app) as url, httpx.AsyncClient(timeout=WAIT_S) as http:
        async with http.stream("GET", f"{url}/stream") as response:
            reader = SseReader(response)
            await reader.next()  # the mode snapshot: the writer now waits for blocks
            for _ in range(20):  # one synchronous burst, larger than the queue
                feed.emit_block()
            assert hub.dropped_total == 1
            async with asyncio.timeout(WAIT_S):
                with pytest.raises(StopAsyncIteration):
                    while True:
                        await reader.next()  # the server ends the stream
        assert (await http.get(f"{url}/health")).status_code == 200
        await wait_until(lambda: hub.client_count == 0)


async def test_backfill_burst_does_not_drop_a_reading_client() -> None:
    """A burst far larger than a client's queue (a backfill) reaches a reading client whole."""
    feed = FakeFeed(store=FakeStore(window=10_000))
    app = create_app(feed=feed, store=feed.store, options=GatewayOptions(client_queue_size=128))
    hub = app.state.gateway.hub
    async with serve(app) as url, httpx.AsyncClient(timeout=WAIT_S) as http:
        async with http.stream("GET", f"{url}/stream") as response:
            reader = SseReader(response)
            await reader.next()
            (callback,) = [sub.callback for sub in feed.subs]

            async def burst() -> None:  # as the real feed does: await each callback in turn
                for number in range(5000, 7000):
                    feed.last = block = make_block(number)
                    feed.store.save_blocks([block])  # type: ignore[union-attr]
                    await callback(block)

            await burst()
            got = await asyncio.wait_for(reader.blocks_until(6999), WAIT_S)
    assert got == list(range(5000, 7000))
    assert hub.dropped_total == 0


async def test_shutdown_ends_open_streams_cleanly() -> None:
    """On shutdown the gateway ends every open stream with a proper last chunk (no cut-off)."""
    from blockfeed.gateway.server import running_server

    feed = FakeFeed(store=FakeStore())
    app = app_for(feed, feed.store)
    hub = app.state.gateway.hub
    stop = asyncio.Event()
    url: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def run_server() -> None:
        async with running_server(app, host="127.0.0.1", port=0,
                                  before_shutdown=hub.close_all) as server:
            url.set_result(server.url)
            await stop.wait()

    runner = asyncio.create_task(run_server())
    try:
        async with httpx.AsyncClient(timeout=WAIT_S) as http:
            base = await asyncio.wait_for(url, WAIT_S)
            async with http.stream("GET", f"{base}/stream") as response:
                reader = SseReader(response)
                feed.emit_block(1)
                assert await asyncio.wait_for(reader.blocks_until(1), WAIT_S) == [1]
                stop.set()
                with pytest.raises(StopAsyncIteration):  # a clean end, not a protocol error
                    await asyncio.wait_for(reader.next(), WAIT_S)
        await asyncio.wait_for(runner, WAIT_S)
    finally:
        stop.set()
        await asyncio.gather(runner, return_exceptions=True)
    assert hub.client_count == 0
