"""The gateway when the chain is replaced under its feed (F13): /ready, /status, the alert."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from blockfeed import BlockFeed
from blockfeed.devnode import DevNode, DevNodeConfig
from blockfeed.errors import ChainDiverged
from blockfeed.gateway import create_app

WAIT_S = 30.0


async def _until(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(WAIT_S):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_ready_is_503_with_the_reason_and_status_shows_the_event() -> None:
    """After chain_diverged: /ready 503 saying CHAIN DIVERGED, /status lists the event."""
    async with DevNode(DevNodeConfig(block_time_s=0.05, seed=3, start_block=1)) as node:
        node.advance(30)
        feed = BlockFeed([node.ws_url], block_time_s=0.05, log_blocks=False)
        app = create_app(feed=feed, manage_feed=False)
        transport = httpx.ASGITransport(app=app)
        with pytest.raises(ChainDiverged):
            async with feed:
                await _until(lambda: feed.status().last_block is not None, "a block")
                node.faults.inject("reset", seconds=0.2, genesis="new", start_block=1)
                await _until(lambda: "CHAIN DIVERGED" in (feed.status().error or ""),
                             "chain_diverged")
                async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
                    ready = await c.get("/ready")
                    status = (await c.get("/status")).json()
    assert ready.status_code == 503
    assert "CHAIN DIVERGED" in ready.json()["reason"]
    assert "chain_diverged" in [e["kind"] for e in status["recent_events"]]
