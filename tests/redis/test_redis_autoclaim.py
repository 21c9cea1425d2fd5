"""Consumer groups claim a dead consumer's pending blocks (XAUTOCLAIM)."""

from __future__ import annotations

import pytest
from redis_chain import make_chain
from redis_helpers import put, take
from redis_helpers import reader as _reader

from blockfeed.errors import ConfigError
from blockfeed.redis import StreamConsumer, consume
from conftest import RedisServer

pytestmark = pytest.mark.redis


def reader(server: RedisServer, stream: str, **options: object) -> StreamConsumer:
    """These tests read with a 0.1 s block, so a claim shows up within a read or two."""
    options.setdefault("read_block_s", 0.1)
    return _reader(server, stream, **options)


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
