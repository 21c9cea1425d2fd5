"""A Redis stream carries one chain: its genesis is recorded, another chain's publisher refuses.

Real redis-server (tests/redis/conftest.py). Row 8 of issue 14: two publishers on different
chains, one far ahead, used to put the other's blocks in "after a gap", silently.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from redis_chain import make_chain
from redis_helpers import publisher, wait_until

from blockfeed.errors import ConfigError
from blockfeed.redis import RedisPublisher
from blockfeed.sinks._add_script import meta_key
from blockfeed.sinks.redis import WRONG_CHAIN_EVENT
from blockfeed.store import open_store
from blockfeed.types import FeedEvent, SinkWrongChain

if TYPE_CHECKING:  # only a type: importing "conftest" depends on which folder was collected first
    from conftest import RedisServer

pytestmark = pytest.mark.redis

GENESIS_A = "0x" + "aa" * 32
GENESIS_B = "0x" + "bb" * 32
FLUSH_TIMEOUT_S = 15.0


async def test_first_publisher_records_its_genesis(
    redis_server: RedisServer, stream_name: str
) -> None:
    """Publishing records the chain's genesis next to the stream; status shows it."""
    upper = "0x" + GENESIS_A[2:].upper()
    async with publisher(redis_server, stream_name, genesis_hash=upper) as pub:
        for block in make_chain(3):
            await pub.publish(block)
        assert await pub.flush(FLUSH_TIMEOUT_S)
        status = pub.status()
    assert redis_server.client().hget(meta_key(stream_name), "genesis") == GENESIS_A
    assert status["genesis"] == GENESIS_A and status["wrong_chain"] is False


async def test_publisher_of_another_chain_refuses_loudly(
    redis_server: RedisServer, stream_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Chain B ahead of chain A's stream publishes nothing: one error line, status, one event."""
    chain_a = make_chain(5, seed=1)
    chain_b = make_chain(5, start=chain_a[-1].number + 40, seed=2)  # far ahead: "after a gap"
    async with publisher(redis_server, stream_name, genesis_hash=GENESIS_A) as pub_a:
        for block in chain_a:
            await pub_a.publish(block)
        assert await pub_a.flush(FLUSH_TIMEOUT_S)
    events: list[FeedEvent] = []
    caplog.set_level(logging.ERROR, logger="blockfeed.redis")
    async with publisher(redis_server, stream_name, genesis_hash=GENESIS_B) as pub_b:
        pub_b.add_event_hook(events.append)
        for block in chain_b:
            await pub_b.publish(block)
        await wait_until(lambda: pub_b.status()["wrong_chain_refusals"] >= 5)  # kept retrying
        status = pub_b.status()
    entries = redis_server.client().xrange(stream_name, "-", "+")
    assert [entry_id for entry_id, _ in entries] == [f"{b.number}-0" for b in chain_a]
    assert status["wrong_chain"] is True and status["stream_genesis"] == GENESIS_A
    assert status["published"] == 0 and status["gaps"] == 0
    assert GENESIS_A in status["last_error"] and GENESIS_B in status["last_error"]
    [event] = events
    assert event.kind == WRONG_CHAIN_EVENT and isinstance(event, SinkWrongChain)
    assert event.stream_genesis == GENESIS_A and event.genesis == GENESIS_B
    lines = [r.getMessage() for r in caplog.records if "carries the chain" in r.getMessage()]
    assert len(lines) == 1  # loud once, not a log storm
    assert redis_server.client().hget(meta_key(stream_name), "genesis") == GENESIS_A


async def test_script_refuses_a_chain_claimed_after_connecting(
    redis_server: RedisServer, stream_name: str
) -> None:
    """Another chain claiming the stream after our check is still refused, atomically, by the
    add script: no block of ours goes in."""
    chain = make_chain(4)
    async with publisher(redis_server, stream_name, genesis_hash=GENESIS_A) as pub:
        await pub.publish(chain[0])
        assert await pub.flush(FLUSH_TIMEOUT_S)
        redis_server.client().hset(meta_key(stream_name), "genesis", GENESIS_B)
        for block in chain[1:]:
            await pub.publish(block)
        await wait_until(lambda: pub.status()["wrong_chain"])
        status = pub.status()
    assert len(redis_server.client().xrange(stream_name, "-", "+")) == 1
    assert status["published"] == 1 and status["stream_genesis"] == GENESIS_B


async def test_genesis_comes_from_the_store_and_same_chain_passes(
    redis_server: RedisServer, stream_name: str, tmp_path: Path
) -> None:
    """Without genesis_hash the store's bound chain is used; a second publisher of the same
    chain shares the stream (duplicates skipped), and the stream's record is unchanged."""
    store = open_store(tmp_path / "state.sqlite")
    try:
        store.bind_chain(GENESIS_A)
        chain = make_chain(4)
        for _ in range(2):
            async with publisher(redis_server, stream_name, store=store) as pub:
                for block in chain:
                    await pub.publish(block)
                assert await pub.flush(FLUSH_TIMEOUT_S)
                status = pub.status()
            assert status["genesis"] == GENESIS_A and status["wrong_chain"] is False
    finally:
        store.close()
    assert status["duplicates"] == 4
    assert redis_server.client().hget(meta_key(stream_name), "genesis") == GENESIS_A
    assert len(redis_server.client().xrange(stream_name, "-", "+")) == 4


def test_bad_genesis_hash_is_a_config_error() -> None:
    """A genesis_hash that is not a 32-byte hex hash is refused at construction."""
    with pytest.raises(ConfigError, match="genesis_hash"):
        RedisPublisher("redis://127.0.0.1:1/0", genesis_hash="0x1234")


async def test_serve_on_another_chain_reports_the_refusal_as_a_feed_event(
    redis_server: RedisServer, stream_name: str, tmp_path: Path
) -> None:
    """Two devnodes with different seeds, one Redis stream (the serve wiring): the second
    chain's blocks never enter the stream and its feed reports a sink_wrong_chain event."""
    from blockfeed.config import Settings
    from blockfeed.devnode import DevNode, DevNodeConfig
    from blockfeed.feed import BlockFeed
    from blockfeed.gateway.runtime import running_sinks

    settings = Settings(redis_url=redis_server.url, redis_stream=stream_name)
    client = redis_server.client()
    async with DevNode(DevNodeConfig(block_time_s=0.05, seed=1)) as node_a, DevNode(
        DevNodeConfig(block_time_s=0.05, seed=2)
    ) as node_b:
        assert node_a.chain.genesis_hash != node_b.chain.genesis_hash
        stores = [open_store(":memory:"), open_store(":memory:")]
        feeds = [
            BlockFeed([node.ws_url], store=store, block_time_s=0.05, log_blocks=False)
            for node, store in zip((node_a, node_b), stores, strict=True)
        ]
        async with feeds[0], running_sinks(settings, feeds[0], stores[0]):
            await wait_until(lambda: client.xlen(stream_name) >= 3)
        async with feeds[1], running_sinks(settings, feeds[1], stores[1]):
            await wait_until(
                lambda: any(e.kind == WRONG_CHAIN_EVENT for e in feeds[1].status().recent_events)
            )
            await wait_until(lambda: feeds[1].status().last_block is not None)
        for store in stores:
            store.close()
    hashes = {fields["hash"] for _, fields in client.xrange(stream_name, "-", "+")}
    assert {node_a.chain.hash_of(int(i.split("-")[0])) for i, _ in
            client.xrange(stream_name, "-", "+")} == hashes  # only chain A's blocks
    assert client.hget(meta_key(stream_name), "genesis") == node_a.chain.genesis_hash
