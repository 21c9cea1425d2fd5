"""devnode with the recorded fixture: real bodies under real trie roots, events decoded with
the fixture metadata, a runtime upgrade on demand, and a body-altering lie (127.0.0.1 only)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from contents_kit import FIXTURE, raw_blocks

from blockfeed.codec.trie import ordered_trie_root
from blockfeed.contents import ContentsFetcher, ContentsLevel
from blockfeed.devnode import DevNode, DevNodeConfig
from blockfeed.errors import ConfigError, VerificationError
from blockfeed.rpc import HttpRpc, methods
from blockfeed.types import Block, FeedEvent, RuntimeUpgraded, Source

START = 1_000
FIRST = START + 1
"""The first block whose parent state the devnode serves (the parent of START is virtual)."""


@pytest.fixture
async def node() -> AsyncIterator[DevNode]:
    cfg = DevNodeConfig(host="127.0.0.1", port=0, auto_produce=False, start_block=START,
                        finality_lag=0, finality_jumps=0.0,
                        contents_fixture=str(FIXTURE / "blocks.json"))
    async with DevNode(cfg) as dev:
        dev.advance(blocks=45)
        yield dev


async def _blocks(rpc: HttpRpc, first: int, last: int) -> list[Block]:
    hashes = await methods.get_block_hashes(rpc, list(range(first, last + 1)))
    assert all(hashes)
    headers = await methods.get_headers(rpc, [h for h in hashes if h])
    return [Block(number=h.number, hash=x or "", parent_hash="0x" + h.parent_hash.hex(),
                  source=Source.BACKFILL, received_at=0.0, header=h)
            for x, h in zip(hashes, headers, strict=True)]


async def test_devnode_blocks_carry_fixture_bodies_under_real_trie_roots(node: DevNode) -> None:
    """Each devnode header's extrinsics_root is the ordered trie root of the body it serves,
    and the fetcher decodes every block with the fixture's metadata."""
    rpc = HttpRpc(node.http_url)
    try:
        blocks = await _blocks(rpc, FIRST, FIRST + 40)
        fetcher = ContentsFetcher(ContentsLevel.FULL)
        full = await fetcher.fetch(rpc, blocks)
    finally:
        await rpc.aclose()
    assert fetcher.root_kinds == {"trie": 41}
    recorded = raw_blocks()["blocks"]
    for block in full:
        raw = recorded[block.number % 40]
        body = [bytes.fromhex(x[2:]) for x in raw["extrinsics"]]
        assert block.header is not None
        assert block.header.extrinsics_root == ordered_trie_root(body)
        assert block.extrinsics is not None and len(block.extrinsics) == len(body)
        assert block.events is not None and block.spec_version == 218
    assert any(x["signed"] for b in full for x in b.extrinsics or [])


async def test_a_body_lie_is_caught(node: DevNode) -> None:
    """With lie(mode=body) the served body no longer matches the header: VerificationError."""
    rpc = HttpRpc(node.http_url)
    try:
        blocks = await _blocks(rpc, FIRST, FIRST + 3)
        node.faults.inject("lie", seconds=30.0, mode="body")
        with pytest.raises(VerificationError, match="extrinsics_root"):
            await ContentsFetcher(ContentsLevel.FULL).fetch(rpc, blocks)
        node.faults.clear()
        assert len(await ContentsFetcher(ContentsLevel.FULL).fetch(rpc, blocks)) == 4
    finally:
        await rpc.aclose()


async def test_runtime_upgrade_on_demand_is_reported_and_decoded_on_both_sides(
    node: DevNode,
) -> None:
    """upgrade_at(n): #n still runs spec 218, #n+1 is the first of 219; one event; both sides
    decode (metadata fetched for each version)."""
    assert node.contents is not None
    node.contents.upgrade_at(START + 10)
    rpc = HttpRpc(node.http_url)
    events: list[FeedEvent] = []
    try:
        blocks = await _blocks(rpc, FIRST, START + 20)
        fetched = await ContentsFetcher(ContentsLevel.EVENTS, on_event=events.append).fetch(
            rpc, blocks)
    finally:
        await rpc.aclose()
    specs = {b.number: b.spec_version for b in fetched}
    assert specs[START + 10] == 218 and specs[START + 11] == 219
    assert [e.number for e in events if isinstance(e, RuntimeUpgraded)] == [START + 11]
    assert len(events) == 1
    assert all(b.events is not None for b in fetched)
    assert node.stats.requests["state_getMetadata"] == 2


def test_a_bad_fixture_path_is_a_config_error(tmp_path: object) -> None:
    """A missing or foreign fixture file fails at start with a clear ConfigError."""
    from blockfeed.devnode.contents import DevNodeContents

    with pytest.raises(ConfigError, match="cannot read"):
        DevNodeContents.load("/nonexistent/blocks.json")
    with pytest.raises(ConfigError, match="not a blockfeed subtensor fixture"):
        DevNodeContents({"blocks": [{"nope": 1}]})
