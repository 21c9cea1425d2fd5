"""Consumer groups claim a dead consumer's pending blocks (XAUTOCLAIM)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable

import pytest
from redis_chain import make_chain

from blockfeed.errors import ConfigError
from blockfeed.redis import StreamConsumer, consume
from blockfeed.sinks._stream_entries import entry_fields, stream_id
from blockfeed.types import Block
from conftest import RedisServer

pytestmark = pytest.mark.redis

READ_TIMEOUT_S = 15.0


def fast_retries() -> Iterable[float]:
    return itertools.repeat(0.05)


def reader(server: RedisServer, stream: str, **options: object) -> StreamConsumer:
    options.setdefault("reconnect_delays", fast_retries)
    options.setdefault("read_block_s", 0.1)
    return consume(server.url, stream, **options)  # type: ignore[arg-type]


def put(server: RedisServer, stream: str, blocks: list[Block]) -> None:
    client = server.client()
    for block in blocks:
        client.xadd(stream, entry_fields(block), id=stream_id(block.number))


async def take(consumer: StreamConsumer, count: int) -> list[Block]:
    async def run() -> list[Block]:
        return [await anext(consumer) for _ in range(count)]

    return await asyncio.wait_for(run(), READ_TIMEOUT_S)


async def test_a_live_consumer_claims_what_a_dead_one_left_pending(
    redis_server: RedisServer, stream_name: str
) -> None:
    """Blocks a vanished consumer never acknowledged reach another consumer, verified, once."""
    chain = make_chain(30)
    put(redis_server, stream_name, chain[:10])
    start = chain[0].number - 1
    dead_opts = {"after": start, "group": "g", "consumer": "dead", "auto_ack": False}
    async with reader(redis_server, stream_name, **dead_opts) as dead:
        stranded = await take(dead, 10)  # read, never acknowledged; "dead" never comes back
    put(redis_server, stream_name, chain[10:])
    live_opts = {"after": start, "group": "g", "consumer": "live", "claim_idle_s": 0.05}
    async with reader(redis_server, stream_name, **live_opts) as live:
        got = await take(live, 30)
        assert live.status()["claimed"] == 10
    assert sorted(b.number for b in got) == [b.number for b in chain]
    assert {b.hash for b in got} == {b.hash for b in chain}
    assert {b.number for b in stranded} <= {b.number for b in got}
    pending = redis_server.client().xpending_range(stream_name, "g", "-", "+", 100)
    assert all(p["consumer"] == "live" for p in pending) and len(pending) <= 1


async def test_claiming_can_be_switched_off(redis_server: RedisServer, stream_name: str) -> None:
    """claim_idle_s=None leaves another consumer's pending blocks alone."""
    chain = make_chain(6)
    put(redis_server, stream_name, chain)
    start = chain[0].number - 1
    async with reader(redis_server, stream_name, after=start, group="g", consumer="a",
                      auto_ack=False, read_count=3) as a:  # fmt: skip
        await take(a, 3)
    async with reader(redis_server, stream_name, after=start, group="g", consumer="b",
                      claim_idle_s=None) as b:  # fmt: skip
        got = await take(b, 3)
        assert b.status()["claimed"] == 0
    assert [x.number for x in got] == [x.number for x in chain[3:]]
    with pytest.raises(ConfigError):
        consume(redis_server.url, stream_name, group="g", consumer="c", claim_idle_s=0)
