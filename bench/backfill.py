"""Backfill benchmark (DESIGN.md target: >= 2,000 blocks/s against a local node).

A devnode runs in its own process (``soak.py --role node``, as a real local node would: its
serving CPU is not charged to the feed) with ``auto_produce`` off and 20,000 blocks already
finalized above ``start_block`` 6,940,000. In this process a ``BlockFeed`` starts at
``head - 20_000`` with default settings and one verifying subscriber (consecutive numbers,
parent links, the head's hash canonical); the figure is blocks delivered per second until it
hands over the head:

- ``total``: from ``async with feed`` (connect, genesis, first request) to the head;
- ``steady``: from the first delivered block to the head (the backfill loop alone).

Each run is done without a store and with a SQLite store (checkpoint writes included).

Usage::

    .venv/bin/python bench/backfill.py            # 3 runs of each variant (~1 min)
    .venv/bin/python bench/backfill.py --quick    # 1 run of each

Results go to ``bench/results/backfill.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from blockfeed import Block, BlockFeed
from blockfeed.store import open_store
from common import markdown_table
from soak import START_BLOCK, JsonChild

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "backfill.json"
BACKFILL_BLOCKS = 20_000
PRE_ADVANCE_BLOCKS = BACKFILL_BLOCKS + 100
TARGET_BLOCKS_PER_S = 2_000
WAIT_S = 120.0
"""Bound on one backfill (at the target rate it takes 10 s)."""


@dataclass
class Tally:
    """Counts and verifies what the feed hands over; notes when the head arrives."""

    head: int
    first_at: float | None = None
    head_at: float | None = None
    delivered: int = 0
    last: Block | None = None
    problems: list[str] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def on_block(self, block: Block) -> None:
        now = time.perf_counter()
        if self.first_at is None:
            self.first_at = now
        previous = self.last
        if previous is not None and len(self.problems) < 5:
            if block.number != previous.number + 1:
                self.problems.append(f"#{previous.number} then #{block.number}")
            elif block.parent_hash != previous.hash:
                self.problems.append(f"#{block.number} does not link")
        self.last = block
        self.delivered += 1
        if block.number >= self.head and self.head_at is None:
            self.head_at = now
            self.done.set()


async def one_run(ws_url: str, start_at: int, head: int, head_hash: str,
                  *, with_store: bool) -> dict[str, Any]:
    counter = Tally(head=head)
    with tempfile.TemporaryDirectory(prefix="blockfeed-backfill-") as tmp:
        store = open_store(str(Path(tmp) / "state.sqlite")) if with_store else None
        feed = BlockFeed([ws_url], start_at=start_at, store=store, log_blocks=False)
        feed.subscribe(counter.on_block, name="bench", maxsize=100_000)
        began = time.perf_counter()
        try:
            async with feed:
                await asyncio.wait_for(counter.done.wait(), WAIT_S)
                status = feed.status()
        finally:
            if store is not None:
                store.close()
    assert counter.first_at is not None and counter.head_at is not None
    blocks = head - start_at + 1
    if counter.last is not None and counter.last.hash != head_hash:
        counter.problems.append("the head's hash is not canonical")
    total_s = counter.head_at - began
    steady_s = counter.head_at - counter.first_at
    return {
        "store": with_store,
        "blocks": blocks,
        "delivered": counter.delivered,
        "total_s": round(total_s, 3),
        "steady_s": round(steady_s, 3),
        "blocks_per_s_total": round(blocks / total_s),
        "blocks_per_s_steady": round((blocks - 1) / steady_s) if steady_s > 0 else None,
        "first_block_after_s": round(counter.first_at - began, 3),
        "by_source": dict(status.blocks_by_source),
        "range_requests": status.requests.get("range"),
        "problems": counter.problems,
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for variant in (False, True):
        mine = [r for r in runs if r["store"] is variant]
        if not mine:
            continue
        out["with_store" if variant else "no_store"] = {
            "runs": len(mine),
            "blocks_per_s_total_median": statistics.median(r["blocks_per_s_total"] for r in mine),
            "blocks_per_s_total_min": min(r["blocks_per_s_total"] for r in mine),
            "blocks_per_s_steady_median": statistics.median(
                r["blocks_per_s_steady"] for r in mine),
            "all_correct": all(not r["problems"] and r["delivered"] == r["blocks"]
                               for r in mine),
        }
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="blockfeed-backfill-node-") as tmp:
        node = await JsonChild.start("node", [
            "--role", "node", "--nodes", "1", "--seed", str(args.seed),
            "--start-block", str(START_BLOCK), "--pre-advance", str(PRE_ADVANCE_BLOCKS),
        ], Path(tmp) / "node.stderr")
        try:
            ready = await node.read(timeout_s=WAIT_S)
            status = await node.request({"cmd": "status"})
            head = status["finalized"][0]
            start_at = head - BACKFILL_BLOCKS
            head_hash = (await node.request({"cmd": "hashes", "numbers": [head]}))["hashes"][0]
            runs = []
            for _ in range(args.repeats):
                for with_store in (False, True):
                    result = await one_run(ready["ws"][0], start_at, head, head_hash,
                                           with_store=with_store)
                    runs.append(result)
                    print(f"  {'store   ' if with_store else 'no store'}: "
                          f"{result['blocks_per_s_total']} blocks/s total, "
                          f"{result['blocks_per_s_steady']} steady "
                          f"({result['total_s']} s for {result['blocks']} blocks)", flush=True)
        finally:
            await node.stop()
    return {
        "benchmark": "backfill",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "config": {"blocks": BACKFILL_BLOCKS, "start_at": start_at, "head": head,
                   "repeats": args.repeats, "node": "devnode in a separate process",
                   "feed": "BlockFeed defaults (range_chunk 500)"},
        "target_blocks_per_s": TARGET_BLOCKS_PER_S,
        "runs": runs,
        "summary": summarize(runs),
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def render(result: dict[str, Any]) -> str:
    rows = []
    for name, entry in result["summary"].items():
        rows.append([name.replace("_", " "), entry["runs"], entry["blocks_per_s_total_median"],
                     entry["blocks_per_s_total_min"], entry["blocks_per_s_steady_median"],
                     "yes" if entry["all_correct"] else "NO",
                     "met" if entry["blocks_per_s_total_min"] >= TARGET_BLOCKS_PER_S
                     else "missed"])
    header = ["variant", "runs", "blocks/s (median)", "blocks/s (min)", "steady blocks/s",
              "all correct", f"target >= {TARGET_BLOCKS_PER_S}"]
    return markdown_table(header, rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run of each variant")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    print(f"saved {args.out} ({result['elapsed_s']} s)")
    correct = all(entry["all_correct"] for entry in result["summary"].values())
    return 0 if correct else 1


if __name__ == "__main__":
    raise SystemExit(main())
