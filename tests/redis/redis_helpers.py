"""Small helpers shared by the Redis tests: read a stream back, wait on a condition, fake feed."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import redis
from blockfeed.redis import RedisPublisher, StreamConsumer, consume
from blockfeed.sinks._stream_entries import block_from_entry, entry_fields, stream_id
from blockfeed.types import Block

if TYPE_CHECKING:  # only a type: importing "conftest" depends on which folder was collected first
    from conftest import RedisServer

WAIT_TIMEOUT_S = 15.0
"""Generous: the machine is shared; a passing test returns as soon as the condition holds."""


def fast_retries() -> Iterable[float]:
    """Reconnect quickly in tests (the real default is jittered backoff up to 5 s)."""
    return itertools.repeat(0.05)


def publisher(server: RedisServer, stream: str, **options: object) -> RedisPublisher:
    """A publisher that retries and pings quickly."""
    options.setdefault("reconnect_delays", fast_retries)
    options.setdefault("idle_ping_s", 0.2)
    return RedisPublisher(server.url, stream, **options)  # type: ignore[arg-type]


def reader(server: RedisServer, stream: str, **options: object) -> StreamConsumer:
    """A consumer that retries quickly and blocks 0.2 s per read (unless told otherwise)."""
    options.setdefault("reconnect_delays", fast_retries)
    options.setdefault("read_block_s", 0.2)
    return consume(server.url, stream, **options)  # type: ignore[arg-type]


def put(server: RedisServer, stream: str, blocks: list[Block]) -> None:
    """Write entries exactly as the publisher does, synchronously."""
    client = server.client()
    for block in blocks:
        client.xadd(stream, entry_fields(block), id=stream_id(block.number))


async def take(consumer: StreamConsumer, count: int) -> list[Block]:
    """The next ``count`` blocks, or fail after a generous timeout."""

    async def run() -> list[Block]:
        return [await anext(consumer) for _ in range(count)]

    return await asyncio.wait_for(run(), WAIT_TIMEOUT_S)


def stream_blocks(client: redis.Redis, stream: str) -> list[Block]:
    """Every entry of ``stream``, decoded and verified, in stream order."""
    return [block_from_entry(i, f, stream=stream) for i, f in client.xrange(stream, "-", "+")]


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], *, timeout_s: float = WAIT_TIMEOUT_S
) -> None:
    """Return once ``condition()`` holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.01)


class FakeSubscription:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeFeed:
    """Just enough of BlockFeed.subscribe for RedisPublisher.attach."""

    def __init__(self) -> None:
        self.subscriptions: list[tuple[Any, str, int, FakeSubscription]] = []

    def subscribe(self, callback: Any, *, name: str, maxsize: int) -> FakeSubscription:
        sub = FakeSubscription()
        self.subscriptions.append((callback, name, maxsize, sub))
        return sub

    async def deliver(self, block: Block) -> None:
        for callback, _name, _maxsize, sub in self.subscriptions:
            if not sub.cancelled:
                result = callback(block)
                if inspect.isawaitable(result):
                    await result
