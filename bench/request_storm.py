"""Request storm benchmark (issue 14, item 1): what 15 s of errors on every channel cost.

A devnode (T = 0.5 s by default) answers every HTTP request with 429 (``Retry-After`` optional)
and every WebSocket request with a JSON-RPC rate-limit error (``rpc_errors``), while garbage
frames replace what the socket sends (``malformed``, wrong types). ``blockfeed watch --json``
runs as users run it, in its own process; the node counts every request it received. After the
faults end, every block must be printed exactly once, in order, linked.

Prints and saves (``bench/results/request_storm.json``): requests during the fault window by
transport, ERROR lines on stderr during the window, and the check of what was printed. Target:
<= 150 requests and <= 20 ERROR lines, then every block delivered.

Usage::

    .venv/bin/python bench/request_storm.py [--block-time 0.5] [--seconds 15] [--retry-after N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from blockfeed.devnode import DevNode, DevNodeConfig

RESULTS = Path(__file__).resolve().parent / "results" / "request_storm.json"
WAIT_S = 60.0


async def _read_lines(stream: asyncio.StreamReader, sink: list[tuple[float, str]]) -> None:
    while line := await stream.readline():
        sink.append((time.monotonic(), line.decode(errors="replace").rstrip("\n")))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    config = DevNodeConfig(block_time_s=args.block_time, seed=11, start_block=1000)
    async with DevNode(config) as node:
        env = {**os.environ, "NO_COLOR": "1"}
        env.pop("BLOCKFEED_CONFIG", None)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "blockfeed", "watch", node.ws_url, "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )
        assert process.stdout is not None and process.stderr is not None
        out: list[tuple[float, str]] = []
        err: list[tuple[float, str]] = []
        readers = [asyncio.create_task(_read_lines(process.stdout, out)),
                   asyncio.create_task(_read_lines(process.stderr, err))]
        try:
            deadline = time.monotonic() + WAIT_S
            while len(out) < 5:
                if time.monotonic() > deadline:
                    raise RuntimeError("watch printed nothing")
                await asyncio.sleep(0.05)
            await asyncio.sleep(3 * args.block_time)
            before = dict(node.stats.to_dict()["requests_total"])
            started = time.monotonic()
            http_options: dict[str, Any] = {"status": 429}
            if args.retry_after is not None:
                http_options["retry_after"] = args.retry_after
            node.faults.inject("http_errors", seconds=args.seconds, **http_options)
            node.faults.inject("rpc_errors", seconds=args.seconds, on="ws")
            node.faults.inject("malformed", seconds=args.seconds, on="ws", rate=1.0,
                               replace=True, kinds=("wrong_types",))
            await asyncio.sleep(args.seconds)
            ended = time.monotonic()
            after = dict(node.stats.to_dict()["requests_total"])
            head_at_end = node.chain.finalized_number
            while not out or json.loads(out[-1][1])["number"] < head_at_end + 3:
                if time.monotonic() > ended + WAIT_S:
                    raise RuntimeError("watch did not catch up after the faults")
                await asyncio.sleep(0.05)
            caught_up_s = time.monotonic() - ended
        finally:
            process.terminate()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(process.wait(), 10)
            for reader in readers:
                reader.cancel()
        blocks = [json.loads(line) for _, line in out if line.startswith("{")]
        numbers = [b["number"] for b in blocks]
        linked = all(b["parent_hash"] == a["hash"] for a, b in itertools.pairwise(blocks))
        consecutive = numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        canonical = all(b["hash"] == node.chain.hash_of(b["number"]) for b in blocks)
        window_err = [line for at, line in err if started <= at <= ended]
        requests = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
        return {
            "block_time_s": args.block_time,
            "fault_seconds": args.seconds,
            "retry_after_s": args.retry_after,
            "requests_in_window": requests,
            "requests_in_window_total": sum(requests.values()),
            "error_lines_in_window": sum(" ERROR " in line for line in window_err),
            "stderr_lines_in_window": len(window_err),
            "caught_up_after_s": round(caught_up_s, 3),
            "blocks_printed": len(blocks),
            "consecutive": consecutive,
            "linked": linked,
            "canonical": canonical,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--block-time", type=float, default=0.5)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--retry-after", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        print(f"{key:28} {value}")
    print(f"saved {args.out}")
    ok = (result["requests_in_window_total"] <= 150 and result["error_lines_in_window"] <= 20
          and result["consecutive"] and result["linked"] and result["canonical"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
