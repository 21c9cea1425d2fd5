"""Small fakes of the feed and the store, shaped like the Protocols in ``blockfeed.gateway``.

The fake feed is driven by the test (``emit_block``, ``set_mode``): nothing runs on its own, so
every test decides exactly what the gateway sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from blockfeed.types import Block, FeedEvent, Mode, ModeChanged, Source


def fake_hash(number: int) -> str:
    return "0x" + hashlib.blake2b(number.to_bytes(8, "big"), digest_size=32).hexdigest()


def make_block(number: int, *, source: Source = Source.WS, at: float | None = None) -> Block:
    return Block(
        number=number,
        hash=fake_hash(number),
        parent_hash=fake_hash(number - 1),
        source=source,
        received_at=time.time() if at is None else at,
    )


@dataclass(frozen=True)
class FakeStatus:
    mode: Mode = Mode.STARTING
    finality_stalled: bool = False
    endpoint: str | None = "wss://node.example:443/ws/***"
    last_block: Block | None = None
    last_block_age_s: float | None = None
    started_at: float = 0.0
    mode_seconds: dict[str, float] = field(default_factory=dict)
    reconnects: int = 0
    blocks_by_source: dict[str, int] = field(default_factory=dict)
    transitions: dict[str, int] = field(default_factory=dict)
    probes: dict[str, int] = field(default_factory=dict)
    malformed_frames: int = 0
    block_interval_s: float = 12.0
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    subscribers: int = 0
    recent_events: list[FeedEvent] = field(default_factory=list)


class FakeSubscription:
    def __init__(self, feed: FakeFeed, callback: Callable[[Block], Any]) -> None:
        self._feed = feed
        self.callback = callback

    def cancel(self) -> None:
        if self in self._feed.subs:
            self._feed.subs.remove(self)


def _run_now(result: Any) -> None:
    """Finish an async subscriber callback synchronously, so tests see its effect at once.

    The gateway's callback only ever suspends in ``asyncio.sleep(0)`` (a bare yield), which
    ``send(None)`` resumes; anything that waits for real would be a bug in the fake's use.
    """
    if not inspect.iscoroutine(result):
        return
    for _ in range(1000):
        try:
            result.send(None)
        except StopIteration:
            return
    result.close()
    raise RuntimeError("subscriber callback did not finish")


class FakeStore:
    """The store's read API over a dict, trimmed to ``window`` blocks like the real one."""

    def __init__(self, window: int = 10_000) -> None:
        self.window = window
        self.blocks: dict[int, Block] = {}

    def save_blocks(self, blocks: list[Block]) -> None:
        for block in blocks:
            self.blocks[block.number] = block
        while len(self.blocks) > self.window:
            del self.blocks[min(self.blocks)]

    def get_block(self, number: int) -> Block | None:
        return self.blocks.get(number)

    def get_range(self, start: int, limit: int) -> list[Block]:
        out = []
        for number in range(start, start + limit):
            if number not in self.blocks:
                break
            out.append(self.blocks[number])
        return out

    def window_bounds(self) -> tuple[int, int] | None:
        if not self.blocks:
            return None
        return min(self.blocks), max(self.blocks)


class FakeFeed:
    """Implements FeedLike; the test pushes blocks and mode changes through it."""

    def __init__(self, *, store: FakeStore | None = None, clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock
        self.subs: list[FakeSubscription] = []
        self.hooks: list[Callable[[FeedEvent], Any]] = []
        self.mode = Mode.STARTING
        self.finality_stalled = False
        self.last: Block | None = None
        self.reconnect_requests: list[str] = []
        self.events: list[FeedEvent] = []
        self.running = False
        self.extra: dict[str, Any] = {}
        self.started_at = clock()

    # FeedLike
    def subscribe(self, callback: Callable[[Block], Any], *, name: str = "", maxsize: int = 0):
        sub = FakeSubscription(self, callback)
        self.subs.append(sub)
        return sub

    def add_event_hook(self, hook: Callable[[FeedEvent], Any]) -> None:
        self.hooks.append(hook)

    def status(self) -> FakeStatus:
        age = None if self.last is None else max(0.0, self.clock() - self.last.received_at)
        by_source: dict[str, int] = {}
        return FakeStatus(
            mode=self.mode,
            finality_stalled=self.finality_stalled,
            last_block=self.last,
            last_block_age_s=age,
            started_at=self.started_at,
            blocks_by_source=by_source,
            recent_events=list(self.events),
            subscribers=len(self.subs),
            **self.extra,
        )

    def request_reconnect(self, reason: str = "admin") -> None:
        self.reconnect_requests.append(reason)

    async def __aenter__(self) -> FakeFeed:
        self.running = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.running = False

    # test drivers
    def emit_block(self, number: int | None = None, *, source: Source = Source.WS) -> Block:
        if number is None:
            number = self.last.number + 1 if self.last else 1000
        block = make_block(number, source=source, at=self.clock())
        if self.store is not None:
            self.store.save_blocks([block])
        self.last = block
        for sub in list(self.subs):
            _run_now(sub.callback(block))
        return block

    def emit(self, event: FeedEvent) -> None:
        self.events.append(event)
        for hook in self.hooks:
            hook(event)

    def set_mode(self, mode: Mode, reason: str = "test") -> None:
        old, self.mode = self.mode, mode
        self.emit(ModeChanged(at=self.clock(), reason=reason, old_mode=old, new_mode=mode))


@contextlib.asynccontextmanager
async def serve(
    app: Any,
    *,
    timeout_s: float = 20.0,
    sndbuf_bytes: int | None = None,
    bounded: bool = False,
    limit_concurrency: int | None = None,
) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn on a free loopback port; yields its base URL.

    ``sndbuf_bytes`` fixes the kernel send buffer of accepted connections (they inherit it from
    the listening socket), so a client that stops reading blocks the server after little data.
    ``bounded`` uses the gateway's own HTTP protocol (head limits, abort handle), as ``serve`` does.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if sndbuf_bytes is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf_bytes)
    sock.bind(("127.0.0.1", 0))
    extra: dict[str, Any] = {}
    if bounded:
        from blockfeed.gateway.protocol import BoundedHttpToolsProtocol

        extra["http"] = BoundedHttpToolsProtocol
    if limit_concurrency is not None:
        extra["limit_concurrency"] = limit_concurrency
    config = uvicorn.Config(app, log_level="warning", lifespan="on", **extra)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(timeout_s):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn exited before starting")
                await asyncio.sleep(0.01)
        port = sock.getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout_s)
        sock.close()


async def sse_events(response: Any) -> AsyncIterator[dict[str, str]]:
    """Parse an SSE byte stream (httpx response) into dicts with event, id, data, comment."""
    current: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in current or "event" in current:  # a lone "retry:" is not an event
                yield current
            current = {}
            continue
        if line.startswith(":"):
            yield {"comment": line[1:].strip()}
            continue
        name, _, value = line.partition(":")
        current[name] = value[1:] if value.startswith(" ") else value


class SseReader:
    """One parser per open stream (an httpx response can be iterated only once)."""

    def __init__(self, response: Any) -> None:
        self._events = sse_events(response)

    async def next(self) -> dict[str, str]:
        return await anext(self._events)

    async def next_named(self, name: str) -> dict[str, str]:
        while True:
            event = await self.next()
            if event.get("event") == name:
                return event

    async def blocks_until(self, until: int, seen: list[int] | None = None) -> list[int]:
        """Append block numbers to ``seen`` until block ``until`` arrives; checks id == number."""
        seen = [] if seen is None else seen
        while True:
            event = await self.next_named("block")
            number = int(event["id"])
            if json.loads(event["data"])["number"] != number:
                raise AssertionError(f"event id {number} does not match its data")
            seen.append(number)
            if number >= until:
                return seen
