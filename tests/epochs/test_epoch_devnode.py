"""SubnetEpochSchedule and EpochMonitor against devnode's real JSON-RPC answers (loopback HTTP)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from blockfeed.devnode import DevNode, DevNodeConfig
from blockfeed.devnode.runtime import next_epoch_block
from blockfeed.epochs import EpochMonitor, EpochSpan, SubnetEpochSchedule, TriggerContext
from blockfeed.epochs.subnet import NEXT_EPOCH_START_API, encode_netuid, legacy_span
from blockfeed.rpc import HttpRpc, methods
from blockfeed.types import Block, Source

START = 6_940_000
WAIT_S = 10.0


async def _node(runtime_api: bool) -> AsyncIterator[tuple[DevNode, HttpRpc]]:
    config = DevNodeConfig(
        auto_produce=False, start_block=START, tempos={1: 360, 3: 99}, runtime_api=runtime_api
    )
    async with DevNode(config) as node:
        node.advance(700)
        http = HttpRpc(node.http_url, timeout_s=5.0)
        try:
            yield node, http
        finally:
            await http.aclose()


@pytest.fixture
async def api_node() -> AsyncIterator[tuple[DevNode, HttpRpc]]:
    """A devnode whose runtime has the epoch API, 700 blocks past START."""
    async for pair in _node(runtime_api=True):
        yield pair


@pytest.fixture
async def legacy_node() -> AsyncIterator[tuple[DevNode, HttpRpc]]:
    """A devnode whose runtime lacks the epoch API (Tempo storage only)."""
    async for pair in _node(runtime_api=False):
        yield pair


async def test_spans_end_where_devnode_says_the_next_epoch_starts(
    api_node: tuple[DevNode, HttpRpc],
) -> None:
    """Each span ends the block before devnode's next epoch start, asked at that block."""
    node, http = api_node
    schedule = SubnetEpochSchedule(1, http)
    number = START + 100
    first = await schedule.span_of(number, block_hash=node.chain.hash_of(number))
    assert schedule.source == "runtime_api"
    boundary = next_epoch_block(number, netuid=1, tempo=360)
    assert first.end + 1 == boundary and first.length == 361
    raw = await methods.state_call(
        http, NEXT_EPOCH_START_API, encode_netuid(1), node.chain.hash_of(number)
    )
    assert int.from_bytes(raw[1:], "little") == boundary
    second = await schedule.span_of(boundary, block_hash=node.chain.hash_of(boundary))
    following = next_epoch_block(boundary, netuid=1, tempo=360)
    assert second == EpochSpan(boundary, boundary, following - 1)


async def test_fallback_reads_devnode_tempo(legacy_node: tuple[DevNode, HttpRpc]) -> None:
    """Without the API the schedule reads Tempo (99 for subnet 3) from devnode's storage."""
    node, http = legacy_node
    schedule = SubnetEpochSchedule(3, http)
    number = START + 250
    span = await schedule.span_of(number, block_hash=node.chain.hash_of(number))
    assert schedule.source == "tempo"
    assert span == legacy_span(number, netuid=3, tempo=99)
    assert span.length == 100


async def test_monitor_fires_at_devnode_epoch_starts(api_node: tuple[DevNode, HttpRpc]) -> None:
    """Fed devnode's blocks, the monitor fires on_epoch_start exactly at devnode's epoch blocks."""
    node, http = api_node
    fired: list[TriggerContext] = []
    first_boundary = next_epoch_block(START + 150, netuid=1, tempo=360)
    second_boundary = next_epoch_block(first_boundary, netuid=1, tempo=360)
    assert second_boundary <= START + 700
    async with EpochMonitor(SubnetEpochSchedule(1, http)) as monitor:
        monitor.on_epoch_start("epoch", lambda ctx: fired.append(ctx))
        for number in range(START + 150, second_boundary + 3):
            header = node.chain.header_of(number)
            await monitor.on_block(
                Block(
                    number=number,
                    hash=node.chain.hash_of(number),
                    parent_hash="0x" + header.parent_hash.hex(),
                    source=Source.WS,
                    received_at=0.0,
                    header=header,
                )
            )
        await asyncio.wait_for(monitor.join(), WAIT_S)
    assert [(c.epoch, c.block_number, c.late) for c in fired] == [
        (first_boundary, first_boundary, False),
        (second_boundary, second_boundary, False),
    ]
