"""At least once across crashes: the checkpoint follows what subscribers *acknowledged*.

An iterator acknowledges block n by asking for the next block (or ``aclose()``); a callback by
returning. A block yielded but not yet processed when the process dies is delivered again.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from feedkit import WAIT_S, Collector, T, assert_sound, feed_config, node_config, running

from blockfeed import BlockFeed, SubscriberLagged
from blockfeed.devnode import DevNode
from blockfeed.store import open_store

WORKER = Path(__file__).resolve().parent / "hold_worker.py"


class Child:
    """A subprocess printing JSON lines; ``wait_for`` waits (bounded) for a matching line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []

    async def wait_for(self, key: str, predicate: Any = lambda value: True) -> dict[str, Any]:
        for line in self.lines:
            if key in line and predicate(line[key]):
                return line
        assert self.process.stdout is not None

        async def read() -> dict[str, Any]:
            assert self.process.stdout is not None
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    stderr = b""
                    if self.process.stderr is not None:
                        stderr = await self.process.stderr.read()
                    raise AssertionError(f"child ended early: {stderr.decode()[-2000:]}")
                line = json.loads(raw)
                self.lines.append(line)
                if key in line and predicate(line[key]):
                    return line

        return await asyncio.wait_for(read(), WAIT_S * 2)


async def test_yielded_but_unprocessed_block_survives_sigkill(tmp_path: Path) -> None:
    """An iterator holding block k (not acknowledged) pins the checkpoint at k-1 while the feed
    goes on; after SIGKILL the restarted feed delivers k again, linked to the checkpoint."""
    state = tmp_path / "state.sqlite"
    async with DevNode(node_config()) as node:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(WORKER), node.ws_url, "--state", str(state),
            "--block-time", str(T), "--hold-at", "5",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        child = Child(process)
        try:
            held = await child.wait_for("holding")
            k = held["holding"]
            assert held["checkpoint"] is not None and held["checkpoint"] <= k - 1
            await child.wait_for("callback", lambda n: n >= k + 10)  # the feed went on
            process.send_signal(signal.SIGKILL)
            await asyncio.wait_for(process.wait(), WAIT_S)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.returncode == -signal.SIGKILL
        iterated = [line["iter"] for line in child.lines if "iter" in line]
        assert iterated == list(range(k - 4, k + 1))
        saved = [line["saved"] for line in child.lines if line.get("callback", 0) > k]
        assert len(saved) >= 10 and set(saved) == {k - 1}  # pinned at k-1 while k is in hand
        with open_store(str(state)) as store:
            assert store.checkpoint() == (k - 1, node.chain.hash_of(k - 1))
        store = open_store(str(state))
        async with running(node, store=store) as (_feed, again):
            await again.wait_past(k + 3)
        store.close()
    assert again.numbers[0] == k  # the unprocessed block comes again, nothing before it
    assert again.seen[0].block.parent_hash == node.chain.hash_of(k - 1)
    assert_sound(again, node)


async def test_iterator_acknowledges_by_asking_or_aclose(tmp_path: Path) -> None:
    """Leaving ``async for`` after block n without asking again leaves n unacknowledged: the
    final checkpoint is n-1 and the next run repeats n; ``await it.aclose()`` acknowledges the
    last block, so the checkpoint may pass it."""
    path = str(tmp_path / "state.sqlite")
    async with DevNode(node_config()) as node:
        store = open_store(path)
        runs: list[list[int]] = []
        saved_after_aclose = None
        for how in ("break", "aclose"):
            async with BlockFeed([node.ws_url], store=store, config=feed_config()) as feed:
                it = feed.blocks(name=how)
                got: list[int] = []
                async with asyncio.timeout(WAIT_S):
                    async for block in it:
                        got.append(block.number)
                        if len(got) == 4:
                            break
                runs.append(got)
                if how == "aclose":
                    await it.aclose()
                    saved_after_aclose = await feed.save_checkpoint()
            if how == "break":
                checkpoint = store.checkpoint()
        store.close()
    first, second = runs
    assert first == list(range(first[0], first[0] + 4))
    assert checkpoint == (first[-1] - 1, node.chain.hash_of(first[-1] - 1))
    assert second == list(range(first[-1], first[-1] + 4))  # the unacknowledged block again
    assert saved_after_aclose is not None and saved_after_aclose >= second[-1]


async def test_lagging_iterator_holds_the_checkpoint_and_catches_up_from_memory() -> None:
    """A reader whose queue overflowed still pins the checkpoint at its unacknowledged block;
    it replays the missed blocks (held in memory, not yet saved) with no hole."""
    store = open_store(":memory:")
    async with DevNode(node_config()) as node, running(node, store=store) as (feed, seen):
        await seen.wait_past(node.chain.finalized_number + 2)  # something saved already
        slow = feed.blocks(name="slow", maxsize=3)
        first = await asyncio.wait_for(slow.__anext__(), WAIT_S)
        await seen.wait_past(first.number + 12)
        assert slow.behind
        assert (await feed.save_checkpoint()) == first.number - 1
        checkpoint = store.checkpoint()
        assert checkpoint is not None and checkpoint[0] == first.number - 1
        got = [first.number]
        target = seen.numbers[-1] + 3
        async with asyncio.timeout(WAIT_S):
            async for block in slow:
                got.append(block.number)
                if block.number >= target:
                    break
        await slow.aclose()
        saved = await feed.save_checkpoint()
    assert got == list(range(first.number, target + 1))
    assert saved is not None and saved >= first.number + 11  # released once closed
    assert_sound(seen, node)
    store.close()


async def test_subscriber_past_the_lag_limit_is_cut_off_and_releases_the_checkpoint() -> None:
    """A reader that stopped reading is cut off once it is the lag limit behind: it gets
    SubscriberLagged (resume number = the block after the one it holds) and the checkpoint
    moves on for everyone else."""
    store = open_store(":memory:", window=10)
    async with DevNode(node_config()) as node:
        feed = BlockFeed([node.ws_url], store=store, config=feed_config(lag_limit_blocks=8))
        seen = Collector()
        feed.subscribe(seen.on_block, name="collector")
        async with feed:
            stuck = feed.blocks(name="stuck", maxsize=2)
            first = await asyncio.wait_for(stuck.__anext__(), WAIT_S)
            await seen.wait_past(first.number + 15)
            saved = await feed.save_checkpoint()
            with pytest.raises(SubscriberLagged) as info:
                async with asyncio.timeout(WAIT_S):
                    async for _block in stuck:
                        pass
    assert saved is not None and saved >= first.number + 15
    assert info.value.next_number == first.number + 1
    assert_sound(seen, node)
    store.close()
