"""RedisPublisher against a real redis-server: exactly once, in order, through restarts."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
from pathlib import Path

import pytest
from redis_chain import assert_chain, make_chain
from redis_helpers import FakeFeed, publisher, stream_blocks, wait_until

from blockfeed.redis import FROM_FIRST, RedisPublisher, consume
from blockfeed.sinks._stream_entries import entry_fields
from blockfeed.store import open_store
from conftest import RedisServer

pytestmark = pytest.mark.redis

FLUSH_TIMEOUT_S = 15.0


async def test_each_block_is_entry_number_0_with_all_fields(
    redis_server: RedisServer, stream_name: str
) -> None:
    """Published blocks appear as <number>-0 entries carrying every field, and status says so."""
    chain = make_chain(5)
    async with publisher(redis_server, stream_name) as pub:
        for block in chain:
            await pub.publish(block)
        assert await pub.flush(FLUSH_TIMEOUT_S)
        status = pub.status()
    entries = redis_server.client().xrange(stream_name, "-", "+")
    assert [entry_id for entry_id, _ in entries] == [f"{b.number}-0" for b in chain]
    assert [fields for _, fields in entries] == [entry_fields(b) for b in chain]
    assert stream_blocks(redis_server.client(), stream_name) == chain
    assert status["connected"] is True
    assert status["published"] == 5 and status["duplicates"] == 0
    assert status["last_published"] == chain[-1].number
    assert status["lag_blocks"] == 0 and status["outbox_len"] == 0
    assert status["errors"] == 0 and status["last_error"] is None


async def test_two_publishers_with_the_same_blocks_add_each_once_in_order(
    redis_server: RedisServer, stream_name: str
) -> None:
    """Two instances fed the same chain, interleaved and concurrently: every number once."""
    chain = make_chain(400)
    async with (
        publisher(redis_server, stream_name, batch_size=7) as a,
        publisher(redis_server, stream_name, batch_size=5) as b,
    ):
        # Alternate which one sees each chunk first, so both must win some adds.
        for k in range(0, 200, 20):
            first, second = (a, b) if (k // 20) % 2 == 0 else (b, a)
            for block in chain[k : k + 20]:
                await first.publish(block)
            assert await first.flush(FLUSH_TIMEOUT_S)
            for block in chain[k : k + 20]:
                await second.publish(block)
            assert await second.flush(FLUSH_TIMEOUT_S)

        # Then both at once, each at its own uneven pace.
        async def feed(pub: RedisPublisher, rng: random.Random) -> None:
            for block in chain[200:]:
                await pub.publish(block)
                if rng.random() < 0.3:
                    await asyncio.sleep(0)

        await asyncio.gather(feed(a, random.Random(1)), feed(b, random.Random(2)))
        assert await a.flush(FLUSH_TIMEOUT_S) and await b.flush(FLUSH_TIMEOUT_S)
        sa, sb = a.status(), b.status()
    assert_chain(stream_blocks(redis_server.client(), stream_name), chain)
    assert sa["published"] + sb["published"] == len(chain)
    assert sa["duplicates"] + sb["duplicates"] == len(chain)
    assert sa["published"] >= 100 and sb["published"] >= 100
    assert sa["errors"] == sb["errors"] == 0


async def test_new_instance_fed_overlapping_blocks_adds_nothing_twice(
    redis_server: RedisServer, stream_name: str
) -> None:
    """A restarted publisher re-fed from an earlier block skips what the stream already has."""
    chain = make_chain(60)
    async with publisher(redis_server, stream_name) as first:
        for block in chain[:40]:
            await first.publish(block)
        assert await first.flush(FLUSH_TIMEOUT_S)
    async with publisher(redis_server, stream_name) as second:
        for block in chain[25:]:
            await second.publish(block)
        assert await second.flush(FLUSH_TIMEOUT_S)
        status = second.status()
    assert_chain(stream_blocks(redis_server.client(), stream_name), chain)
    assert (status["duplicates"], status["published"]) == (15, 20)


async def test_publisher_cancelled_mid_batch_then_restarted_is_exactly_once(
    redis_server: RedisServer, stream_name: str
) -> None:
    """Closing with no drain time cancels the task mid-flight; a new instance fills the rest."""
    chain = make_chain(300)
    client = redis_server.client()
    first = publisher(redis_server, stream_name, batch_size=3, close_drain_s=0)
    await first.start()
    for block in chain[:200]:
        await first.publish(block)
    await wait_until(lambda: client.xlen(stream_name) >= 30)
    await first.aclose()  # cancels the drain task wherever it is
    published = client.xlen(stream_name)
    assert 30 <= published < 200
    async with publisher(redis_server, stream_name) as second:
        for block in chain[max(0, published - 10) :]:
            await second.publish(block)
        assert await second.flush(FLUSH_TIMEOUT_S)
    assert_chain(stream_blocks(client, stream_name), chain)


async def test_attach_publishes_what_the_feed_delivers_and_close_unsubscribes(
    redis_server: RedisServer, stream_name: str
) -> None:
    """attach() subscribes as "redis"; delivered blocks reach the stream; aclose cancels it."""
    chain = make_chain(10)
    feed = FakeFeed()
    pub = publisher(redis_server, stream_name)
    await pub.start()
    subscription = pub.attach(feed)
    (_callback, name, maxsize, fake_sub) = feed.subscriptions[0]
    assert (name, subscription) == ("redis", fake_sub) and maxsize > 0
    for block in chain:
        await feed.deliver(block)
    assert await pub.flush(FLUSH_TIMEOUT_S)
    await pub.aclose()
    assert fake_sub.cancelled
    assert_chain(stream_blocks(redis_server.client(), stream_name), chain)
    with pytest.raises(RuntimeError, match="closed"):
        await pub.publish(chain[0])


async def test_another_chain_in_the_stream_is_refused_and_reported(
    redis_server: RedisServer, stream_name: str
) -> None:
    """Same number with another hash, or a broken parent link, stops publishing with an error."""
    ours = make_chain(10, seed=1)
    theirs = make_chain(10, seed=2)
    async with publisher(redis_server, stream_name) as other:
        for block in theirs[:5]:
            await other.publish(block)
        assert await other.flush(FLUSH_TIMEOUT_S)
    async with publisher(redis_server, stream_name, close_drain_s=0) as pub:
        for block in ours[3:]:
            await pub.publish(block)
        await wait_until(lambda: pub.status()["errors"] >= 1)
        status = pub.status()
    assert "another chain" in status["last_error"]
    assert status["published"] == 0
    assert stream_blocks(redis_server.client(), stream_name) == theirs[:5]

    link_stream = stream_name + ":link"
    async with publisher(redis_server, link_stream) as other:
        for block in theirs[:5]:
            await other.publish(block)
        assert await other.flush(FLUSH_TIMEOUT_S)
    async with publisher(redis_server, link_stream, close_drain_s=0) as pub:
        for block in ours[5:]:
            await pub.publish(block)
        await wait_until(lambda: pub.status()["errors"] >= 1)
        status = pub.status()
    assert "has parent" in status["last_error"] and status["published"] == 0
    assert stream_blocks(redis_server.client(), link_stream) == theirs[:5]


async def test_a_stream_with_foreign_entries_is_not_written(
    redis_server: RedisServer, stream_name: str
) -> None:
    """A stream another program writes (auto IDs, other fields) is left alone, with an error."""
    client = redis_server.client()
    client.xadd(stream_name, {"event": "login"})
    async with publisher(redis_server, stream_name, close_drain_s=0) as pub:
        await pub.publish(make_chain(1)[0])
        await wait_until(lambda: pub.status()["errors"] >= 1)
        status = pub.status()
    assert "not written by blockfeed" in status["last_error"]
    assert client.xlen(stream_name) == 1


async def test_a_late_start_is_published_after_the_gap_and_counted(
    redis_server: RedisServer, stream_name: str
) -> None:
    """Blocks that do not follow the stream's top are added, and the gap is counted."""
    chain = make_chain(30)
    async with publisher(redis_server, stream_name) as pub:
        for block in chain[:10] + chain[20:]:
            await pub.publish(block)
        assert await pub.flush(FLUSH_TIMEOUT_S)
        status = pub.status()
    assert [b.number for b in stream_blocks(redis_server.client(), stream_name)] == [
        b.number for b in chain[:10] + chain[20:]
    ]
    assert status["gaps"] == 1 and status["published"] == 20


async def test_maxlen_keeps_the_stream_short(redis_server: RedisServer, stream_name: str) -> None:
    """With MAXLEN ~ 50 the stream is trimmed to about that, keeping the newest blocks."""
    chain = make_chain(1000)
    async with publisher(redis_server, stream_name, maxlen=50) as pub:
        for block in chain:
            await pub.publish(block)
        assert await pub.flush(FLUSH_TIMEOUT_S)
    kept = stream_blocks(redis_server.client(), stream_name)
    assert 50 <= len(kept) < 300
    assert_chain(kept, chain[-len(kept) :])


async def test_memory_outbox_catches_up_in_order_after_a_redis_restart(
    own_redis: RedisServer, stream_name: str
) -> None:
    """Redis stopped: publish returns at once, the outbox fills; restarted: all sent in order."""
    chain = make_chain(120)
    async with publisher(own_redis, stream_name) as pub:
        for block in chain[:20]:
            await pub.publish(block)
        assert await pub.flush(FLUSH_TIMEOUT_S)
        own_redis.stop()
        for block in chain[20:]:
            await asyncio.wait_for(pub.publish(block), 1.0)
        await wait_until(lambda: not pub.status()["connected"])
        down = pub.status()
        assert down["outbox_len"] == 100 and down["lag_blocks"] == 100
        assert down["errors"] >= 1 and "unreachable" in down["last_error"]
        own_redis.start()  # same port, empty: no persistence
        assert await pub.flush(FLUSH_TIMEOUT_S)
        up = pub.status()
    assert_chain(stream_blocks(own_redis.client(), stream_name), chain[20:])
    assert up["connected"] and up["reconnects"] >= 1 and up["outbox_len"] == 0


async def test_memory_outbox_is_bounded_and_drops_the_oldest(
    own_redis: RedisServer, stream_name: str
) -> None:
    """A long outage costs the oldest queued blocks, counted as dropped; the rest go in order."""
    chain = make_chain(50)
    async with publisher(own_redis, stream_name, outbox_limit=10) as pub:
        own_redis.stop()
        for block in chain:
            await pub.publish(block)
        assert pub.status()["dropped"] == 40
        own_redis.start()
        assert await pub.flush(FLUSH_TIMEOUT_S)
    assert_chain(stream_blocks(own_redis.client(), stream_name), chain[40:])


async def test_store_outbox_survives_redis_and_publisher_restarts(
    persistent_redis: RedisServer, stream_name: str, tmp_path: Path
) -> None:
    """With a SQLite store, blocks queued while Redis was down reach it after a full restart."""
    chain = make_chain(80)
    state = f"{tmp_path}/state.sqlite"
    store = open_store(state)
    try:
        async with publisher(persistent_redis, stream_name, store=store) as pub:
            for block in chain[:30]:
                await pub.publish(block)
            assert await pub.flush(FLUSH_TIMEOUT_S)
            persistent_redis.stop()
            for block in chain[30:]:
                await pub.publish(block)
            assert pub.status()["outbox_persistent"] is True
            assert pub.status()["outbox_len"] == 50
            await pub.aclose(drain_timeout_s=0)
        assert store.outbox_len() == 50
    finally:
        store.close()

    persistent_redis.start()  # the stream survived (append-only file)
    store = open_store(state)
    try:
        async with publisher(persistent_redis, stream_name, store=store) as pub:
            assert await pub.flush(FLUSH_TIMEOUT_S)
            assert pub.status()["published"] == 50
        assert store.outbox_len() == 0
    finally:
        store.close()
    assert_chain(stream_blocks(persistent_redis.client(), stream_name), chain)


async def test_store_outbox_catches_up_while_running(
    own_redis: RedisServer, stream_name: str, tmp_path: Path
) -> None:
    """The persistent outbox drains in order after Redis comes back, without a publisher restart."""
    chain = make_chain(60)
    store = open_store(f"{tmp_path}/state.sqlite")
    try:
        async with publisher(own_redis, stream_name, store=store) as pub:
            own_redis.stop()
            for block in chain:
                await pub.publish(block)
            await wait_until(lambda: pub.status()["errors"] >= 1)
            await wait_until(lambda: store.outbox_len() == 60)  # persisted while Redis is away
            own_redis.start()
            assert await pub.flush(FLUSH_TIMEOUT_S)
        assert store.outbox_len() == 0
    finally:
        store.close()
    assert_chain(stream_blocks(own_redis.client(), stream_name), chain)


async def test_restart_republishes_blocks_the_store_has_but_the_stream_lacks(
    redis_server: RedisServer, stream_name: str, tmp_path: Path
) -> None:
    """Blocks checkpointed but never queued (a crash in between) are re-sent from the window."""
    chain = make_chain(40)
    async with publisher(redis_server, stream_name) as other:
        for block in chain[:10]:
            await other.publish(block)
        assert await other.flush(FLUSH_TIMEOUT_S)
    store = open_store(f"{tmp_path}/state.sqlite")
    try:
        store.save_blocks(chain[:30])  # the feed got this far; the outbox never saw 10..29
        client = redis_server.client()
        async with publisher(redis_server, stream_name, store=store) as pub:
            await wait_until(lambda: client.xlen(stream_name) >= 30)
            for block in chain[30:]:
                await pub.publish(block)
            assert await pub.flush(FLUSH_TIMEOUT_S)
    finally:
        store.close()
    assert_chain(stream_blocks(redis_server.client(), stream_name), chain)


_KILLED_PUBLISHER = """
import asyncio, sys
sys.path.insert(0, sys.argv[4])
from redis_chain import make_chain
from blockfeed.redis import FROM_FIRST, RedisPublisher, consume
from blockfeed.store import open_store

async def main():
    url, stream, state = sys.argv[1:4]
    store = open_store(state)
    async with RedisPublisher(url, stream, store=store, batch_size=1) as pub:
        for block in make_chain(300):
            await pub.publish(block)
            await asyncio.sleep(0.005)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_sigkilled_publisher_with_a_store_resumes_exactly_once(
    redis_server: RedisServer, stream_name: str, tmp_path: Path
) -> None:
    """SIGKILL mid-stream, then a new process on the same state file: each block once, in order."""
    chain = make_chain(300)
    state = str(tmp_path / "state.sqlite")
    client = redis_server.client()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _KILLED_PUBLISHER, redis_server.url, stream_name, state,
        str(Path(__file__).parent), stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await wait_until(lambda: client.xlen(stream_name) >= 100 or proc.returncode is not None)
        assert proc.returncode is None, "the publisher process died on its own"
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()  # SIGKILL: no cleanup, no final writes
        await asyncio.wait_for(proc.wait(), 10)
    in_stream = client.xlen(stream_name)
    assert 100 <= in_stream < 300
    store = open_store(state)  # the kernel released the dead process's lock
    try:
        async with publisher(redis_server, stream_name, store=store) as pub:
            for block in chain[in_stream - 20 :]:  # a restarted feed overlaps a little
                await pub.publish(block)
            assert await pub.flush(FLUSH_TIMEOUT_S)
            status = pub.status()
        assert status["duplicates"] >= 20
        assert 0 < status["published"] <= 300 - in_stream  # a last in-flight add may land late
        assert store.outbox_len() == 0
    finally:
        store.close()
    assert_chain(stream_blocks(client, stream_name), chain)


async def test_genesis_block_is_entry_0_1_and_reads_back(
    redis_server: RedisServer, stream_name: str
) -> None:
    """Redis refuses ID 0-0, so block 0 is 0-1; publishing and reading from the first works."""
    chain = make_chain(3, start=0)
    async with publisher(redis_server, stream_name) as pub:
        for block in chain:
            await pub.publish(block)
        assert await pub.flush(FLUSH_TIMEOUT_S)
    client = redis_server.client()
    assert [i for i, _ in client.xrange(stream_name, "-", "+")] == ["0-1", "1-0", "2-0"]
    async with consume(redis_server.url, stream_name, after=FROM_FIRST, read_block_s=0.2) as blocks:
        got = [await asyncio.wait_for(anext(blocks), FLUSH_TIMEOUT_S) for _ in range(3)]
    assert got == chain
