"""Soak benchmark (DESIGN.md): 200,000 blocks with >= 2,000 faults of every class (F1-F11).

Three processes, so each one's memory and CPU are its own:

- the *node* process (``--role node``): two devnodes serving the SAME chain (same seed, advanced
  in lockstep by one producer at ``--blocks-per-s``; the 0.05 s block-time floor only applies to
  devnode's own timer, which is off here), each with its control API on its own port; the
  coordinator drives it with JSON lines on stdin (produce, status, hashes);
- the *feed* process (``--role feed``): a ``BlockFeed`` on both endpoints with a SQLite store
  and one verifying subscriber that keeps O(1) state (last number and hash; counts of gaps,
  repeats, broken parent links; one (number, hash) sample every 1,000 blocks), printing a
  progress line every second;
- this *coordinator*: starts both, injects ``--faults-per-class`` faults of each class F1-F11
  through the control APIs (random kinds/options/durations/targets from ``--seed``, spread
  evenly over the run, overlapping freely; F7 halts finality on both nodes, as a real halt
  does), samples the feed process's RSS every second, clears the faults near the end, waits
  for the feed to deliver the final finalized head, and checks the samples and the last hash
  against the canonical chain.

Verdict: nothing lost (no gap), nothing repeated or out of order, every parent link holds, the
last block and every sample are canonical, and RSS growth of the feed process from the end of
the warm-up (10% of the blocks) to the end is <= 10 MiB.

Usage::

    .venv/bin/python bench/soak.py --blocks 12000 --faults-per-class 100   # quick, ~2.5 min
    .venv/bin/python bench/soak.py                                        # full: 200k blocks,
                                                                          # 22,000 faults, ~35 min

Results go to ``bench/results/soak.json``; exit code 1 when the verdict fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from blockfeed import Block, BlockFeed, FeedConfig
from blockfeed.devnode import ControlServer, DevNode, DevNodeConfig
from blockfeed.store import open_store

HERE = Path(__file__).resolve()
RESULTS_PATH = HERE.parent / "results" / "soak.json"
DEFAULT_BLOCKS = 200_000
DEFAULT_FAULTS_PER_CLASS = 2_000
DEFAULT_BLOCKS_PER_S = 100.0
DEFAULT_SEED = 7
START_BLOCK = 6_940_000
FINALITY_JUMPS = 0.15
RSS_LIMIT_MIB = 10.0
WARMUP_SHARE = 0.1
"""RSS is measured from when this share of the blocks was delivered (caches and windows full)."""
MIN_WARMUP_BLOCKS = 1_000
TAIL_S = 3.0
"""Faults stop and are cleared this long before the producer ends, so the run ends healthy."""
SAMPLE_EVERY_BLOCKS = 1_000
PROGRESS_EVERY_S = 1.0
START_WAIT_S = 60.0
MAX_BURST_BLOCKS = 10
"""The producer catches up after a stall by at most this many blocks per step."""
MIB = 2**20
HISTORY_BLOCKS = 10
"""Blocks the chain has before the feed starts: a real chain's head always has a parent the
node serves, while devnode's first block (start_block) has only a made-up one."""


# ---------------------------------------------------------------------- shared JSON-line plumbing


def emit(record: dict[str, Any]) -> None:
    """One JSON line on stdout, flushed."""
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def stdin_lines() -> asyncio.StreamReader:
    """stdin as an asyncio stream (the children's command channel)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` (Linux)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class JsonChild:
    """A child process of this script that speaks JSON lines on stdin/stdout."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self.process = process
        self._lock = asyncio.Lock()

    @classmethod
    async def start(cls, name: str, args: Sequence[str], stderr_path: Path) -> JsonChild:
        with stderr_path.open("ab") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable, str(HERE), *args, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=stderr, limit=2**24,
            )
        return cls(name, process)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def read(self, timeout_s: float = START_WAIT_S) -> dict[str, Any]:
        """The next line, decoded; RuntimeError when the child ended or stayed silent."""
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout_s)
        except TimeoutError:
            raise RuntimeError(f"{self.name} process said nothing for {timeout_s:g}s") from None
        if not line:
            raise RuntimeError(f"{self.name} process ended (exit {self.process.returncode})")
        record: dict[str, Any] = json.loads(line)
        return record

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        await self.process.stdin.drain()

    async def request(self, message: dict[str, Any],
                      timeout_s: float = START_WAIT_S) -> dict[str, Any]:
        """Send one command and read its one-line answer."""
        async with self._lock:
            await self.send(message)
            return await self.read(timeout_s)

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Close stdin (the children's signal to end), then make sure the process is gone."""
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), timeout_s)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


# ---------------------------------------------------------------------- node role


class Producer:
    """Advances every node by the same blocks at a steady rate (the nodes stay one chain)."""

    def __init__(self, nodes: list[DevNode]) -> None:
        self.nodes = nodes
        self.produced = 0
        self.target = 0
        self._task: asyncio.Task[None] | None = None

    def start(self, blocks: int, blocks_per_s: float) -> None:
        self.target = blocks
        self._task = asyncio.create_task(self._run(blocks, blocks_per_s), name="soak-producer")

    @property
    def producing(self) -> bool:
        return self._task is not None and not self._task.done()

    async def wait(self) -> None:
        """Until the chain has finalized every block asked for."""
        if self._task is not None:
            await self._task

    async def _run(self, blocks: int, blocks_per_s: float) -> None:
        """Produce until ``blocks`` more are *finalized* (a GRANDPA-like hold at the end would
        otherwise leave the last few unfinalized), at ``blocks_per_s``."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        interval_s = 1.0 / blocks_per_s
        chain = self.nodes[0].chain
        final = chain.finalized_number + blocks
        while chain.finalized_number < final:
            due = int((loop.time() - began) * blocks_per_s) + 1
            for _ in range(max(0, min(MAX_BURST_BLOCKS, due - self.produced))):
                for node in self.nodes:
                    node.advance(1)
                self.produced += 1
            await asyncio.sleep(interval_s)


async def serve_nodes(args: argparse.Namespace) -> None:
    """``--role node``: the devnodes, their control APIs and the command loop on stdin."""
    config = DevNodeConfig(auto_produce=False, seed=args.seed, start_block=args.start_block,
                           finality_jumps=args.finality_jumps)
    async with contextlib.AsyncExitStack() as stack:
        nodes = [await stack.enter_async_context(DevNode(config)) for _ in range(args.nodes)]
        controls = [
            await stack.enter_async_context(ControlServer(node, host="127.0.0.1", port=0))
            for node in nodes
        ]
        for node in nodes:
            if args.pre_advance:
                node.advance(args.pre_advance)
        producer = Producer(nodes)
        emit({"t": "ready", "ws": [n.ws_url for n in nodes],
              "control": [c.url for c in controls], "pid": os.getpid()})
        commands = await stdin_lines()
        while line := await commands.readline():
            message = json.loads(line)
            command = message.get("cmd")
            if command == "produce":
                producer.start(int(message["blocks"]), float(message["blocks_per_s"]))
                emit({"ok": True})
            elif command == "wait_produced":
                await producer.wait()
                emit({"produced": producer.produced,
                      "finalized": [n.chain.finalized_number for n in nodes]})
            elif command == "status":
                emit({"produced": producer.produced, "producing": producer.producing,
                      "best": nodes[0].chain.best_number,
                      "finalized": [n.chain.finalized_number for n in nodes]})
            elif command == "hashes":
                chain = nodes[0].chain
                emit({"hashes": [chain.hash_of(n) if chain.has(n) else None
                                 for n in message["numbers"]]})
            else:
                emit({"error": f"unknown command {command!r}"})


# ---------------------------------------------------------------------- feed role


@dataclass
class Verifier:
    """Checks the delivered stream with O(1) memory (its own memory must not look like a leak).

    Consecutive + parent-linked + the last hash canonical means every block is canonical (each
    hash commits to its parent); samples every ``SAMPLE_EVERY_BLOCKS`` are checked too.
    """

    first: int | None = None
    last: int | None = None
    last_hash: str = ""
    delivered: int = 0
    gap_blocks: int = 0
    repeats: int = 0
    """Deliveries numbered <= the previous one (duplicates or out of order)."""
    broken_links: int = 0
    samples: list[tuple[int, str]] = field(default_factory=list)
    sources: Counter[str] = field(default_factory=Counter)

    def on_block(self, block: Block) -> None:
        self.delivered += 1
        self.sources[str(block.source)] += 1
        if self.last is None:
            self.first = block.number
        elif block.number <= self.last:
            self.repeats += 1
            return
        elif block.number > self.last + 1:
            self.gap_blocks += block.number - self.last - 1
        elif block.parent_hash != self.last_hash:
            self.broken_links += 1
        self.last, self.last_hash = block.number, block.hash
        if block.number % SAMPLE_EVERY_BLOCKS == 0:
            self.samples.append((block.number, block.hash))

    def to_dict(self) -> dict[str, Any]:
        return {"first": self.first, "last": self.last, "last_hash": self.last_hash,
                "delivered": self.delivered, "gap_blocks": self.gap_blocks,
                "repeats": self.repeats, "broken_links": self.broken_links,
                "sources": dict(self.sources)}


def soak_feed_config(block_time_s: float) -> FeedConfig:
    """The fast-timings profile for ``block_time_s`` blocks on loopback (defaults are for 12 s),
    with a short quarantine and a wide lag allowance for the soak's long fault schedule."""
    return FeedConfig.for_block_time(block_time_s, quarantine_s=20 * block_time_s,
                                     lag_quarantine_blocks=50, log_blocks=False)


async def follow(args: argparse.Namespace) -> None:
    """``--role feed``: the measured process. Progress every second; stdin EOF stops it."""
    verifier = Verifier()
    store = open_store(args.state)
    feed = BlockFeed(args.endpoints, soak_feed_config(args.block_time), store=store)
    feed.subscribe(verifier.on_block, name="soak-verifier", maxsize=100_000)
    commands = await stdin_lines()
    try:
        async with feed:
            stop = asyncio.create_task(commands.readline())
            while not stop.done():
                status = feed.status()
                emit({"t": "progress", "last": verifier.last, "delivered": verifier.delivered,
                      "mode": str(status.mode)})
                await asyncio.wait({stop}, timeout=PROGRESS_EVERY_S)
            status = feed.status()
    finally:
        store.close()
    emit({"t": "final", "verifier": verifier.to_dict(), "samples": verifier.samples,
          "status": {
              "error": status.error, "reconnects": status.reconnects,
              "mode_seconds": {k: round(v, 1) for k, v in status.mode_seconds.items()},
              "blocks_by_source": status.blocks_by_source, "probes": status.probes,
              "malformed_frames": status.malformed_frames, "requests": status.requests,
              "transitions": sum(status.transitions.values()),
              "transition_kinds": len(status.transitions),
          }})


# ---------------------------------------------------------------------- fault schedule

Options = Callable[[random.Random], dict[str, Any]]


@dataclass(frozen=True)
class FaultVariant:
    kind: str
    seconds: tuple[float, float]
    """Duration drawn uniformly from this range (0, 0) for instantaneous faults."""
    options: Options = lambda rng: {}
    both_nodes: bool = False
    """A chain-wide fault (finality halt): injected on every node at once."""


FAULT_MENU: dict[str, tuple[FaultVariant, ...]] = {
    "F1": (FaultVariant("close", (0.0, 0.0)),
           FaultVariant("close", (0.0, 0.0), lambda rng: {"reset": True}),
           FaultVariant("close", (0.1, 0.6), lambda rng: {"flap": True})),
    "F2": (FaultVariant("restart", (0.1, 0.8)),),
    "F3": (FaultVariant("blackhole", (0.2, 1.0)),
           FaultVariant("blackhole", (0.2, 1.0), lambda rng: {"http": False}),
           FaultVariant("blackhole", (0.2, 1.0), lambda rng: {"new": False})),
    "F4": (FaultVariant("sub_stall", (0.2, 1.0)),
           FaultVariant("sub_stall", (0.2, 1.0), lambda rng: {"new": True})),
    "F5": (FaultVariant("sub_error", (0.1, 0.6)),),
    "F6": (FaultVariant("http_errors", (0.1, 0.6),
                        lambda rng: {"status": rng.choice([429, 500, 502, 503])}),
           FaultVariant("http_errors", (0.1, 0.6), lambda rng: {"hang": True})),
    "F7": (FaultVariant("finality_halt", (0.1, 0.8), both_nodes=True),),
    "F8": (FaultVariant("malformed", (0.1, 0.6), lambda rng: {
               "rate": 0.3, "kinds": ["garbage", "invalid_json", "wrong_types",
                                      "missing_fields", "unknown_subscription"]}),
           FaultVariant("malformed", (0.1, 0.6), lambda rng: {
               "rate": 0.5, "replace": True, "kinds": ["invalid_json", "wrong_types",
                                                       "missing_fields"]}),
           FaultVariant("malformed", (0.1, 0.4), lambda rng: {
               "rate": 0.05, "kinds": ["oversized"], "big_bytes": 1_100_000})),
    "F9": (FaultVariant("disorder", (0.1, 0.8), lambda rng: {"rate": 0.4}),
           FaultVariant("disorder", (0.1, 0.8), lambda rng: {"rate": 0.6, "kinds": ["skip"]})),
    "F10": (FaultVariant("lie", (0.1, 0.6), lambda rng: {"mode": "parent"}),
            FaultVariant("lie", (0.1, 0.6), lambda rng: {"mode": "parent", "on": "ws"}),
            FaultVariant("lie", (0.1, 0.6), lambda rng: {"mode": "lag",
                                                         "blocks": rng.randint(60, 300)})),
    "F11": (FaultVariant("latency", (0.2, 1.0),
                         lambda rng: {"delay_s": round(rng.uniform(0.02, 0.2), 3)}),),
}
FAULT_CLASSES = tuple(FAULT_MENU)


@dataclass(frozen=True)
class PlannedFault:
    at_s: float
    fault_class: str
    kind: str
    seconds: float
    options: dict[str, Any]
    targets: tuple[int, ...]


def plan_faults(rng: random.Random, *, per_class: int, period_s: float,
                nodes: int) -> list[PlannedFault]:
    """``per_class`` faults of every class, shuffled, spread evenly over ``period_s``."""
    classes = [c for c in FAULT_CLASSES for _ in range(per_class)]
    rng.shuffle(classes)
    spacing_s = period_s / max(1, len(classes))
    plan = []
    for index, fault_class in enumerate(classes):
        variant = rng.choice(FAULT_MENU[fault_class])
        low, high = variant.seconds
        targets = tuple(range(nodes)) if variant.both_nodes else (rng.randrange(nodes),)
        plan.append(PlannedFault(
            at_s=(index + rng.random()) * spacing_s, fault_class=fault_class,
            kind=variant.kind, seconds=round(rng.uniform(low, high), 3),
            options=variant.options(rng), targets=targets,
        ))
    return plan


async def inject_all(plan: list[PlannedFault], control_urls: list[str]) -> Counter[str]:
    """Inject every planned fault at its time; returns faults injected per class."""
    injected: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    began = loop.time()
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as http:
        for fault in plan:
            await asyncio.sleep(max(0.0, began + fault.at_s - loop.time()))
            body = {"kind": fault.kind, "seconds": fault.seconds, **fault.options}
            for target in fault.targets:
                reply = await http.post(f"{control_urls[target]}/faults", json=body)
                if reply.status_code != 201:
                    raise RuntimeError(f"devnode refused {body}: {reply.status_code} {reply.text}")
            injected[fault.fault_class] += 1
    return injected


async def clear_faults(control_urls: list[str]) -> None:
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as http:
        for url in control_urls:
            await http.delete(f"{url}/faults")


# ---------------------------------------------------------------------- coordinator


@dataclass
class Progress:
    """What the feed process last reported, and the RSS samples taken alongside."""

    last: int | None = None
    delivered: int = 0
    mode: str = "starting"
    final: dict[str, Any] | None = None
    rss: list[tuple[float, int, int]] = field(default_factory=list)
    """(seconds since start, blocks delivered, RSS bytes)."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)


async def read_progress(feed: JsonChild, progress: Progress) -> None:
    while True:
        try:
            record = await feed.read(timeout_s=3600)
        except RuntimeError:
            progress.changed.set()
            return
        if record.get("t") == "progress":
            progress.last, progress.delivered = record["last"], record["delivered"]
            progress.mode = record["mode"]
        elif record.get("t") == "final":
            progress.final = record
        progress.changed.set()


async def sample_rss(pid: int, progress: Progress, began: float) -> None:
    while True:
        with contextlib.suppress(OSError, RuntimeError):
            progress.rss.append((round(time.monotonic() - began, 1), progress.delivered,
                                 rss_bytes(pid)))
        await asyncio.sleep(PROGRESS_EVERY_S)


async def wait_for(progress: Progress, predicate: Callable[[], bool], what: str,
                   timeout_s: float) -> None:
    async def loop() -> None:
        while not predicate():
            progress.changed.clear()
            await progress.changed.wait()
    try:
        await asyncio.wait_for(loop(), timeout_s)
    except TimeoutError:
        raise RuntimeError(f"timed out after {timeout_s:g}s waiting for {what} "
                           f"(feed at #{progress.last}, mode {progress.mode})") from None


def rss_figures(samples: list[tuple[float, int, int]], warmup_blocks: int) -> dict[str, Any]:
    """RSS at the end of the warm-up, at the end, growth, peak and a thinned timeline."""
    if not samples:
        return {"error": "no RSS sample"}
    after_warmup = [s for s in samples if s[1] >= warmup_blocks] or samples[-1:]
    base, end = after_warmup[0], samples[-1]
    step = max(1, len(samples) // 20)
    return {
        "warmup_blocks": warmup_blocks,
        "start_mib": round(samples[0][2] / MIB, 2),
        "baseline_mib": round(base[2] / MIB, 2),
        "end_mib": round(end[2] / MIB, 2),
        "peak_mib": round(max(s[2] for s in samples) / MIB, 2),
        "growth_mib": round((end[2] - base[2]) / MIB, 2),
        "growth_since_start_mib": round((end[2] - samples[0][2]) / MIB, 2),
        "timeline": [{"t_s": t, "delivered": n, "rss_mib": round(r / MIB, 2)}
                     for t, n, r in samples[::step]],
    }


async def run_soak(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    block_time_s = 1.0 / args.blocks_per_s
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="blockfeed-soak-") as tmp:
        logs = Path(tmp)
        node = await JsonChild.start("node", [
            "--role", "node", "--nodes", "2", "--seed", str(args.seed),
            "--start-block", str(START_BLOCK), "--finality-jumps", str(args.finality_jumps),
            "--pre-advance", str(HISTORY_BLOCKS),
        ], logs / "node.stderr")
        try:
            ready = await node.read()
            feed = await JsonChild.start("feed", [
                "--role", "feed", "--state", str(logs / "state.sqlite"),
                "--block-time", str(block_time_s), *ready["ws"],
            ], logs / "feed.stderr")
            try:
                result = await drive(args, rng, node, feed, ready, started, block_time_s)
            finally:
                await feed.stop()
            if not result["verdict"]["pass"]:
                result["feed_stderr_tail"] = (logs / "feed.stderr").read_text(
                    errors="replace")[-3000:]
        finally:
            await node.stop()
    return result


async def drive(args: argparse.Namespace, rng: random.Random, node: JsonChild,
                feed: JsonChild, ready: dict[str, Any], started: float,
                block_time_s: float) -> dict[str, Any]:
    """Everything between "both processes are up" and "the feed reported its final figures"."""
    progress = Progress()
    reader = asyncio.create_task(read_progress(feed, progress))
    sampler: asyncio.Task[None] | None = None
    try:
        await wait_for(progress, lambda: progress.last is not None, "the first block",
                       START_WAIT_S)
        sampler = asyncio.create_task(sample_rss(feed.pid, progress, started))
        first_head = progress.last
        period_s = max(1.0, args.blocks / args.blocks_per_s - TAIL_S)
        plan = plan_faults(rng, per_class=args.faults_per_class, period_s=period_s, nodes=2)
        await node.request({"cmd": "produce", "blocks": args.blocks,
                            "blocks_per_s": args.blocks_per_s})
        produce_began = time.monotonic()
        injected = await inject_all(plan, ready["control"])
        inject_s = time.monotonic() - produce_began
        await clear_faults(ready["control"])
        status = await node.request({"cmd": "wait_produced"}, timeout_s=args.blocks)
        produce_s = time.monotonic() - produce_began
        head = max(status["finalized"])
        catch_up_began = time.monotonic()
        await wait_for(progress, lambda: (progress.last or 0) >= head, f"block #{head}",
                       max(120.0, args.blocks / 500))
        catch_up_s = time.monotonic() - catch_up_began
        await feed.stop()
        await wait_for(progress, lambda: progress.final is not None, "the final report", 60.0)
    finally:
        if sampler is not None:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    final = progress.final
    assert final is not None
    verifier = final["verifier"]
    numbers = [n for n, _ in final["samples"]] + [verifier["last"]]
    canonical = (await node.request({"cmd": "hashes", "numbers": numbers}))["hashes"]
    delivered_hashes = [h for _, h in final["samples"]] + [verifier["last_hash"]]
    wrong = sum(a != b for a, b in zip(delivered_hashes, canonical, strict=True))
    span = verifier["last"] - verifier["first"] + 1
    warmup_blocks = max(MIN_WARMUP_BLOCKS, int(args.blocks * WARMUP_SHARE))
    rss = rss_figures(progress.rss, warmup_blocks)
    checks = {
        "nothing_lost": verifier["gap_blocks"] == 0 and verifier["delivered"] == span,
        "no_duplicates_or_disorder": verifier["repeats"] == 0,
        "parent_linked": verifier["broken_links"] == 0,
        "canonical": wrong == 0,
        "reached_head": verifier["last"] >= head,
        "blocks_produced": verifier["last"] - (first_head or 0) >= args.blocks,
        "faults_per_class": all(injected[c] >= args.faults_per_class for c in FAULT_CLASSES),
        "feed_error_free": final["status"]["error"] is None,
        "rss_growth": "growth_mib" in rss and rss["growth_mib"] <= RSS_LIMIT_MIB,
    }
    return {
        "benchmark": "soak",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "config": {"blocks": args.blocks, "faults_per_class": args.faults_per_class,
                   "blocks_per_s": args.blocks_per_s, "block_time_s": block_time_s,
                   "seed": args.seed, "nodes": 2, "finality_jumps": args.finality_jumps},
        "targets": {"blocks": DEFAULT_BLOCKS, "faults_per_class": DEFAULT_FAULTS_PER_CLASS,
                    "rss_growth_mib": RSS_LIMIT_MIB},
        "faults_injected": {c: injected[c] for c in FAULT_CLASSES},
        "faults_total": sum(injected.values()),
        "fault_spacing_s": round(period_s / max(1, len(plan)), 4),
        "delivery": {**verifier, "span": span, "head": head, "wrong_hashes": wrong,
                     "samples_checked": len(final["samples"]) + 1},
        "feed_status": final["status"],
        "rss": rss,
        "timing": {"produce_s": round(produce_s, 1), "inject_s": round(inject_s, 1),
                   "catch_up_after_last_block_s": round(catch_up_s, 2),
                   "total_s": round(time.monotonic() - started, 1)},
        "verdict": {"pass": all(checks.values()), **checks},
    }


def render(result: dict[str, Any]) -> str:
    delivery, rss, verdict = result["delivery"], result["rss"], result["verdict"]
    faults = ", ".join(f"{c} {n}" for c, n in result["faults_injected"].items())
    status = result["feed_status"]
    lines = [
        f"soak: {delivery['delivered']} blocks delivered (#{delivery['first']}..#{delivery['last']}"
        f"), {result['faults_total']} faults ({faults})",
        f"  lost {delivery['gap_blocks']}, repeated/out of order {delivery['repeats']}, "
        f"broken links {delivery['broken_links']}, wrong hashes {delivery['wrong_hashes']} "
        f"(of {delivery['samples_checked']} checked)",
        f"  by source {delivery['sources']}; reconnects {status['reconnects']}, mode seconds "
        f"{status['mode_seconds']}, malformed frames {status['malformed_frames']}",
        f"  feed RSS: {rss.get('start_mib')} MiB at the first block, "
        f"{rss.get('baseline_mib')} after warm-up ({rss.get('warmup_blocks')} blocks), "
        f"{rss.get('end_mib')} at the end, growth "
        f"{rss.get('growth_mib')} MiB (limit {RSS_LIMIT_MIB}), peak {rss.get('peak_mib')}",
        f"  time: {result['timing']}",
        f"  verdict: {'PASS' if verdict['pass'] else 'FAIL'} "
        + ", ".join(f"{k}={v}" for k, v in verdict.items() if k != "pass"),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------- entry point


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=["coordinator", "node", "feed"], default="coordinator")
    parser.add_argument("--blocks", type=int, default=DEFAULT_BLOCKS,
                        help=f"blocks the chain grows by during the soak ({DEFAULT_BLOCKS:,})")
    parser.add_argument("--faults-per-class", type=int, default=DEFAULT_FAULTS_PER_CLASS,
                        help=f"faults of each class F1-F11 ({DEFAULT_FAULTS_PER_CLASS:,})")
    parser.add_argument("--blocks-per-s", type=float, default=DEFAULT_BLOCKS_PER_S,
                        help="chain speed; the feed is told T = 1 / this")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--finality-jumps", type=float, default=FINALITY_JUMPS)
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    # internal: the node and feed roles
    parser.add_argument("--nodes", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--start-block", type=int, default=START_BLOCK, help=argparse.SUPPRESS)
    parser.add_argument("--pre-advance", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--state", default=":memory:", help=argparse.SUPPRESS)
    parser.add_argument("--block-time", type=float, default=0.01, help=argparse.SUPPRESS)
    parser.add_argument("endpoints", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "coordinator":
        if args.blocks < 100:
            parser.error("--blocks must be at least 100")
        if args.faults_per_class < 0:
            parser.error("--faults-per-class must be >= 0")
        if not 1 <= args.blocks_per_s <= 1000:
            parser.error("--blocks-per-s must be between 1 and 1000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.role != "coordinator":
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator decides when to stop
        runner = serve_nodes if args.role == "node" else follow
        asyncio.run(runner(args))
        return 0
    result = asyncio.run(run_soak(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    print(f"saved {args.out} ({result['timing']['total_s']} s)")
    return 0 if result["verdict"]["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
