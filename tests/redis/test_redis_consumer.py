"""consume() against a real redis-server: in order, each once, across restarts; groups."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest
from redis_chain import assert_chain, make_chain
from redis_helpers import fast_retries, put, reader, take, wait_until

from blockfeed.errors import MalformedFrame, VerificationError
from blockfeed.redis import RedisPublisher, RedisUnavailable, StreamConsumer, StreamGap, consume
from blockfeed.sinks._stream_entries import stream_id
from blockfeed.types import Block
from conftest import RedisServer

pytestmark = pytest.mark.redis

READ_TIMEOUT_S = 15.0


async def test_after_n_yields_the_next_blocks_then_follows_new_ones(
    redis_server: RedisServer, stream_name: str
) -> None:
    """after=N starts at N+1 with exact, verified blocks, then waits for and yields new ones."""
    chain = make_chain(30)
    put(redis_server, stream_name, chain[:20])
    async with reader(redis_server, stream_name, after=chain[4].number) as blocks:
        first = await take(blocks, 15)
        assert first == chain[5:20]
        waiting = asyncio.ensure_future(take(blocks, 10))
        put(redis_server, stream_name, chain[20:])
        later = await waiting
    assert later == chain[20:]
    assert all(b.header == c.header for b, c in zip(first + later, chain[5:], strict=True))


async def test_blocks_read_back_with_their_contents(
    redis_server: RedisServer, stream_name: str
) -> None:
    """Entries written with contents are consumed with their timestamp, spec version, events."""
    chain = [dataclasses.replace(b, timestamp=1_700_000_000_000 + b.number, spec_version=218,
                                 events=[{"index": 0, "pallet": "System", "name": "Remarked",
                                          "fields": {"n": b.number}}])
             for b in make_chain(5)]
    put(redis_server, stream_name, chain)
    async with reader(redis_server, stream_name, after=chain[0].number - 1) as blocks:
        got = await take(blocks, 5)
    assert_chain(got, chain)
    assert [(b.timestamp, b.spec_version, b.events) for b in got] == [
        (b.timestamp, b.spec_version, b.events) for b in chain]


async def test_no_after_starts_at_the_newest_block(
    redis_server: RedisServer, stream_name: str
) -> None:
    """Without after=, reading starts at the stream's newest block (like a feed at the head)."""
    chain = make_chain(12)
    put(redis_server, stream_name, chain[:10])
    async with reader(redis_server, stream_name) as blocks:
        head = await take(blocks, 1)
        put(redis_server, stream_name, chain[10:])
        rest = await take(blocks, 2)
        assert blocks.last_number == chain[-1].number
    assert head + rest == chain[9:]


async def test_empty_stream_without_after_yields_the_first_block_to_arrive(
    redis_server: RedisServer, stream_name: str
) -> None:
    """Reading an empty stream waits, then starts with whatever block is published first."""
    chain = make_chain(3)
    async with reader(redis_server, stream_name) as blocks:
        waiting = asyncio.ensure_future(take(blocks, 3))
        await wait_until(lambda: blocks.status()["connected"])  # reading an empty stream
        put(redis_server, stream_name, chain)
        assert await waiting == chain


async def test_a_consumer_restarted_mid_stream_misses_nothing(
    redis_server: RedisServer, stream_name: str
) -> None:
    """Stopping after block k and starting again with after=k gives k+1.. with no repeats."""
    chain = make_chain(100)
    put(redis_server, stream_name, chain)
    seen: list[Block] = []
    position = chain[0].number - 1
    for batch in (13, 1, 40, 46):
        async with reader(redis_server, stream_name, after=position, read_count=7) as blocks:
            seen += await take(blocks, batch)
            position = blocks.last_number
            assert position is not None
    assert_chain(seen, chain)


async def test_consumer_rides_out_a_redis_restart_with_persistence(
    persistent_redis: RedisServer, stream_name: str
) -> None:
    """A lagging consumer and a publisher both survive Redis going away: every block once."""
    chain = make_chain(150)
    async with RedisPublisher(
        persistent_redis.url, stream_name, reconnect_delays=fast_retries, idle_ping_s=0.2
    ) as pub:
        for block in chain[:60]:
            await pub.publish(block)
        assert await pub.flush(READ_TIMEOUT_S)
        async with reader(
            persistent_redis, stream_name, after=chain[0].number - 1, read_count=10
        ) as blocks:
            seen = await take(blocks, 25)  # still 35 behind when Redis stops
            persistent_redis.stop()
            for block in chain[60:]:
                await pub.publish(block)
            pending = asyncio.ensure_future(take(blocks, 125))
            await wait_until(lambda: blocks.status()["connected"] is False)
            persistent_redis.start()
            seen += await pending
            status = blocks.status()
    assert_chain(seen, chain)
    assert status["reconnects"] >= 1 and status["gaps"] == 0


async def test_consumer_and_memory_outbox_survive_a_redis_restart_without_persistence(
    own_redis: RedisServer, stream_name: str
) -> None:
    """A caught-up consumer continues with the blocks the outbox re-sends into the new stream."""
    chain = make_chain(90)
    async with RedisPublisher(
        own_redis.url, stream_name, reconnect_delays=fast_retries, idle_ping_s=0.2
    ) as pub:
        for block in chain[:30]:
            await pub.publish(block)
        assert await pub.flush(READ_TIMEOUT_S)
        async with reader(own_redis, stream_name, after=chain[0].number - 1) as blocks:
            seen = await take(blocks, 30)
            own_redis.stop()
            for block in chain[30:]:
                await pub.publish(block)
            own_redis.start()
            seen += await take(blocks, 60)
    assert_chain(seen, chain)


async def test_a_stream_trimmed_past_after_raises_a_clear_gap(
    redis_server: RedisServer, stream_name: str
) -> None:
    """When the blocks after `after` are gone, StreamGap says which; allow_gaps goes on."""
    chain = make_chain(50)
    put(redis_server, stream_name, chain)
    redis_server.client().xtrim(stream_name, maxlen=20, approximate=False)
    after = chain[9].number
    with pytest.raises(StreamGap) as gap:
        async with reader(redis_server, stream_name, after=after) as blocks:
            await take(blocks, 1)
    assert (gap.value.expected, gap.value.found) == (chain[10].number, chain[30].number)
    assert f"--from {chain[30].number}" in str(gap.value)

    reported: list[StreamGap] = []
    async with reader(
        redis_server, stream_name, after=after, allow_gaps=True, on_gap=reported.append
    ) as blocks:
        assert await take(blocks, 20) == chain[30:]
        assert blocks.status()["gaps"] == 1
    assert [(g.expected, g.found) for g in reported] == [(chain[10].number, chain[30].number)]


async def test_a_gap_in_the_middle_of_the_stream_is_caught(
    redis_server: RedisServer, stream_name: str
) -> None:
    """A missing block between two present ones raises StreamGap, after the blocks before it."""
    chain = make_chain(10)
    put(redis_server, stream_name, chain[:4] + chain[6:])
    async with reader(redis_server, stream_name, after=chain[0].number - 1) as blocks:
        assert await take(blocks, 4) == chain[:4]
        with pytest.raises(StreamGap, match="blocks"):
            await take(blocks, 1)


async def test_a_broken_parent_link_is_never_yielded(
    redis_server: RedisServer, stream_name: str
) -> None:
    """An entry from another chain after ours raises VerificationError instead of a block."""
    ours, theirs = make_chain(6, seed=1), make_chain(6, seed=2)
    put(redis_server, stream_name, ours[:3] + theirs[3:])
    async with reader(redis_server, stream_name, after=ours[0].number - 1) as blocks:
        assert await take(blocks, 3) == ours[:3]
        with pytest.raises(VerificationError, match="two chains"):
            await take(blocks, 1)
    # The first block is checked against block `after` too, looked up in the stream.
    async with reader(redis_server, stream_name, after=ours[2].number) as blocks:
        with pytest.raises(VerificationError, match="two chains"):
            await take(blocks, 1)


async def test_a_foreign_entry_is_reported_not_misread(
    redis_server: RedisServer, stream_name: str
) -> None:
    """An entry blockfeed did not write raises MalformedFrame naming the entry."""
    redis_server.client().xadd(stream_name, {"event": "login"}, id="5-0")
    async with reader(redis_server, stream_name, after=0) as blocks:
        with pytest.raises(MalformedFrame, match="5-0"):
            await take(blocks, 1)


async def test_unreachable_redis_at_start_is_a_clear_error(stream_name: str) -> None:
    """The first connection is not retried: a dead port raises RedisUnavailable, redacted."""
    url = "redis://:hunter2hunter2@127.0.0.1:1/0"
    with pytest.raises(RedisUnavailable) as exc:
        async with consume(url, stream_name, connect_timeout_s=2) as blocks:
            await asyncio.wait_for(anext(blocks), READ_TIMEOUT_S)
    assert "127.0.0.1:1" in str(exc.value)
    assert "hunter2" not in str(exc.value)


async def test_outage_longer_than_max_outage_gives_up(
    own_redis: RedisServer, stream_name: str
) -> None:
    """With max_outage_s set, a consumer raises RedisUnavailable once Redis stays away too long."""
    chain = make_chain(2)
    put(own_redis, stream_name, chain)
    async with reader(own_redis, stream_name, after=chain[0].number - 1, max_outage_s=0.3) as b:
        assert await take(b, 2) == chain
        own_redis.stop()
        with pytest.raises(RedisUnavailable, match="giving up"):
            await take(b, 1)


async def test_group_consumers_share_the_blocks_and_acknowledge_them(
    redis_server: RedisServer, stream_name: str
) -> None:
    """Two consumers of one group get disjoint shares covering every block; all get acked."""
    chain = make_chain(60)
    put(redis_server, stream_name, chain)
    start = chain[0].number - 1
    a = reader(redis_server, stream_name, after=start, group="g", consumer="a", read_count=5)
    b = reader(redis_server, stream_name, after=start, group="g", consumer="b", read_count=5)
    got: dict[str, list[Block]] = {"a": [], "b": []}

    async def drain(name: str, consumer: StreamConsumer) -> None:
        async for block in consumer:
            got[name].append(block)
            if len(got["a"]) + len(got["b"]) == len(chain):
                return
            await asyncio.sleep(0)

    async with a, b:
        tasks = [asyncio.ensure_future(drain("a", a)), asyncio.ensure_future(drain("b", b))]
        await asyncio.wait(tasks, timeout=READ_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:  # the other one waits for more blocks; stop it before closing
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    numbers = sorted(x.number for x in got["a"] + got["b"])
    assert numbers == [x.number for x in chain]
    assert got["a"] and got["b"]
    for share in got.values():
        assert [x.number for x in share] == sorted(x.number for x in share)
    # Everything is acknowledged except, per consumer, the block it was working on when stopped.
    assert redis_server.client().xpending(stream_name, "g")["pending"] <= 2


async def test_group_consumer_gets_unacknowledged_blocks_again_after_a_restart(
    redis_server: RedisServer, stream_name: str
) -> None:
    """A reader that stops before finishing a block gets it again, first, when it comes back."""
    chain = make_chain(20)
    put(redis_server, stream_name, chain)
    opts = {"after": chain[0].number - 1, "group": "g", "consumer": "worker-1"}
    async with reader(redis_server, stream_name, **opts) as blocks:
        first = await take(blocks, 5)  # 0..3 acked by asking for the next; 4 never finished
    pending = redis_server.client().xpending(stream_name, "g")
    assert pending["pending"] >= 1 and pending["min"] == stream_id(chain[4].number)
    async with reader(redis_server, stream_name, **opts) as blocks:
        again = await take(blocks, 16)
    assert first == chain[:5]
    assert again == chain[4:]


async def test_group_manual_ack_and_restart_of_redis_recreates_the_group(
    own_redis: RedisServer, stream_name: str
) -> None:
    """auto_ack=False leaves blocks pending until ack(); a group lost with Redis is recreated."""
    chain = make_chain(10)
    put(own_redis, stream_name, chain[:5])
    opts = {"after": chain[0].number - 1, "group": "g", "consumer": "c", "auto_ack": False}
    async with reader(own_redis, stream_name, **opts) as blocks:
        got = await take(blocks, 5)
        assert own_redis.client().xpending(stream_name, "g")["pending"] == 5
        await blocks.ack(*got[:3])
        assert own_redis.client().xpending(stream_name, "g")["pending"] == 2
        own_redis.stop()
        own_redis.start()  # stream and group gone
        waiting = asyncio.ensure_future(take(blocks, 5))
        await wait_until(lambda: own_redis.client().exists(stream_name) == 1)
        put(own_redis, stream_name, chain[5:])
        assert await waiting == chain[5:]


async def test_consumer_logs_and_status_never_show_the_password(
    own_redis: RedisServer, stream_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With a password-protected Redis, reconnect warnings and status stay redacted."""
    secret = "sup3r-s3cret-pw"
    chain = make_chain(3)
    put(own_redis, stream_name, chain[:2])
    own_redis.client().config_set("requirepass", secret)
    url = f"redis://:{secret}@127.0.0.1:{own_redis.port}/0"
    caplog.set_level(logging.DEBUG, logger="blockfeed")
    async with RedisPublisher(url, stream_name, reconnect_delays=fast_retries) as pub:
        async with consume(
            url,
            stream_name,
            after=chain[0].number - 1,
            reconnect_delays=fast_retries,
            read_block_s=0.2,
        ) as blocks:
            assert await take(blocks, 2) == chain[:2]
            own_redis.stop()
            await pub.publish(chain[2])
            waiting = asyncio.ensure_future(take(blocks, 1))
            await wait_until(lambda: pub.status()["errors"] >= 1)
            await wait_until(lambda: blocks.status()["last_error"] is not None)
            texts = [str(pub.status()), str(blocks.status()), caplog.text]
            own_redis.start()  # comes back without the password: auth now fails, still redacted
            own_redis.client().config_set("requirepass", secret)
            assert await waiting == chain[2:]
    for text in [*texts, caplog.text]:
        assert secret not in text
    assert "127.0.0.1" in caplog.text
