"""Recovery benchmark (issue #3): blockfeed vs the FIRST FIX, side by side, fault by fault.

Both clients follow the SAME devnode (short block time T) at the same time. For each fault class
a fresh pair is started, warmed up, the fault is injected, and every block finalized in the
following window is checked for each client:

- *first block after the fault*: from the moment the first block after the injection was
  finalized to the moment the client delivered any block from then on (how long the user saw
  nothing new);
- delay of each delivered block after its finalization (p50 / max), blocks lost (never
  delivered), duplicated, out of order, wrong (not the canonical hash), reconnects.

Then a polling-mode episode (WebSockets refused, HTTP fine) gives polling delay p50/p99 and HTTP
requests per block, and a steady-state episode measures blockfeed's per-block overhead against a
bare ``websockets`` subscription client (same blocks, same process, median of arrival-time
differences).

Usage::

    .venv/bin/python bench/recovery.py --quick          # ~2 min
    .venv/bin/python bench/recovery.py --block-time 0.2 # default, <= ~6 min

Results go to ``bench/results/recovery.json``; a markdown table is printed for the README.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from blockfeed import BlockFeed
from blockfeed.codec import block_hash
from blockfeed.core import FollowerConfig
from blockfeed.devnode import DevNode, DevNodeConfig
from blockfeed.types import Block
from common import (
    WAIT_S,
    BareSubscriber,
    FinalityClock,
    Recorder,
    fmt,
    markdown_table,
    percentile,
    round_or_none,
    window_stats,
)
from firstfix import FINNEY_BLOCK_TIME_S, FirstFix, FirstFixTimings

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "recovery.json"
DEFAULT_BLOCK_TIME_S = 0.2
WARMUP_BLOCKS = 3
GRACE_T = 5.0
"""Clients keep running this long (in T) after a window so late deliveries still count."""


@dataclass(frozen=True)
class Scenario:
    """One fault class: faults injected together, and how long (in T) to watch afterwards."""

    fault_class: str
    title: str
    faults: tuple[tuple[str, float, dict[str, Any]], ...]
    """(kind, seconds in T, options) injected at the same instant."""
    window_t: float


def scenarios(*, halt_t: float) -> list[Scenario]:
    """The fault classes compared (F8, F11, F12 are covered by tests, not by this benchmark)."""
    return [
        Scenario("none", "steady state, no fault", (), 10),
        Scenario("F1", "node closes the socket", (("close", 0, {}),), 10),
        Scenario("F2", "node restarts (refused 10 T)", (("restart", 10, {}),), 20),
        Scenario(
            "F3",
            "half-open socket (10 T), HTTP fine",
            (("blackhole", 10, {"http": False, "new": False}),),
            20,
        ),
        Scenario("F4", "subscription silent (10 T)", (("sub_stall", 10, {}),), 20),
        Scenario(
            "F5",
            "socket closed, resubscribe refused (10 T)",
            (("sub_error", 10, {}), ("close", 0, {})),
            20,
        ),
        Scenario(
            "F6",
            "HTTP 503 (10 T) while the subscription stalls (5 T)",
            (("http_errors", 10, {"status": 503}), ("sub_stall", 5, {})),
            20,
        ),
        Scenario(
            "F7", f"finality halt ({halt_t:g} T)", (("finality_halt", halt_t, {}),), halt_t + 10
        ),
        Scenario("F9", "duplicate/reorder/skip (10 T)", (("disorder", 10, {"rate": 0.5}),), 20),
        Scenario(
            "F10",
            "socket lies about parent hashes (10 T)",
            (("lie", 10, {"mode": "parent", "on": "ws"}),),
            20,
        ),
    ]


# -- the two clients -----------------------------------------------------------------------------


def scaled_follower_config(block_time_s: float) -> FollowerConfig:
    """blockfeed's defaults with every constant given in absolute seconds (backoffs,
    quarantine, health checks) scaled by T/12 s, as the first fix's are: both then behave on the
    fast devnode as they would on finney. Fractions of T need no scaling."""
    k = block_time_s / FINNEY_BLOCK_TIME_S
    base = FollowerConfig(block_time_s=block_time_s)
    return dataclasses.replace(
        base,
        reconnect_initial_s=base.reconnect_initial_s * k,
        reconnect_cap_s=base.reconnect_cap_s * k,
        http_retry_initial_s=base.http_retry_initial_s * k,
        http_retry_cap_s=base.http_retry_cap_s * k,
        quarantine_s=base.quarantine_s * k,
        health_check_interval_s=base.health_check_interval_s * k,
    )


class BlockfeedClient:
    """blockfeed's public API, recording every delivered block."""

    def __init__(
        self, ws_url: str, block_time_s: float, recorder: Recorder, *, scaled: bool = True
    ) -> None:
        config = scaled_follower_config(block_time_s) if scaled else None
        self._feed = BlockFeed([ws_url], block_time_s=block_time_s, follower_config=config)
        self._recorder = recorder
        self._subscription: Any = None

    @property
    def reconnects(self) -> int:
        return int(self._feed.status().reconnects)

    @property
    def socket_given_up(self) -> int:
        """Times the feed left streaming (it judged the socket unusable)."""
        transitions = self._feed.status().transitions
        return sum(n for key, n in transitions.items() if key.startswith("streaming->"))

    def status(self) -> Any:
        return self._feed.status()

    def _on_block(self, block: Block) -> None:
        self._recorder.record(block.number, block.hash, str(block.source))

    async def __aenter__(self) -> BlockfeedClient:
        await self._feed.__aenter__()
        self._subscription = self._feed.subscribe(self._on_block, name="bench")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._feed.__aexit__(None, None, None)


def first_fix_client(
    ws_url: str, http_url: str, block_time_s: float, recorder: Recorder
) -> FirstFix:
    def on_block(header: Any, source: str) -> None:
        recorder.record(header.number, block_hash(header), source)

    return FirstFix(
        ws_url, http_url, on_block=on_block, timings=FirstFixTimings.scaled(block_time_s)
    )


# -- episodes ------------------------------------------------------------------------------------


@dataclass
class Bench:
    node: DevNode
    clock: FinalityClock
    block_time_s: float
    scaled: bool = True
    """Scale blockfeed's absolute-second constants by T/12 s (see scaled_follower_config)."""

    @property
    def T(self) -> float:
        return self.block_time_s

    async def warm_up(self, *recorders: Recorder) -> None:
        target = self.node.chain.finalized_number + WARMUP_BLOCKS
        for recorder in recorders:
            if not await recorder.wait_for(target, timeout_s=WAIT_S):
                raise RuntimeError(f"{recorder.name} delivered nothing within {WAIT_S:g} s")

    async def fault_episode(self, scenario: Scenario) -> dict[str, Any]:
        """Start both clients, inject, watch the window plus grace, return per-client stats."""
        self.node.faults.clear()
        bf_rec, ff_rec = Recorder("blockfeed"), Recorder("firstfix")
        ff = first_fix_client(self.node.ws_url, self.node.http_url, self.T, ff_rec)
        async with BlockfeedClient(self.node.ws_url, self.T, bf_rec, scaled=self.scaled) as bf, ff:
            await self.warm_up(bf_rec, ff_rec)
            reconnects_before = (bf.reconnects, ff.reconnects)
            given_up_before = (bf.socket_given_up, ff.heartbeat_timeouts)
            injected_at = time.monotonic()
            for kind, seconds_t, options in scenario.faults:
                self.node.faults.inject(kind, seconds=seconds_t * self.T, **options)
            window_end = injected_at + scenario.window_t * self.T
            await asyncio.sleep(max(0.0, window_end - time.monotonic()))
            reconnects = (
                bf.reconnects - reconnects_before[0],
                ff.reconnects - reconnects_before[1],
            )
            given_up = (
                bf.socket_given_up - given_up_before[0],
                ff.heartbeat_timeouts - given_up_before[1],
            )
            await asyncio.sleep(GRACE_T * self.T)
            bf_status = bf.status()
        self.node.faults.clear()
        out: dict[str, Any] = {}
        for name, recorder, count, dropped in (
            ("blockfeed", bf_rec, reconnects[0], given_up[0]),
            ("firstfix", ff_rec, reconnects[1], given_up[1]),
        ):
            stats = window_stats(
                recorder, self.clock, self.node.chain.hash_of, start_s=injected_at, end_s=window_end
            )
            row = stats.to_dict(self.T)
            row["first_block_after_fault_s"] = round_or_none(
                self.first_block_delay(recorder, injected_at, window_end), 4
            )
            row["first_block_after_fault_T"] = round_or_none(
                None
                if row["first_block_after_fault_s"] is None
                else row["first_block_after_fault_s"] / self.T
            )
            gap = longest_gap(recorder, injected_at, window_end)
            row["longest_gap_s"] = round_or_none(gap, 4)
            row["longest_gap_T"] = round_or_none(None if gap is None else gap / self.T)
            row["reconnects"] = count
            row["socket_given_up"] = dropped
            out[name] = row
        out["blockfeed"]["blocks_by_source"] = dict(getattr(bf_status, "blocks_by_source", {}))
        return out

    def first_block_delay(self, recorder: Recorder, start_s: float, end_s: float) -> float | None:
        """Time from the first block finalized after ``start_s`` to the next delivery of anything
        at least that new."""
        numbers = self.clock.numbers_between(start_s, end_s)
        if not numbers:
            return None
        first = numbers[0]
        for delivery in recorder.deliveries:
            if delivery.number >= first and delivery.at >= self.clock.finalized_at[first] - 1:
                return max(0.0, delivery.at - self.clock.finalized_at[first])
        return None

    async def polling_episode(self, window_t: float) -> dict[str, Any]:
        """Every WebSocket is closed right after its handshake; HTTP works. Measure polling."""
        self.node.faults.clear()
        bf_rec, ff_rec = Recorder("blockfeed"), Recorder("firstfix")
        ff = first_fix_client(self.node.ws_url, self.node.http_url, self.T, ff_rec)
        settle_t = 8.0  # the first fix needs 5-6 T to notice; both are polling afterwards
        async with BlockfeedClient(self.node.ws_url, self.T, bf_rec, scaled=self.scaled) as bf, ff:
            await self.warm_up(bf_rec, ff_rec)
            self.node.faults.inject(
                "close", seconds=(settle_t + window_t + GRACE_T) * self.T, flap=True
            )
            await asyncio.sleep(settle_t * self.T)
            start = time.monotonic()
            posts_before = self.node.stats.http_requests
            ff_posts_before = ff.http_requests
            await asyncio.sleep(window_t * self.T)
            end = time.monotonic()
            posts = self.node.stats.http_requests - posts_before
            ff_posts = ff.http_requests - ff_posts_before
            await asyncio.sleep(GRACE_T * self.T)
            bf_status = bf.status()
        self.node.faults.clear()
        blocks = len(self.clock.numbers_between(start, end))
        out: dict[str, Any] = {
            "blocks": blocks,
            "blockfeed_mode_at_end": str(bf_status.mode),
            "blockfeed_requests_by_kind": dict(getattr(bf_status, "requests", {}) or {}),
        }
        for name, recorder, requests in (
            ("blockfeed", bf_rec, posts - ff_posts),
            ("firstfix", ff_rec, ff_posts),
        ):
            row = window_stats(
                recorder, self.clock, self.node.chain.hash_of, start_s=start, end_s=end
            ).to_dict(self.T)
            row["http_requests"] = requests
            row["requests_per_block"] = round(requests / blocks, 3) if blocks else None
            out[name] = row
        return out

    async def overhead_episode(self, blocks: int) -> dict[str, Any]:
        """blockfeed vs a bare websockets subscription on the same blocks: extra ms per block."""
        self.node.faults.clear()
        bf_rec, bare_rec = Recorder("blockfeed"), Recorder("bare")
        async with (
            BlockfeedClient(self.node.ws_url, self.T, bf_rec, scaled=self.scaled),
            BareSubscriber(self.node.ws_url, bare_rec),
        ):
            await self.warm_up(bf_rec, bare_rec)
            target = self.node.chain.finalized_number + blocks
            await bf_rec.wait_for(target, timeout_s=blocks * self.T * 3 + WAIT_S)
        bare_at = {d.number: d.at for d in bare_rec.deliveries}
        diffs_ms = [
            (d.at - bare_at[d.number]) * 1000
            for d in bf_rec.deliveries
            if d.source == "ws" and d.number in bare_at
        ]
        return {
            "blocks_compared": len(diffs_ms),
            "median_ms": round_or_none(statistics.median(diffs_ms) if diffs_ms else None, 4),
            "p99_ms": round_or_none(percentile(diffs_ms, 99), 4),
            "max_ms": round_or_none(max(diffs_ms) if diffs_ms else None, 4),
        }


# -- aggregation and output -----------------------------------------------------------------------


def longest_gap(recorder: Recorder, start_s: float, end_s: float) -> float | None:
    """The longest the user waited for a new block, from the last delivery before ``start_s``
    to ``end_s`` (what an operator watching the log experiences)."""
    times: list[float] = []
    highest = -1
    for delivery in recorder.deliveries:
        if delivery.number <= highest:
            continue  # repeats and stragglers are not news
        highest = delivery.number
        if delivery.at < start_s:
            times = [delivery.at]
        elif delivery.at <= end_s:
            times.append(delivery.at)
    times.append(end_s)
    if len(times) < 2:
        return None
    return max(b - a for a, b in itertools.pairwise(times))


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine repeats of one scenario for one client: sums of counts, worst and median delays."""
    out: dict[str, Any] = {"repeats": len(runs)}
    for key in (
        "blocks",
        "delivered",
        "lost",
        "duplicated",
        "out_of_order",
        "wrong",
        "reconnects",
        "socket_given_up",
    ):
        out[key] = sum(run[key] for run in runs)
    for key in (
        "first_block_after_fault_s",
        "first_block_after_fault_T",
        "delay_max_s",
        "delay_max_T",
        "longest_gap_s",
        "longest_gap_T",
    ):
        values = [run[key] for run in runs if run[key] is not None]
        out[key] = max(values) if values else None
    for key in ("delay_p50_s", "delay_p50_T"):
        values = [run[key] for run in runs if run[key] is not None]
        out[key] = round(statistics.median(values), 4) if values else None
    return out


def ratio(slow: float | None, fast: float | None) -> str:
    """How many times longer the first fix made users wait; only shown when it made them wait
    at least half a block (otherwise both are within noise and a ratio would mislead)."""
    if slow is None or fast is None or slow < 0.5:
        return "-"
    if fast <= 0:
        return "∞" if slow > 0 else "1"
    return f"{slow / fast:.0f}x" if slow / fast >= 10 else f"{slow / fast:.1f}x"


def render(results: dict[str, Any]) -> str:
    """The markdown the README pastes."""
    T = results["meta"]["block_time_s"]
    header = [
        "fault",
        "first block after fault, T (blockfeed / first fix)",
        "first fix / blockfeed",
        "longest wait for a new block, T",
        "max delay, T",
        "lost",
        "duplicated",
        "out of order",
        "wrong",
        "socket given up",
        "reconnects",
    ]
    rows = []
    for fault_class, entry in results["faults"].items():
        bf, ff = entry["blockfeed"], entry["firstfix"]

        def pair(key: str, bf: dict[str, Any] = bf, ff: dict[str, Any] = ff) -> str:
            return f"{fmt(bf[key])} / {fmt(ff[key])}"

        rows.append(
            [
                f"{fault_class}: {entry['title']}",
                pair("first_block_after_fault_T"),
                "-"
                if fault_class == "none"
                else ratio(ff["first_block_after_fault_T"], bf["first_block_after_fault_T"]),
                pair("longest_gap_T"),
                pair("delay_max_T"),
                pair("lost"),
                pair("duplicated"),
                pair("out_of_order"),
                pair("wrong"),
                pair("socket_given_up"),
                pair("reconnects"),
            ]
        )
    lines = [
        f"Recovery, blockfeed vs the first fix (T = {T:g} s devnode, "
        f"{results['meta']['repeats']} run(s) per fault; cells are blockfeed / first fix):",
        "",
        markdown_table(header, rows),
        "",
    ]
    polling = results.get("polling")
    if polling:
        bf, ff = polling["blockfeed"], polling["firstfix"]
        lines += [
            f"Polling mode (WebSocket refused, {polling['blocks']} blocks):",
            "",
            markdown_table(
                ["client", "delay p50, T", "delay p99, T", "requests per block", "lost"],
                [
                    [
                        "blockfeed",
                        bf["delay_p50_T"],
                        bf["delay_p99_T"],
                        bf["requests_per_block"],
                        bf["lost"],
                    ],
                    [
                        "first fix",
                        ff["delay_p50_T"],
                        ff["delay_p99_T"],
                        ff["requests_per_block"],
                        ff["lost"],
                    ],
                ],
            ),
            "",
        ]
    overhead = results.get("overhead")
    if overhead:
        lines.append(
            f"Steady-state overhead vs a bare websockets client: median "
            f"{fmt(overhead['median_ms'], 3)} ms, p99 {fmt(overhead['p99_ms'], 3)} ms per block "
            f"({overhead['blocks_compared']} blocks)."
        )
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    T = args.block_time
    repeats = 1 if args.quick else args.repeats
    halt_t = 35.0 if args.quick else 45.0
    config = DevNodeConfig(
        block_time_s=T, finality_jumps=args.finality_jumps, seed=args.seed, start_block=6_940_000
    )
    results: dict[str, Any] = {
        "meta": {
            "block_time_s": T,
            "repeats": repeats,
            "quick": args.quick,
            "blockfeed_constants_scaled": not args.unscaled_feed,
            "finality_jumps": args.finality_jumps,
            "seed": args.seed,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "faults": {},
    }
    started = time.monotonic()
    async with DevNode(config) as node, FinalityClock(node) as clock:
        bench = Bench(node, clock, T, scaled=not args.unscaled_feed)
        wanted = set(args.only.split(",")) if args.only else None
        for scenario in scenarios(halt_t=halt_t):
            if wanted and scenario.fault_class not in wanted:
                continue
            runs = []
            for i in range(repeats):
                print(
                    f"  {scenario.fault_class} run {i + 1}/{repeats}: {scenario.title}", flush=True
                )
                runs.append(await bench.fault_episode(scenario))
            results["faults"][scenario.fault_class] = {
                "title": scenario.title,
                "blockfeed": aggregate([r["blockfeed"] for r in runs]),
                "firstfix": aggregate([r["firstfix"] for r in runs]),
                "runs": runs,
            }
        if not wanted or "polling" in wanted:
            print("  polling mode", flush=True)
            results["polling"] = await bench.polling_episode(20.0 if args.quick else 40.0)
        if not wanted or "overhead" in wanted:
            print("  steady-state overhead", flush=True)
            results["overhead"] = await bench.overhead_episode(100 if args.quick else 400)
    results["meta"]["elapsed_s"] = round(time.monotonic() - started, 1)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--block-time", type=float, default=DEFAULT_BLOCK_TIME_S, help="T, seconds")
    parser.add_argument("--quick", action="store_true", help="one run per fault, shorter episodes")
    parser.add_argument("--repeats", type=int, default=3, help="runs per fault (default 3)")
    parser.add_argument("--finality-jumps", type=float, default=0.15, help="devnode jump rate")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--unscaled-feed",
        action="store_true",
        help="keep blockfeed's backoff/quarantine constants in absolute seconds (not T/12 s)",
    )
    parser.add_argument(
        "--only", default="", help="comma list of fault classes / polling / overhead to run"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_PATH, help="where to save the JSON")
    args = parser.parse_args(argv)
    if not 0.05 <= args.block_time <= 12:
        parser.error("--block-time must be between 0.05 and 12 seconds")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        results = asyncio.run(run(args))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print()
        print(render(results))
        print(f"\nsaved {args.out} ({results['meta']['elapsed_s']} s)")
        return 0
    return 130


if __name__ == "__main__":
    raise SystemExit(main())
