"""Child process for test_feed_ack: an iterator that stops processing mid-block, then is killed.

Prints one JSON object per line on stdout:

* ``{"callback": n, "saved": c}`` for every block a callback subscriber gets (the feed goes
  on), with the checkpoint a forced write returned while that callback held block n;
* ``{"iter": n}`` for every block the iterator is handed;
* ``{"holding": k, "checkpoint": c}`` once the iterator was handed its ``--hold-at``-th block
  and a forced checkpoint write returned; after that the iterator never asks for the next
  block (as if the process died while handling block k).
"""

from __future__ import annotations

import argparse
import asyncio
import json

from blockfeed import Block, BlockFeed
from blockfeed.store import open_store


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def main(ws_url: str, state: str, block_time_s: float, hold_at: int) -> None:
    store = open_store(state)
    feed = BlockFeed([ws_url], store=store, block_time_s=block_time_s, log_blocks=False)

    async def on_block(block: Block) -> None:
        say(callback=block.number, saved=await feed.save_checkpoint())

    feed.subscribe(on_block, name="callback")
    blocks = feed.blocks(name="held")
    async with feed:
        handed = 0
        async for block in blocks:
            handed += 1
            say(iter=block.number)
            if handed == hold_at:
                saved = await feed.save_checkpoint()
                say(holding=block.number, checkpoint=saved)
                await asyncio.Event().wait()  # "processing" forever: never acknowledged


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("ws_url")
    parser.add_argument("--state", required=True)
    parser.add_argument("--block-time", type=float, required=True)
    parser.add_argument("--hold-at", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.ws_url, args.state, args.block_time, args.hold_at))
