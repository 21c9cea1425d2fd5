"""F13: the chain is replaced under the endpoint (devnode ``reset``), feed against devnode.

With ``on_divergence="exit"`` the feed stops with one ``ChainDiverged``; with ``"follow"`` it
goes on with the new chain's blocks (recorded in the store). Never a block of the new chain
handed out as if it extended the old one.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest
from feedkit import WAIT_S, Collector, feed_config, node_config

from blockfeed import BlockFeed, Mode
from blockfeed.devnode import DevNode
from blockfeed.errors import ChainDiverged
from blockfeed.store import open_store


def _linked(blocks: list) -> bool:  # type: ignore[type-arg]
    return all(b.number == a.number + 1 and b.parent_hash == a.hash
               for a, b in itertools.pairwise(blocks))


@pytest.mark.parametrize("genesis", ["new", "same"])
async def test_replaced_chain_stops_the_feed_with_one_chain_diverged(genesis: str) -> None:
    """exit policy: one chain_diverged event, ChainDiverged raised, nothing of the new chain."""
    seen = Collector()
    async with DevNode(node_config(start_block=1)) as node:
        node.advance(200)
        feed = BlockFeed([node.ws_url], config=feed_config())
        feed.subscribe(seen.on_block, name="collector")
        feed.add_event_hook(seen.on_event)
        with pytest.raises(ChainDiverged) as raised:
            async with feed:
                await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
                await seen.wait_past(node.chain.finalized_number + 3)
                old = {n: node.chain.hash_of(n)
                       for n in range(1, node.chain.best_number + 1)}
                node.faults.inject("reset", seconds=0.3, genesis=genesis, start_block=1)
                await seen.wait_for(lambda: bool(seen.events_of("chain_diverged")),
                                    "chain_diverged")
                await asyncio.wait_for(feed._runner, WAIT_S)  # type: ignore[arg-type]
    assert str(raised.value).startswith("CHAIN DIVERGED")
    assert len(seen.events_of("chain_diverged")) == 1
    blocks = [s.block for s in seen.seen]
    assert _linked(blocks)
    assert all(old.get(b.number) == b.hash for b in blocks), "a block of the new chain leaked"


async def test_follow_policy_goes_on_with_the_new_chain_and_records_the_reset(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """follow policy: the new chain's blocks come after the reset, linked among themselves; the
    store records the reset and its checkpoint is on the new chain."""
    store = open_store(str(tmp_path / "state.sqlite"))
    seen = Collector()
    try:
        async with DevNode(node_config(start_block=300)) as node:
            feed = BlockFeed([node.ws_url], store=store, on_divergence="follow",
                             config=feed_config())
            feed.subscribe(seen.on_block, name="collector")
            feed.add_event_hook(seen.on_event)
            async with feed:
                await seen.wait_for(lambda: feed.mode is Mode.STREAMING, "streaming")
                await seen.wait_past(node.chain.finalized_number + 3)
                before = len(seen.seen)
                node.faults.inject("reset", seconds=0.3, genesis="new", start_block=1)
                await seen.wait_for(lambda: bool(seen.events_of("chain_diverged")),
                                    "chain_diverged")
                await seen.wait_for(
                    lambda: len(seen.seen) > before + 5
                    and seen.seen[-1].block.hash == node.chain.hash_of(seen.seen[-1].block.number),
                    "blocks of the new chain")
                await feed.save_checkpoint()
            after = [s.block for s in seen.seen[before:]
                     if s.block.hash == node.chain.hash_of(s.block.number)]
            assert len(after) >= 5 and _linked(after)
            resets = store.chain_resets()
            assert len(resets) == 1 and str(resets[0]["reason"]).startswith("CHAIN DIVERGED")
            checkpoint = store.checkpoint()
            assert checkpoint is not None
            assert checkpoint[1] == node.chain.hash_of(checkpoint[0])
            assert store.bound_chain() == node.chain.hash_of(0)
    finally:
        store.close()
