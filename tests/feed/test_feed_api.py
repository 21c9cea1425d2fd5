"""BlockFeed's public API: construction, iteration, callbacks, subscribers, store, status, logs."""

from __future__ import annotations

import asyncio
import gc
import logging
import re

import pytest
from feedkit import Collector, assert_sound, feed_config, node_config, running

from blockfeed import BlockFeed, ConfigError, Mode, Source, StoreError, SubscriberLagged
from blockfeed.devnode import DevNode
from blockfeed.feed import FeedStatus, build_endpoints, http_twin
from blockfeed.store import open_store

SECRET = "k3y5ecretABCDEFGHIJ0123456789"


def test_for_network_names_and_http_twins() -> None:
    """Network names map like the Bittensor SDK; the HTTP twin keeps host, port and path."""
    assert BlockFeed.for_network("finney").endpoints == ["wss://entrypoint-finney.opentensor.ai:443"]
    assert BlockFeed.for_network("test").endpoints == ["wss://test.finney.opentensor.ai:443"]
    assert BlockFeed.for_network("archive").endpoints == ["wss://archive.chain.opentensor.ai:443"]
    assert BlockFeed.for_network("local").endpoints == ["ws://127.0.0.1:9944"]
    assert http_twin("wss://host:443/rpc?x=1") == "https://host:443/rpc?x=1"
    assert http_twin("ws://127.0.0.1:9944") == "http://127.0.0.1:9944"
    with pytest.raises(ConfigError, match="unknown network"):
        BlockFeed.for_network("mainnet")


def test_endpoint_labels_are_redacted_and_unique() -> None:
    """Labels never hold secrets; two URLs that redact alike get distinct labels."""
    endpoints = build_endpoints([f"wss://host/ws/{SECRET}", f"wss://host/ws/{SECRET}x"],
                                ["https://other/rpc", None])
    labels = [e.label for e in endpoints]
    assert all(re.fullmatch(r"wss://host/\*\*\*#[0-9a-f]{4}", label) for label in labels)
    assert len(set(labels)) == 2
    assert labels == [e.label for e in build_endpoints([e.ws_url for e in endpoints])]  # stable
    assert endpoints[0].http_url == "https://other/rpc"
    assert endpoints[1].http_url == f"https://host/ws/{SECRET}x"
    assert SECRET not in repr(endpoints)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ([], {}, "at least one"),
        (["http://host:9944"], {}, "ws://"),
        (["ws://host:9944"], {"http_endpoints": ["ftp://x", None]}, "one entry per endpoint"),
        (["ws://host:9944"], {"http_endpoints": ["ftp://x"]}, "http://"),
        (["ws://host:9944"], {"block_time_s": 0}, "block_time_s"),
        (["ws://host:9944"], {"start_at": -1}, "start_at"),
        (["ws://host:9944"], {"epoch_length": 0}, "epoch_length"),
        (["ws://u:pw%ee%ff@host:9944"], {}, r"credentials in WebSocket URL ws://host:9944/\*\*\*"),
    ],
)
def test_bad_configuration_is_a_clear_error(args, kwargs, match) -> None:  # type: ignore[no-untyped-def]
    """Bad URLs and values raise ConfigError saying what is wrong."""
    with pytest.raises(ConfigError, match=match):
        BlockFeed(args, **kwargs)


async def test_async_for_yields_consecutive_blocks_and_iterators_are_independent() -> None:
    """Two ``async for`` loops each get every block, in order; leaving one unregisters it."""
    async with DevNode(node_config()) as node:
        feed = BlockFeed([node.ws_url], config=feed_config())
        async with feed:
            first = feed.blocks(name="first")
            got_a: list[int] = []
            got_b: list[int] = []

            async def take(into: list[int], source: object, n: int) -> None:
                async for block in source:  # type: ignore[attr-defined]
                    into.append(block.number)
                    if len(into) >= n:
                        break

            await asyncio.wait_for(asyncio.gather(take(got_a, first, 20), take(got_b, feed, 10)),
                                   20)
            assert feed.status().subscribers == 1  # the finished ``async for`` iterator is gone
            del first
            gc.collect()
            assert feed.status().subscribers == 0  # iterators are weakly held
    assert got_a == list(range(got_a[0], got_a[0] + 20))
    assert got_b == list(range(got_b[0], got_b[0] + 10))


async def test_sync_async_and_raising_callbacks_are_isolated() -> None:
    """Sync and async callbacks both get everything; one that raises is logged and keeps going."""
    async with DevNode(node_config()) as node:
        sync_seen: list[int] = []
        async_seen: list[int] = []
        raised: list[int] = []

        async def slow_async(block) -> None:  # type: ignore[no-untyped-def]
            await asyncio.sleep(0)
            async_seen.append(block.number)

        def bad(block) -> None:  # type: ignore[no-untyped-def]
            raised.append(block.number)
            raise RuntimeError("subscriber bug")

        collector = Collector()
        async with running(node, collector=collector) as (feed, seen):
            feed.subscribe(lambda b: sync_seen.append(b.number), name="sync")
            feed.subscribe(slow_async, name="async")
            feed.subscribe(bad, name="bad")
            await seen.wait_for(lambda: len(raised) >= 15 and len(async_seen) >= 15, "15 blocks")
    assert sync_seen == list(range(sync_seen[0], sync_seen[0] + len(sync_seen)))
    assert async_seen == list(range(async_seen[0], async_seen[0] + len(async_seen)))
    assert raised == list(range(raised[0], raised[0] + len(raised)))
    assert_sound(collector, node)


async def test_slow_subscriber_without_store_gets_subscriber_lagged() -> None:
    """A consumer that stops reading overflows its queue; it gets SubscriberLagged with the
    number to resume from, after the blocks it had; the feed and others never stall."""
    async with DevNode(node_config()) as node, running(node) as (feed, seen):
        slow = feed.blocks(name="slow", maxsize=5)
        await seen.wait_past((seen.numbers or [node.chain.finalized_number])[-1] + 12)
        got = []
        with pytest.raises(SubscriberLagged) as info:
            async for block in slow:
                got.append(block.number)
        await seen.wait_past(seen.numbers[-1] + 5)
    assert len(got) == 5 and got == list(range(got[0], got[0] + 5))
    assert info.value.next_number == got[-1] + 1
    assert_sound(seen, node)


async def test_slow_subscriber_with_store_catches_up() -> None:
    """With a store, an overflowing subscriber replays from it and never sees a hole."""
    store = open_store(":memory:")
    async with DevNode(node_config()) as node, running(node, store=store) as (feed, seen):
        slow = feed.blocks(name="slow", maxsize=3)
        await seen.wait_past((seen.numbers or [node.chain.finalized_number])[-1] + 12)
        got: list[int] = []
        target = seen.numbers[-1] + 5

        async def read() -> None:
            async for block in slow:
                got.append(block.number)
                if block.number >= target:
                    return

        await asyncio.wait_for(read(), 20)
    assert got == list(range(got[0], target + 1)) and len(got) > 15
    assert_sound(seen, node)
    store.close()


async def test_store_checkpoint_and_resume_after_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The checkpoint follows delivery; a new feed on the same store resumes at checkpoint + 1
    and backfills what was finalized while it was stopped (no repeat, no gap)."""
    path = tmp_path / "state.db"
    async with DevNode(node_config()) as node:
        store = open_store(path)
        async with running(node, store=store) as (_feed, first):
            await first.wait_past((first.numbers or [node.chain.finalized_number])[-1] + 10)
        checkpoint = store.checkpoint()
        assert checkpoint == (first.numbers[-1], first.seen[-1].block.hash)
        store.close()
        await node.wait_for_finalized(checkpoint[0] + 8, timeout_s=20)
        store = open_store(path)
        async with running(node, store=store) as (_feed, second):
            await second.wait_past(node.chain.finalized_number)
        store.close()
    assert second.numbers[0] == checkpoint[0] + 1
    assert second.seen[0].block.parent_hash == checkpoint[1]
    assert second.seen[0].block.source is Source.BACKFILL
    assert_sound(second, node)


async def test_store_of_another_chain_is_refused() -> None:
    """A state file bound to another chain is refused at startup with StoreError."""
    store = open_store(":memory:")
    store.bind_chain("0x" + "ab" * 32)
    async with DevNode(node_config()) as node:
        with pytest.raises(StoreError):
            async with BlockFeed([node.ws_url], store=store, config=feed_config()):
                pass
    store.close()


async def test_explicit_start_number_backfills_from_it() -> None:
    """start_at=N delivers N, N+1, ... (fetched by number) and then follows the head."""
    async with DevNode(node_config()) as node:
        first_real = node_config().start_block  # lower numbers do not exist on devnode
        await node.wait_for_finalized(first_real + 30, timeout_s=20)
        start = first_real + 3
        async with running(node, start_at=start) as (_feed, seen):
            await seen.wait_past(node.chain.finalized_number)
    assert seen.numbers[0] == start
    assert seen.seen[0].block.source is Source.BACKFILL
    assert_sound(seen, node)


async def test_status_snapshot_and_request_reconnect() -> None:
    """status() is a frozen, populated snapshot; request_reconnect recycles without loss."""
    async with DevNode(node_config()) as node, running(node) as (feed, seen):
        await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
        feed.request_reconnect("admin asked")
        await seen.wait_for(lambda: feed.status().reconnects == 1 and feed.mode is Mode.STREAMING,
                            "a reconnect")
        await seen.wait_past(seen.numbers[-1] + 5)
        status = feed.status()
    assert isinstance(status, FeedStatus)
    with pytest.raises(AttributeError):
        status.mode = Mode.POLLING  # type: ignore[misc]
    assert status.endpoint == f"ws://127.0.0.1:{node.port}"
    assert status.last_block is not None and status.last_block_age_s is not None
    assert status.blocks_by_source.get("ws", 0) > 0 and status.subscribers == 1
    assert status.mode_seconds["streaming"] > 0
    assert any("admin asked" in e.reason for e in status.recent_events)
    assert 0.05 <= status.block_interval_s <= 0.2
    assert_sound(seen, node)


async def test_nothing_left_running_after_exit() -> None:
    """Leaving ``async with`` stops every task and closes every connection."""
    async with DevNode(node_config()) as node:
        async with running(node) as (feed, seen):
            await seen.wait_past((seen.numbers or [node.chain.finalized_number])[-1] + 5)
            feed.request_reconnect("churn")
            await seen.wait_past(seen.numbers[-1] + 3)
        await asyncio.sleep(0)
        leftovers = [t for t in asyncio.all_tasks() if t.get_name().startswith("blockfeed")]
        assert leftovers == []
        await node.wait_until(lambda: node.stats.open_connections == 0)
        assert node.stats.active_subscriptions == 0


async def test_logs_have_the_known_shape_and_no_secrets(caplog: pytest.LogCaptureFixture) -> None:
    """Block lines look like the operators' lines; mode changes carry reasons; no secret leaks."""
    caplog.set_level(logging.INFO, logger="blockfeed")
    async with DevNode(node_config()) as node:
        url = f"ws://127.0.0.1:{node.port}/ws/{SECRET}"
        feed = BlockFeed([url], config=feed_config(log_blocks=True, emoji=None))
        seen = Collector()
        feed.subscribe(seen.on_block)
        feed.add_event_hook(seen.on_event)
        async with feed:
            await seen.wait_past((seen.numbers or [node.chain.finalized_number])[-1] + 3)
            node.faults.inject("close", seconds=0)
            await seen.wait_for(lambda: bool(seen.events_of("reconnect")), "a reconnect")
            await seen.wait_past(seen.numbers[-1] + 3)
    text = caplog.text
    assert SECRET not in text
    block_lines = [r.getMessage() for r in caplog.records if "| Epoch" in r.getMessage()]
    n = seen.numbers[0]
    expected = f"Block #{n} | Epoch {n // 360} | Block {n % 360}/360 | "
    assert any((line.startswith(expected) and line.endswith(" UTC | ws")) or
               (line.startswith(expected) and line.endswith(" UTC | poll")) for line in block_lines)
    assert "ENTERING POLLING FALLBACK MODE | socket closed" in text
    assert "WebSocket subscription restored" in text
    assert "📦" not in text  # not a terminal: no emoji


async def test_event_hook_errors_are_isolated() -> None:
    """A raising event hook is logged; other hooks and the feed carry on."""
    async with DevNode(node_config()) as node:
        feed = BlockFeed([node.ws_url], config=feed_config())
        seen = Collector()
        feed.subscribe(seen.on_block)

        def broken(event: object) -> None:
            raise RuntimeError("hook bug")

        feed.add_event_hook(broken)
        feed.add_event_hook(seen.on_event)
        async with feed:
            await seen.wait_for(lambda: "mode_changed" in seen.kinds(), "a mode change")
            await seen.wait_past(seen.numbers[-1] + 3 if seen.numbers else 0)
    assert_sound(seen, node)


async def test_checkpoint_waits_for_a_slow_callback_and_restart_redelivers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A callback stuck on block k holds the checkpoint at k-1; after a restart, k comes again."""
    path = tmp_path / "state.db"
    async with DevNode(node_config()) as node:
        store = open_store(path)
        held: list[int] = []
        gate = asyncio.Event()

        async def stuck(block) -> None:  # type: ignore[no-untyped-def]
            held.append(block.number)
            if len(held) == 5:
                await gate.wait()  # never released: the feed must not checkpoint past it

        async with running(node, store=store) as (feed, seen):
            feed.subscribe(stuck, name="stuck")
            await seen.wait_for(lambda: len(held) >= 5, "the stuck callback")
            await seen.wait_past(held[-1] + 10)
        assert store.checkpoint() is not None
        assert store.checkpoint()[0] == held[-1] - 1  # type: ignore[index]
        store.close()
        store = open_store(path)
        async with running(node, store=store) as (_feed, again):
            await again.wait_past(held[-1] + 2)
        store.close()
    assert again.numbers[0] == held[-1]
    assert_sound(again, node)
