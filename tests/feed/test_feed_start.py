"""Where the feed starts: a start below the node's history is made visible, and a head start
with two endpoints cross-checks the first block on the second one."""

from __future__ import annotations

import logging

import pytest
from feedkit import Collector, assert_sound, feed_config, node_config, running

from blockfeed import BlockFeed
from blockfeed.devnode import DevNode


async def test_start_below_history_is_unavailable_visible_and_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """start_at below the node's first block: an 'unavailable' event, status().error and an
    error log line say so; nothing is delivered; retries are spaced out, not a storm."""
    caplog.set_level(logging.INFO, logger="blockfeed")
    async with DevNode(node_config()) as node:
        first_real = node_config().start_block
        feed = BlockFeed([node.ws_url], start_at=first_real - 5_000, config=feed_config())
        seen = Collector()
        feed.subscribe(seen.on_block)
        feed.add_event_hook(seen.on_event)
        async with feed:
            await seen.wait_for(lambda: bool(seen.events_of("unavailable")), "unavailable")
            error = feed.status().error
            asked_before = node.stats.requests["chain_getBlockHash"]
            await node.wait_for_finalized(node.chain.finalized_number + 20, timeout_s=20)
            asked = node.stats.requests["chain_getBlockHash"] - asked_before
            status = feed.status()
    event = seen.events_of("unavailable")[0][1]
    assert event.details["number"] == first_real - 5_000
    assert event.endpoint == feed.endpoints[0]
    assert error is not None and f"block #{first_real - 5_000} is not available" in error
    assert status.error == error and seen.seen == []
    assert len(seen.events_of("unavailable")) == 1  # said once, retried quietly
    assert 1 <= asked <= 12  # ~2 s of retries with growing backoff (a storm would be ~100s)
    assert any("BLOCK UNAVAILABLE" in r.getMessage() and r.levelno == logging.ERROR
               for r in caplog.records)


async def test_start_just_inside_history_is_delivered_without_alarm() -> None:
    """start_at at the node's first block is fine: delivered from there, no 'unavailable'."""
    async with DevNode(node_config()) as node:
        first_real = node_config().start_block
        await node.wait_for_finalized(first_real + 10, timeout_s=20)
        async with running(node, start_at=first_real) as (feed, seen):
            await seen.wait_past(first_real + 12)
            assert feed.status().error is None
    assert seen.numbers[0] == first_real and "unavailable" not in seen.kinds()
    assert_sound(seen, node)


async def test_head_start_checks_the_first_block_on_the_second_endpoint() -> None:
    """Two honest endpoints: before the first block is delivered, both were asked for its hash
    by number (chain_getBlockHash), and they agreed."""
    async with DevNode(node_config()) as a, DevNode(node_config()) as b:
        feed = BlockFeed([a.ws_url, b.ws_url], config=feed_config())
        seen = Collector()
        asked: dict[str, int] = {}

        def on_block(block: object) -> None:
            if not seen.seen:
                asked.update(a=a.stats.requests["chain_getBlockHash"],
                             b=b.stats.requests["chain_getBlockHash"])
            seen.on_block(block)  # type: ignore[arg-type]

        feed.subscribe(on_block)
        feed.add_event_hook(seen.on_event)
        async with feed:
            await seen.wait_past(max(a.chain.finalized_number, b.chain.finalized_number) + 3)
    assert asked["a"] >= 1 and asked["b"] >= 1
    assert "verification_failed" not in seen.kinds()
    assert_sound(seen, a)


async def test_head_start_with_a_liar_never_delivers_its_block() -> None:
    """The preferred endpoint lies about parent hashes from the start: the first block comes
    from the honest one, every block is canonical, and the liar is quarantined."""
    async with DevNode(node_config()) as liar, DevNode(node_config()) as honest:
        liar.faults.inject("lie", seconds=60.0, mode="parent", on="both")
        async with running(liar, honest) as (feed, seen):
            await seen.wait_past(honest.chain.finalized_number + 5)
            status = feed.status()
    quarantined = {e.endpoint for _, e in seen.events_of("endpoint_quarantined")}
    assert quarantined == {feed.endpoints[0]}
    assert status.endpoints[0]["quarantined"] and not status.endpoints[1]["quarantined"]
    assert_sound(seen, honest)
