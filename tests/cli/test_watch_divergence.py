"""``blockfeed watch`` when the chain is replaced under it (F13): a real subprocess."""

from __future__ import annotations

import asyncio
import os
import sys

from blockfeed.devnode import DevNode, DevNodeConfig

WAIT_S = 60.0
"""Bound on every wait: a loaded 2-core machine starts Python slowly."""


async def _watch(node: DevNode, *args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("BLOCKFEED_CONFIG", None)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "blockfeed", "watch", node.ws_url, "--json", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )


async def _lines(stream: asyncio.StreamReader, count: int) -> list[bytes]:
    return [await asyncio.wait_for(stream.readline(), WAIT_S) for _ in range(count)]


async def test_replaced_chain_ends_watch_with_status_3_and_one_clear_line() -> None:
    """The node restarts from scratch (same genesis): exit 3, one stderr line starting
    'CHAIN DIVERGED', at most a few ERROR lines, no traceback."""
    async with DevNode(DevNodeConfig(block_time_s=0.1, seed=5, start_block=1)) as node:
        node.advance(40)
        process = await _watch(node)
        assert process.stdout is not None and process.stderr is not None
        await _lines(process.stdout, 3)  # it is following the chain
        node.faults.inject("reset", seconds=0.5, genesis="same", start_block=1)
        code = await asyncio.wait_for(process.wait(), WAIT_S)
        err = (await process.stderr.read()).decode()
    assert code == 3, err
    lines = err.splitlines()
    assert sum(line.startswith("CHAIN DIVERGED") for line in lines) == 1, err
    assert sum(" ERROR " in line for line in lines) <= 5, err
    assert "Traceback" not in err


async def test_follow_goes_on_with_the_new_chain() -> None:
    """--on-divergence follow: after the reset, blocks of the new chain are printed."""
    async with DevNode(DevNodeConfig(block_time_s=0.1, seed=5, start_block=1)) as node:
        node.advance(40)
        process = await _watch(node, "--on-divergence", "follow")
        assert process.stdout is not None
        try:
            await _lines(process.stdout, 3)
            node.faults.inject("reset", seconds=0.5, genesis="new", start_block=1)
            seen_new = False
            for _ in range(200):
                line = await asyncio.wait_for(process.stdout.readline(), WAIT_S)
                number = int(line.split(b'"number":')[1].split(b",")[0])
                if number < 10:
                    seen_new = True
                    break
            assert seen_new, "no block of the new chain was printed"
        finally:
            process.terminate()
            await asyncio.wait_for(process.wait(), WAIT_S)
