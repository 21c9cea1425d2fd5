"""Sink throughput and live lag: PostgreSQL, NATS JetStream and signed webhooks on this machine.

For each sink, against a real server started here (PostgreSQL with its default durability,
``nats-server -js`` with file storage, a loopback HTTP receiver):

* **catch-up**: 20,000 blocks queued at once (a sink coming back after an outage), timed from
  the first ``publish()`` to ``flush()`` returning; then the rows/messages are read back and
  checked: every number once, consecutive, parent-linked, hashes equal to the chain.
  Targets: PostgreSQL >= 2,000 blocks/s, NATS >= 5,000 blocks/s.
* **live lag**: blocks published one at a time (every ``--live-interval-ms``), each timed from
  ``publish()`` to the target confirming it. Target: p99 <= 50 ms.

Results go to ``bench/results/sinks.json``::

    .venv/bin/python bench/sinks.py            # full (20,000 blocks)
    .venv/bin/python bench/sinks.py --quick    # 5,000 blocks, fewer live blocks
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "sinks"))

from sink_chain import make_chain  # noqa: E402
from sink_servers import NatsServer, PostgresServer, nats_binary, postgres_bindir  # noqa: E402

from blockfeed.sinks.base import CursorSink  # noqa: E402
from blockfeed.types import Block  # noqa: E402

RESULTS_PATH = HERE / "results" / "sinks.json"
TARGETS = {"postgresql": 2000.0, "nats": 5000.0}
LAG_P99_TARGET_MS = 50.0
WAIT_S = 300.0


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def catch_up(sink: CursorSink, chain: list[Block]) -> float:
    """Seconds from the first publish to the target holding every block."""
    started = time.perf_counter()
    for block in chain:
        await sink.publish(block)
    if not await sink.flush(WAIT_S):
        raise RuntimeError(f"{sink.kind}: catch-up did not finish in {WAIT_S} s: {sink.status()}")
    return time.perf_counter() - started


async def live(sink: CursorSink, chain: list[Block], interval_s: float) -> list[float]:
    """Lag (ms) from publish to confirmation, one block at a time."""
    sink.take_live_lags_s()  # forget the catch-up's figures
    for block in chain:
        await sink.publish(block)
        await asyncio.sleep(interval_s)
    if not await sink.flush(WAIT_S):
        raise RuntimeError(f"{sink.kind}: live blocks not confirmed: {sink.status()}")
    return [1000 * s for s in sink.take_live_lags_s()]


def verdict(rows: list[tuple[int, str, str]], chain: list[Block]) -> bool:
    """The target holds exactly ``chain``: same numbers and hashes, in order, parent-linked."""
    if [r[0] for r in rows] != [b.number for b in chain]:
        return False
    if [r[1] for r in rows] != [b.hash for b in chain]:
        return False
    return all(after[2] == before[1] for before, after in itertools.pairwise(rows))


async def bench_postgres(count: int, live_count: int, interval_s: float) -> dict[str, Any]:
    import asyncpg

    from blockfeed.sinks.postgres import PostgresSink

    server = PostgresServer(durable=True)
    server.start()
    try:
        url = server.url()
        chain = make_chain(count + live_count)
        async with PostgresSink(url, batch_size=1000) as sink:
            elapsed = await catch_up(sink, chain[:count])
            lags = await live(sink, chain[count:], interval_s)
        conn = await asyncpg.connect(url)
        try:
            got = await conn.fetch(
                "SELECT number, hash, parent_hash FROM blockfeed.blocks ORDER BY number"
            )
        finally:
            await conn.close()
        rows = [(r["number"], r["hash"], r["parent_hash"]) for r in got]
        return figures("postgresql", count, elapsed, lags, verdict(rows, chain))
    finally:
        server.stop()


async def bench_nats(count: int, live_count: int, interval_s: float) -> dict[str, Any]:
    import nats

    from blockfeed.sinks.nats import NatsConsumer, NatsSink
    from blockfeed.sinks.redis_consumer import FROM_FIRST

    server = NatsServer()
    server.start()
    try:
        chain = make_chain(count + live_count)
        async with NatsSink(server.url, batch_size=1000) as sink:
            elapsed = await catch_up(sink, chain[:count])
            lags = await live(sink, chain[count:], interval_s)
        nc = await nats.connect(server.url)
        try:
            info = await nc.jetstream().stream_info("BLOCKFEED")
            messages = info.state.messages
        finally:
            await nc.close()
        rows = []
        async for block in NatsConsumer(server.url, after=FROM_FIRST):
            rows.append((block.number, block.hash, block.parent_hash))
            if len(rows) == len(chain):
                break
        ok = messages == len(chain) and verdict(rows, chain)
        return figures("nats", count, elapsed, lags, ok)
    finally:
        server.stop()


async def bench_webhook(count: int, live_count: int, interval_s: float) -> dict[str, Any]:
    from webhook_receiver import SECRET, Receiver

    from blockfeed.sinks.webhook import WebhookSink

    receiver = Receiver()
    await receiver.start()
    try:
        chain = make_chain(count + live_count)
        async with WebhookSink(receiver.url, secret=SECRET) as sink:
            elapsed = await catch_up(sink, chain[:count])
            lags = await live(sink, chain[count:], interval_s)
        rows = [(b["number"], b["hash"], b["parent_hash"]) for b in receiver.accepted]
        ok = verdict(rows, chain) and receiver.bad_signatures == 0
        return figures("webhook", count, elapsed, lags, ok)
    finally:
        await receiver.stop()


def figures(kind: str, count: int, elapsed: float, lags: list[float], ok: bool) -> dict[str, Any]:
    rate = count / elapsed
    out = {
        "kind": kind,
        "catch_up_blocks": count,
        "catch_up_s": round(elapsed, 3),
        "blocks_per_s": round(rate, 1),
        "target_blocks_per_s": TARGETS.get(kind),
        "verified": ok,
        "live_blocks": len(lags),
        "live_lag_ms_p50": round(statistics.median(lags), 2) if lags else None,
        "live_lag_ms_p99": round(quantile(lags, 0.99), 2) if lags else None,
        "live_lag_ms_max": round(max(lags), 2) if lags else None,
        "live_lag_target_ms_p99": LAG_P99_TARGET_MS,
    }
    target = TARGETS.get(kind)
    out["meets_targets"] = bool(ok and (target is None or rate >= target) and lags
                                and out["live_lag_ms_p99"] <= LAG_P99_TARGET_MS)  # fmt: skip
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    interval_s = args.live_interval_ms / 1000
    plans: list[tuple[str, Callable[[int, int, float], Awaitable[dict[str, Any]]], bool]] = [
        ("postgresql", bench_postgres, postgres_bindir() is not None),
        ("nats", bench_nats, nats_binary() is not None),
        ("webhook", bench_webhook, True),
    ]
    results = []
    for name, bench, available in plans:
        if args.only and name not in args.only:
            continue
        if not available:
            print(f"{name}: skipped (server binary not installed; scripts/system-deps.sh)")
            continue
        count = args.webhook_blocks if name == "webhook" else args.blocks
        result = await bench(count, args.live_blocks, interval_s)
        results.append(result)
        print(
            f"{name:10s} catch-up {result['blocks_per_s']:>9,.0f} blocks/s "
            f"({count} blocks in {result['catch_up_s']} s, target "
            f"{result['target_blocks_per_s'] or '-'}), verified {result['verified']}; "
            f"live lag p50 {result['live_lag_ms_p50']} ms, p99 {result['live_lag_ms_p99']} ms"
        )
    return {
        "benchmark": "sinks",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "blocks": args.blocks,
        "live_interval_ms": args.live_interval_ms,
        "results": results,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=20_000, help="catch-up blocks per sink")
    parser.add_argument("--webhook-blocks", type=int, default=2_000,
                        help="catch-up blocks for the webhook (one POST each)")  # fmt: skip
    parser.add_argument("--live-blocks", type=int, default=300)
    parser.add_argument("--live-interval-ms", type=float, default=10.0)
    parser.add_argument("--only", type=lambda s: s.split(","), default=None,
                        help="comma-separated: postgresql,nats,webhook")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="5,000 blocks, 100 live")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)
    if args.quick:
        args.blocks, args.webhook_blocks, args.live_blocks = 5_000, 500, 100
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {args.out}")
    return 0 if all(r["verified"] for r in result["results"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
