"""The metric names a real gateway exports: a real BlockFeed on devnode, behind the real app."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families

from blockfeed import BlockFeed
from blockfeed.devnode import DevNode, DevNodeConfig
from blockfeed.gateway import create_app
from blockfeed.sinks.redis import RedisPublisher

WAIT_S = 60.0
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


async def exported_sample_names() -> set[str]:
    """Every series name /metrics declares after a few blocks: the samples present, and those a
    declared family has once it counts something (a counter with nothing yet has no sample)."""
    async with DevNode(DevNodeConfig(block_time_s=0.05)) as node:
        feed = BlockFeed([node.ws_url], block_time_s=0.05)
        app = create_app(feed=feed, manage_feed=False)
        gateway = app.state.gateway
        # A publisher that never connects: its real status() shape, without a Redis server.
        gateway.sinks.append(RedisPublisher("redis://127.0.0.1:9/0"))
        async with feed:
            async with asyncio.timeout(WAIT_S):
                while sum(feed.status().blocks_by_source.values()) < 3:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                text = (await client.get("/metrics")).text
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {sample.name for sample in family.samples}
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ())}
    return names
