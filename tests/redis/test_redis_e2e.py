"""End to end: two BlockFeeds on one faulty devnode publish into one stream; a reader checks it."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable

import pytest
from redis_helpers import stream_blocks, wait_until

from blockfeed.devnode import DevNode, DevNodeConfig
from blockfeed.feed import BlockFeed, FeedConfig
from blockfeed.redis import RedisPublisher, consume
from blockfeed.types import Block
from conftest import RedisServer

pytestmark = pytest.mark.redis

T = 0.1
WAIT_S = 30.0


def fast_retries() -> Iterable[float]:
    return itertools.repeat(0.05)


async def test_two_feeds_publish_one_stream_through_node_faults(
    redis_server: RedisServer, stream_name: str
) -> None:
    """Socket closes and a silent subscription hit both feeds: every number once, linked."""
    config = DevNodeConfig(block_time_s=T, finality_lag=2, start_block=6_940_000, seed=5)
    client = redis_server.client()

    def top() -> int:
        entries = client.xrevrange(stream_name, "+", "-", count=1)
        return int(entries[0][0].split("-")[0]) if entries else 0

    async with DevNode(config) as node:
        await node.wait_for_finalized(config.start_block + 5, timeout_s=WAIT_S)
        start = node.chain.finalized_number
        fast = FeedConfig.for_block_time(T, log_blocks=False)
        feeds = [BlockFeed([node.ws_url], fast, start_at=start) for _ in range(2)]
        publishers = [
            RedisPublisher(redis_server.url, stream_name, reconnect_delays=fast_retries)
            for _ in range(2)
        ]
        for publisher, feed in zip(publishers, feeds, strict=True):
            publisher.attach(feed)
        reader = consume(redis_server.url, stream_name, after=start - 1, read_block_s=0.2)
        read: list[Block] = []

        async def read_all() -> None:
            async for block in reader:
                read.append(block)

        async with publishers[0], publishers[1], feeds[0], feeds[1], reader:
            reading = asyncio.ensure_future(read_all())
            await wait_until(lambda: top() >= start + 10, timeout_s=WAIT_S)
            node.faults.inject("close", seconds=0)  # F1 on every socket
            await wait_until(lambda: top() >= start + 20, timeout_s=WAIT_S)
            node.faults.inject("sub_stall", seconds=0.8)  # F4: subscriptions go silent
            await wait_until(lambda: top() >= start + 35, timeout_s=WAIT_S)
            end = top()
            await wait_until(lambda: bool(read) and read[-1].number >= end, timeout_s=WAIT_S)
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
        # After the publishers closed: closing drains their outboxes, so a snapshot taken
        # before it could miss entries that are in the stream.
        statuses = [p.status() for p in publishers]

    stream = stream_blocks(client, stream_name)
    assert stream[0].number == start
    assert [b.number for b in stream] == list(range(start, start + len(stream)))
    assert all(b.parent_hash == a.hash for a, b in itertools.pairwise(stream))
    assert all(b.hash == node.chain.hash_of(b.number) for b in stream)  # canonical
    assert read == stream[: len(read)] and read[-1].number >= end
    assert sum(s["published"] for s in statuses) == len(stream)
    assert all(s["errors"] == 0 for s in statuses)
