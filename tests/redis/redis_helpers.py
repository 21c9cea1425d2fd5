"""Small helpers shared by the Redis tests: read a stream back, wait on a condition, fake feed."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
from blockfeed.sinks._stream_entries import block_from_entry
from blockfeed.types import Block

WAIT_TIMEOUT_S = 15.0
"""Generous: the machine is shared; a passing test returns as soon as the condition holds."""


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
