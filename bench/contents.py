"""Block contents benchmark (DESIGN.md: events decoded >= 500 blocks/s on one core; live delay
added p99 <= 0.05 T; issue 11: a 10,000-block backfill with events >= 300 blocks/s).

Three figures:

- ``decode``: the 40 recorded subtensor blocks (tests/fixtures/subtensor), decoded again and
  again on one core: events only, events + extrinsics, and the whole fetcher path (an in-memory
  node answering the batch, body verification, shaping) at level ``full``;
- ``backfill``: a devnode in its own process (``--role node``, serving the fixture's bodies,
  events and metadata under real trie roots) with 10,000 finalized blocks; a ``BlockFeed``
  starts 10,000 blocks below the head at levels header, events and full; blocks/s until the
  head is delivered;
- ``store``: the state file keeping contents (schema 3): 10,000 blocks carrying the fixture's
  decoded contents (level ``full``) saved in batches of 100 (as the feed's checkpoint writes
  do) and read back in pages of 500 (replay, ``/blocks``), against the same blocks header-only;
  blocks/s and the file's bytes per block;
- ``live``: the devnode producing a block every T = 0.2 s; per delivered block, the time from
  the header's arrival (``received_at``) to the subscriber callback, header-only vs
  ``contents="events"``; the extra p50/p99 in ms and in units of T (of this T = 0.2 s, and of
  finney's 12 s). The first live blocks are a warm-up (the first one also fetches and parses
  the metadata): reported apart (``warmup_ms``), not in the percentiles.

Usage::

    .venv/bin/python bench/contents.py            # ~1 min
    .venv/bin/python bench/contents.py --quick    # fewer blocks
    .venv/bin/python bench/contents.py --store    # only the store figure, merged into the JSON

Results go to ``bench/results/contents.json``.
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
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
HERE = SCRIPT.parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests" / "contents"))

from blockfeed import Block, BlockFeed, defaults  # noqa: E402
from blockfeed.contents import ContentsFetcher, ContentsLevel, RuntimeDecoder  # noqa: E402
from common import markdown_table, percentile  # noqa: E402
from soak import JsonChild  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "subtensor" / "blocks.json"
RESULTS_PATH = HERE / "results" / "contents.json"
START_BLOCK = 1_000_000
TARGET_DECODE = 500
TARGET_BACKFILL = 300
TARGET_LIVE_P99_T = 0.05
LIVE_T_S = 0.2
FINNEY_T_S = defaults.BLOCK_TIME_S
LIVE_WARMUP_BLOCKS = 3
WAIT_S = 300.0


# ---------------------------------------------------------------------- decode (one core)


async def bench_decode(seconds: float) -> dict[str, Any]:
    """Blocks/s decoding the fixture in this process (one thread)."""
    from contents_kit import FixtureNode, fixture_blocks  # the tests' in-memory node

    data = json.loads(FIXTURE.read_text())
    runtime = RuntimeDecoder(bytes.fromhex(data["metadata"]["218"][2:]), 218, 1)
    inputs = [(bytes.fromhex(b["events_raw"][2:]), [bytes.fromhex(x[2:]) for x in b["extrinsics"]])
              for b in data["blocks"]]

    def rate(step: Any) -> float:
        done, began = 0, time.perf_counter()
        while time.perf_counter() - began < seconds:
            step()
            done += len(inputs)
        return done / (time.perf_counter() - began)

    def events_only() -> None:
        for ev, _ in inputs:
            runtime.events(ev)

    def events_and_extrinsics() -> None:
        for ev, xts in inputs:
            runtime.events(ev)
            runtime.extrinsics(xts)

    node, blocks = FixtureNode(), fixture_blocks()
    fetcher = ContentsFetcher(ContentsLevel.FULL)
    done, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        await fetcher.fetch(node, blocks)
        done += len(blocks)
    fetcher_rate = done / (time.perf_counter() - began)
    return {
        "events_blocks_per_s": round(rate(events_only)),
        "events_extrinsics_blocks_per_s": round(rate(events_and_extrinsics)),
        "fetcher_full_blocks_per_s": round(fetcher_rate),
    }


# ---------------------------------------------------------------------- store window


async def bench_store(count: int) -> list[dict[str, Any]]:
    """Blocks/s saving and reading back ``count`` blocks with and without contents."""
    from contents_kit import FixtureNode, fixture_blocks

    decoded = await ContentsFetcher(ContentsLevel.FULL).fetch(FixtureNode(), fixture_blocks())
    return _store_figures(decoded, count)


def _store_figures(decoded: list[Block], count: int) -> list[dict[str, Any]]:
    import dataclasses

    from blockfeed.store import open_store

    out = []
    for label, with_contents in (("header", False), ("full", True)):
        blocks = []
        for i in range(count):
            model = decoded[i % len(decoded)]
            if not with_contents:
                model = dataclasses.replace(model, timestamp=None, spec_version=None,
                                            events=None, extrinsics=None)
            blocks.append(dataclasses.replace(model, number=START_BLOCK + i,
                                              hash="0x%064x" % (START_BLOCK + i)))
        with tempfile.TemporaryDirectory(prefix="blockfeed-store-") as tmp:
            path = Path(tmp) / "state.sqlite"
            with open_store(path, window=count) as store:
                began = time.perf_counter()
                for at in range(0, count, 100):
                    store.save_blocks(blocks[at:at + 100])
                save_s = time.perf_counter() - began
                began = time.perf_counter()
                back: list[Block] = []
                for at in range(0, count, 500):
                    back.extend(store.get_range(START_BLOCK + at, 500))
                read_s = time.perf_counter() - began
            size = sum(f.stat().st_size for f in Path(tmp).iterdir())
        same = [(b.events, b.extrinsics) for b in back] == [(b.events, b.extrinsics)
                                                             for b in blocks]
        entry = {"level": label, "blocks": count,
                 "save_blocks_per_s": round(count / save_s),
                 "read_blocks_per_s": round(count / read_s),
                 "bytes_per_block": round(size / count), "read_back_equal": same}
        out.append(entry)
        print(f"  store {label:6}: save {entry['save_blocks_per_s']} blocks/s, read "
              f"{entry['read_blocks_per_s']} blocks/s, {entry['bytes_per_block']} B/block",
              flush=True)
    return out


# ---------------------------------------------------------------------- devnode child


async def serve_node(args: argparse.Namespace) -> None:
    """``--role node``: a devnode with the fixture; prints its URL; stdin EOF stops it."""
    from blockfeed.devnode import DevNode, DevNodeConfig

    cfg = DevNodeConfig(host="127.0.0.1", port=0, start_block=START_BLOCK, finality_lag=0,
                        finality_jumps=0.0, contents_fixture=str(FIXTURE),
                        auto_produce=args.live, block_time_s=LIVE_T_S)
    async with DevNode(cfg) as node:
        if args.pre_advance:
            node.advance(blocks=args.pre_advance)
        print(json.dumps({"ws": node.ws_url, "finalized": node.chain.finalized_number}),
              flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def _node(tmp: Path, *extra: str) -> tuple[JsonChild, dict[str, Any]]:
    with (tmp / "node.stderr").open("ab") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(SCRIPT), "--role", "node", *extra,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr,
        )
    child = JsonChild("node", process)
    return child, await child.read(timeout_s=120.0)


# ---------------------------------------------------------------------- backfill


async def bench_backfill(blocks: int) -> list[dict[str, Any]]:
    """Blocks/s of a BlockFeed backfilling ``blocks`` blocks at each contents level."""
    out = []
    with tempfile.TemporaryDirectory(prefix="blockfeed-contents-") as tmp:
        child, ready = await _node(Path(tmp), "--pre-advance", str(blocks + 10))
        try:
            head = ready["finalized"]
            start_at = head - blocks + 1
            for level in ("header", "events", "full"):
                done = asyncio.Event()
                seen: list[Block] = []

                def on_block(block: Block, *, _seen: list[Block] = seen,
                             _done: asyncio.Event = done) -> None:
                    _seen.append(block)
                    if block.number >= head:
                        _done.set()

                feed = BlockFeed([ready["ws"]], start_at=start_at, log_blocks=False,
                                 contents=level)
                feed.subscribe(on_block, maxsize=blocks + 100)
                began = time.perf_counter()
                async with feed:
                    await asyncio.wait_for(done.wait(), WAIT_S)
                elapsed = time.perf_counter() - began
                numbers_ok = [b.number for b in seen[:blocks]] == list(range(start_at, head + 1))
                contents_ok = level == "header" or all(b.events is not None for b in seen)
                entry = {"level": level, "blocks": blocks, "seconds": round(elapsed, 2),
                         "blocks_per_s": round(blocks / elapsed),
                         "all_correct": numbers_ok and contents_ok}
                out.append(entry)
                print(f"  backfill {level:7}: {entry['blocks_per_s']} blocks/s "
                      f"({entry['seconds']} s)", flush=True)
        finally:
            await child.stop()
    return out


# ---------------------------------------------------------------------- live delay


async def bench_live(count: int) -> dict[str, Any]:
    """Header arrival -> callback, per block, header-only vs events, T = 0.2 s."""
    delays: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="blockfeed-contents-live-") as tmp:
        child, ready = await _node(Path(tmp), "--live")
        try:
            for level in ("header", "events"):
                got: list[float] = []
                done = asyncio.Event()

                def on_block(block: Block, *, _got: list[float] = got,
                             _done: asyncio.Event = done) -> None:
                    if block.late:
                        return  # backfilled at start: not a live block
                    _got.append(time.time() - block.received_at)
                    if len(_got) >= count + LIVE_WARMUP_BLOCKS:
                        _done.set()

                feed = BlockFeed([ready["ws"]], block_time_s=LIVE_T_S, log_blocks=False,
                                 contents=level)
                feed.subscribe(on_block)
                async with feed:
                    await asyncio.wait_for(done.wait(), WAIT_S)
                delays[level] = got
        finally:
            await child.stop()
    summary: dict[str, Any] = {"block_time_s": LIVE_T_S, "blocks": count}
    for level, all_values in delays.items():
        values = all_values[LIVE_WARMUP_BLOCKS:]
        summary[level] = {"p50_ms": round(1000 * statistics.median(values), 2),
                          "p99_ms": round(1000 * (percentile(values, 99) or 0.0), 2),
                          "warmup_ms": [round(1000 * v, 1)
                                        for v in all_values[:LIVE_WARMUP_BLOCKS]]}
    extra_p99 = (summary["events"]["p99_ms"] - summary["header"]["p99_ms"]) / 1000
    summary["extra_p99_ms"] = round(1000 * extra_p99, 2)
    summary["extra_p99_T"] = round(extra_p99 / LIVE_T_S, 4)
    summary["extra_p99_finney_T"] = round(extra_p99 / FINNEY_T_S, 5)
    summary["events_p99_T"] = round(summary["events"]["p99_ms"] / 1000 / LIVE_T_S, 4)
    print(f"  live: header p99 {summary['header']['p99_ms']} ms, events p99 "
          f"{summary['events']['p99_ms']} ms ({summary['events_p99_T']} T)", flush=True)
    return summary


async def run(args: argparse.Namespace) -> dict[str, Any]:
    print("decode (one core):", flush=True)
    decode = await bench_decode(1.0 if args.quick else 3.0)
    for key, value in decode.items():
        print(f"  {key}: {value}", flush=True)
    print("store window:", flush=True)
    store = await bench_store(2_000 if args.quick else 10_000)
    backfill = await bench_backfill(2_000 if args.quick else 10_000)
    live = await bench_live(20 if args.quick else 60)
    return {
        "benchmark": "contents",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "decoder": "bittensor-core",
        "decode": decode,
        "backfill": backfill,
        "store": store,
        "live": live,
        "targets": {"decode_blocks_per_s": TARGET_DECODE,
                    "backfill_events_blocks_per_s": TARGET_BACKFILL,
                    "live_extra_p99_T": TARGET_LIVE_P99_T},
    }


def render(result: dict[str, Any]) -> str:
    decode = result["decode"]
    live = result["live"]
    backfill = {b["level"]: b for b in result["backfill"]}
    rows = [
        ["decode events (one core)", f"{decode['events_blocks_per_s']} blocks/s",
         f">= {TARGET_DECODE}"],
        ["decode events + extrinsics", f"{decode['events_extrinsics_blocks_per_s']} blocks/s",
         ""],
        ["fetcher, level full (verify + decode)", f"{decode['fetcher_full_blocks_per_s']} "
         "blocks/s", ""],
        *[[f"backfill {n} blocks, level {lv}", f"{b['blocks_per_s']} blocks/s",
           f">= {TARGET_BACKFILL}" if lv != "header" else ""]
          for lv, b in backfill.items() for n in [b["blocks"]]],
        *[[f"store {b['blocks']} blocks, {b['level']}: save / read",
           f"{b['save_blocks_per_s']} / {b['read_blocks_per_s']} blocks/s, "
           f"{b['bytes_per_block']} B/block", ""] for b in result.get("store", [])],
        ["live delay added by events (p99)",
         f"{live['extra_p99_ms']} ms = {live['extra_p99_T']} T of 0.2 s = "
         f"{live['extra_p99_finney_T']} T of 12 s", f"<= {TARGET_LIVE_P99_T} T"],
    ]
    return markdown_table(["what", "figure", "target"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--store", action="store_true",
                        help="measure the store window only; update that part of --out")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    parser.add_argument("--role", choices=["main", "node"], default="main",
                        help=argparse.SUPPRESS)
    parser.add_argument("--pre-advance", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--live", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.role == "node":
        asyncio.run(serve_node(args))
        return 0
    if args.store:
        result = json.loads(args.out.read_text()) if args.out.exists() else {}
        result["store"] = asyncio.run(bench_store(2_000 if args.quick else 10_000))
    else:
        result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
