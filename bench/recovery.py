"""Recovery benchmark (issue #3): blockfeed vs the FIRST FIX, side by side, fault by fault.

The devnode (short block time T) runs in its own process (``common.NodeProcess``): it stamps
each block's finality time itself, and serving sockets and requests does not compete with the
clients being measured for one event loop (``--in-process-node`` reproduces the old shared-loop
setup for comparison). Both clients follow it at the same time. For each fault class a fresh
pair is started, warmed up, the fault is injected, and every block finalized in the following
window is checked for each client:

- *first block after the fault*: from the moment the first block after the injection was
  finalized to the moment the client delivered any block from then on (how long the user saw
  nothing new);
- *caught up after the fault ends*: from the end of the fault to the delivery of the block
  that was the chain's head at that moment (0 when the client never fell behind): the time a
  node restart (F2) or a dead HTTP side (F6) really costs once it is over;
- delay of each delivered block after its finalization (p50 / max), blocks lost (never
  delivered), duplicated, out of order, wrong (not the canonical hash), reconnects, and how
  often blockfeed left streaming ("socket given up").

Then a polling-mode episode per client, each alone against the node (WebSockets closed right
after their handshake, HTTP fine), gives polling delay p50/p99 and HTTP requests (POSTs; a
JSON-RPC batch is one) per block from the node's own counter; and a steady-state episode
measures blockfeed's per-block overhead against a bare ``websockets`` subscription client
(same blocks, same process, median of arrival-time differences).

blockfeed's constants given in absolute seconds (reconnect and HTTP backoff, quarantine,
health checks) are scaled by T / 12 s like the first fix's, so both behave on the fast devnode
as they would on finney (``--unscaled-feed`` keeps them absolute).

Usage::

    .venv/bin/python bench/recovery.py --quick          # ~3 min
    .venv/bin/python bench/recovery.py --block-time 0.2 # default, <= ~9 min
    .venv/bin/python bench/recovery.py --untold --block-time 1   # blockfeed NOT told T

``--untold`` gives blockfeed only its defaults (a 12 s hint, constants in absolute seconds, no
scaling by the real T): every timer it uses must come from what it learns. The first fix keeps
its scaled timings (it cannot learn). Scenario ``F1x2`` adds a second endpoint to blockfeed
that accepts TCP connections and never answers (a silently dead alternate).

Results go to ``bench/results/recovery.json``; a markdown table is printed for the README.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

from blockfeed import BlockFeed, FeedConfig
from blockfeed.codec import block_hash
from blockfeed.feed.config import HTTP_RETRY_INITIAL_CAP_S
from blockfeed.types import Block
from common import (
    WAIT_S,
    BareSubscriber,
    InProcessNode,
    Node,
    NodeProcess,
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
    dead_alternate: bool = False
    """blockfeed also gets a second endpoint that accepts connections and never answers."""


def scenarios(*, halt_t: float) -> list[Scenario]:
    """The fault classes compared (F8, F11, F12 are covered by tests, not by this benchmark)."""
    return [
        Scenario("none", "steady state, no fault", (), 10),
        Scenario("F1", "node closes the socket", (("close", 0, {}),), 10),
        Scenario("F1x2", "node closes the socket; the alternate is silently dead",
                 (("close", 0, {}),), 10, dead_alternate=True),
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
            "F6", "HTTP 503 (10 T), socket healthy", (("http_errors", 10, {"status": 503}),), 20
        ),
        Scenario(
            "F4+F6",
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


def scaled_feed_config(block_time_s: float) -> FeedConfig:
    """blockfeed's defaults with every constant given in absolute seconds (backoffs,
    quarantine, health checks) scaled by T/12 s, as the first fix's are: both then behave on the
    fast devnode as they would on finney. Fractions of T need no scaling."""
    k = block_time_s / FINNEY_BLOCK_TIME_S
    base = FeedConfig(block_time_s=block_time_s)
    # The HTTP retry cap and the idle-endpoint checks follow the learned T by themselves.
    return base.replace(
        reconnect_initial_s=base.reconnect_initial_s * k,
        reconnect_cap_s=base.reconnect_cap_s * k,
        http_retry_initial_s=HTTP_RETRY_INITIAL_CAP_S * k,
        quarantine_s=base.quarantine_s * k,
    )


class BlockfeedClient:
    """blockfeed's public API, recording every delivered block."""

    def __init__(
        self, ws_url: str | list[str], block_time_s: float, recorder: Recorder, *,
        scaled: bool = True, untold: bool = False,
    ) -> None:
        urls = [ws_url] if isinstance(ws_url, str) else ws_url
        if untold:  # nothing about T: the 12 s default hint and absolute constants
            self._feed = BlockFeed(urls)
        else:
            config = (scaled_feed_config(block_time_s) if scaled
                      else FeedConfig(block_time_s=block_time_s))
            self._feed = BlockFeed(urls, config)
        self._recorder = recorder
        self._subscription: Any = None
        self.streaming_at: list[float] = []
        """Monotonic times the feed entered streaming (the socket restored)."""
        self._feed.add_event_hook(self._on_event)

    def _on_event(self, event: Any) -> None:
        if event.kind == "mode_changed" and str(event.new_mode) == "streaming":
            self.streaming_at.append(time.monotonic())

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


class SilentEndpoint:
    """A loopback TCP port that accepts every connection and never answers (a dead node behind
    a live address): WebSocket handshakes and HTTP requests hang until the client gives up."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> str:
        async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.append(writer)
            with contextlib.suppress(Exception):
                while await reader.read(65536):
                    pass

        self._server = await asyncio.start_server(swallow, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 1.0)


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
    node: Node
    block_time_s: float
    scaled: bool = True
    """Scale blockfeed's absolute-second constants by T/12 s (see scaled_feed_config)."""
    untold: bool = False
    """Tell blockfeed nothing about T (see the module docstring)."""

    @property
    def T(self) -> float:
        return self.block_time_s

    async def warm_up(self, *recorders: Recorder) -> None:
        target = self.node.finalized_number + WARMUP_BLOCKS
        for recorder in recorders:
            if not await recorder.wait_for(target, timeout_s=WAIT_S):
                raise RuntimeError(f"{recorder.name} delivered nothing within {WAIT_S:g} s")

    async def fault_episode(self, scenario: Scenario) -> dict[str, Any]:
        """Start both clients, inject, watch the window plus grace, return per-client stats."""
        node = self.node
        await node.clear()
        bf_rec, ff_rec = Recorder("blockfeed"), Recorder("firstfix")
        ff = first_fix_client(node.ws_url, node.http_url, self.T, ff_rec)
        async with contextlib.AsyncExitStack() as stack:
            urls = [node.ws_url]
            if scenario.dead_alternate:
                urls.append(await stack.enter_async_context(SilentEndpoint()))
            bf = await stack.enter_async_context(
                BlockfeedClient(urls, self.T, bf_rec, scaled=self.scaled, untold=self.untold))
            await stack.enter_async_context(ff)
            await self.warm_up(bf_rec, ff_rec)
            reconnects_before = (bf.reconnects, ff.reconnects)
            given_up_before = (bf.socket_given_up, ff.heartbeat_timeouts)
            injected_at = time.monotonic()
            for kind, seconds_t, options in scenario.faults:
                await node.inject(kind, seconds=seconds_t * self.T, **options)
            longest_t = max((seconds_t for _, seconds_t, _ in scenario.faults), default=0.0)
            fault_end = injected_at + longest_t * self.T
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
            socket_back = next((at - fault_end for at in bf.streaming_at if at >= fault_end),
                               None) if longest_t > 0 else None
        await node.clear()
        out: dict[str, Any] = {}
        for name, recorder, count, dropped in (
            ("blockfeed", bf_rec, reconnects[0], given_up[0]),
            ("firstfix", ff_rec, reconnects[1], given_up[1]),
        ):
            stats = window_stats(
                recorder, node, node.hash_of, start_s=injected_at, end_s=window_end
            )
            row = stats.to_dict(self.T)
            self._put(row, "first_block_after_fault",
                      self.first_block_delay(recorder, injected_at, window_end))
            self._put(row, "longest_gap", longest_gap(recorder, injected_at, window_end))
            caught_up = None
            if scenario.faults:
                caught_up = self.caught_up_after(recorder, fault_end, window_end + GRACE_T * self.T)
            self._put(row, "caught_up_after_fault_end", caught_up)
            row["reconnects"] = count
            row["socket_given_up"] = dropped
            out[name] = row
        out["blockfeed"]["socket_back_after_fault_end_s"] = round_or_none(socket_back, 3)
        out["blockfeed"]["blocks_by_source"] = dict(getattr(bf_status, "blocks_by_source", {}))
        out["blockfeed"]["transitions"] = dict(getattr(bf_status, "transitions", {}))
        return out

    def _put(self, row: dict[str, Any], key: str, seconds: float | None) -> None:
        row[f"{key}_s"] = round_or_none(seconds, 4)
        row[f"{key}_T"] = round_or_none(None if seconds is None else seconds / self.T)

    def first_block_delay(self, recorder: Recorder, start_s: float, end_s: float) -> float | None:
        """Time from the first block finalized after ``start_s`` to the next delivery of anything
        at least that new."""
        numbers = self.node.numbers_between(start_s, end_s)
        if not numbers:
            return None
        first = numbers[0]
        finalized_at = self.node.finalized_at
        for delivery in recorder.deliveries:
            if delivery.number >= first and delivery.at >= finalized_at[first] - 1:
                return max(0.0, delivery.at - finalized_at[first])
        return None

    def caught_up_after(self, recorder: Recorder, end_s: float, limit_s: float) -> float | None:
        """From ``end_s`` (the fault is over) to the delivery of the block that was the chain's
        head then; 0 if it had been delivered already, None if never (before ``limit_s``)."""
        finalized = [n for n, at in self.node.finalized_at.items() if at <= end_s]
        if not finalized:
            return None
        head = max(finalized)
        for delivery in recorder.deliveries:
            if delivery.number >= head and delivery.at <= limit_s:
                return max(0.0, delivery.at - end_s)
        return None

    async def polling_episode(self, window_t: float) -> dict[str, Any]:
        """Each client alone: every WebSocket is closed right after its handshake while HTTP
        works. Delays of the blocks finalized in the window, and the POSTs the node counted."""
        out: dict[str, Any] = {}
        settle_t = 8.0  # the first fix needs 5-6 T to notice; both are polling afterwards
        for name in ("blockfeed", "firstfix"):
            node = self.node
            await node.clear()
            recorder = Recorder(name)
            client: Any
            if name == "blockfeed":
                client = BlockfeedClient(node.ws_url, self.T, recorder, scaled=self.scaled,
                                         untold=self.untold)
            else:
                client = first_fix_client(node.ws_url, node.http_url, self.T, recorder)
            async with client:
                await self.warm_up(recorder)
                await node.inject(
                    "close", seconds=(settle_t + window_t + GRACE_T) * self.T, flap=True
                )
                await asyncio.sleep(settle_t * self.T)
                start = time.monotonic()
                posts_before = (await node.stats())["http_requests"]
                await asyncio.sleep(window_t * self.T)
                end = time.monotonic()
                posts = (await node.stats())["http_requests"] - posts_before
                await asyncio.sleep(GRACE_T * self.T)
                if name == "blockfeed":
                    status = client.status()
                    out["blockfeed_mode_at_end"] = str(status.mode)
                    out["blockfeed_requests_by_kind"] = dict(status.requests)
            await node.clear()
            blocks = len(node.numbers_between(start, end))
            row = window_stats(recorder, node, node.hash_of, start_s=start, end_s=end).to_dict(
                self.T
            )
            row["http_requests"] = posts
            row["requests_per_block"] = round(posts / blocks, 3) if blocks else None
            out[name] = row
            out["blocks"] = blocks
        return out

    async def overhead_episode(self, blocks: int) -> dict[str, Any]:
        """blockfeed vs a bare websockets subscription on the same blocks: extra ms per block."""
        node = self.node
        await node.clear()
        bf_rec, bare_rec = Recorder("blockfeed"), Recorder("bare")
        async with (
            BlockfeedClient(node.ws_url, self.T, bf_rec, scaled=self.scaled, untold=self.untold),
            BareSubscriber(node.ws_url, bare_rec),
        ):
            await self.warm_up(bf_rec, bare_rec)
            target = node.finalized_number + blocks
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
        "caught_up_after_fault_end_s",
        "caught_up_after_fault_end_T",
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
        "caught up after the fault ends, T",
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
                pair("caught_up_after_fault_end_T"),
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
    told = results["meta"].get("blockfeed_told_T", True)
    lines = [
        f"Recovery, blockfeed {'(told T)' if told else '(NOT told T: 12 s default hint)'} "
        f"vs the first fix (T = {T:g} s devnode in "
        f"{results['meta'].get('devnode', 'own process')}, {results['meta']['repeats']} run(s) "
        f"per fault, worst run shown; cells are blockfeed / first fix; 'lost' counts blocks "
        f"never delivered, so the first fix's delays cover only the blocks it did deliver):",
        "",
        markdown_table(header, rows),
        "",
    ]
    polling = results.get("polling")
    if polling:
        bf, ff = polling["blockfeed"], polling["firstfix"]
        lines += [
            f"Polling mode (every WebSocket closed right after its handshake, HTTP fine; each "
            f"client alone against the node; {polling['blocks']} blocks; requests = HTTP POSTs "
            f"counted by the node, a JSON-RPC batch is one):",
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
    config = {
        "block_time_s": T,
        "finality_jumps": args.finality_jumps,
        "seed": args.seed,
        "start_block": 6_940_000,
    }
    results: dict[str, Any] = {
        "meta": {
            "block_time_s": T,
            "repeats": repeats,
            "quick": args.quick,
            "blockfeed_constants_scaled": not args.unscaled_feed and not args.untold,
            "blockfeed_told_T": not args.untold,
            "devnode": "same process" if args.in_process_node else "own process",
            "finality_jumps": args.finality_jumps,
            "seed": args.seed,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "faults": {},
    }
    started = time.monotonic()
    node: Node = InProcessNode(**config) if args.in_process_node else NodeProcess(**config)
    async with node:
        bench = Bench(node, T, scaled=not args.unscaled_feed, untold=args.untold)
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
            results["polling"] = await bench.polling_episode(40.0 if args.quick else 150.0)
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
        "--untold",
        action="store_true",
        help="tell blockfeed nothing about T (12 s default hint, absolute constants)",
    )
    parser.add_argument(
        "--in-process-node",
        action="store_true",
        help="run the devnode in this process's event loop (the old, less fair setup)",
    )
    parser.add_argument(
        "--only", default="", help="comma list of fault classes / polling / overhead to run"
    )
    parser.add_argument("--out", type=Path, default=None, help="where to save the JSON")
    args = parser.parse_args(argv)
    if args.out is None:
        suffix = f"_untold_T{args.block_time:g}" if args.untold else ""
        args.out = RESULTS_PATH.with_name(f"recovery{suffix}.json")
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
