"""A small program built on the library, made to be SIGKILLed: the subject of test_crash.py.

It follows a node with ``BlockFeed`` + ``open_store(--state)`` + an ``EpochMonitor`` (a short
``EpochSchedule``, a ``consensus`` trigger at one position and an epoch-start trigger), wired
exactly as the docs show (``store=`` to the feed, ``monitor.attach(feed)``), and reports on
stdout, one flushed JSON line each::

    {"t": "start", "pid": 123, "checkpoint": 6940012 | null}   # what the store said at start
    {"t": "block", "n": 6940013, "hash": "0x..", "parent": "0x..", "source": "ws", "late": false,
     "fell_behind": 0}                   # times the printing subscription's queue overflowed
    {"t": "trigger", "name": "consensus", "epoch": 347000, "block": 6940015, "late": true}

Nothing here works around anything: a block the feed hands over is printed in the subscriber
callback, and the store is the feed's own checkpoint. SIGTERM stops cleanly. ``--io-delay-s``
makes the callback async and slow (as if it wrote each block to a database first) and
``--queue`` sets its subscription's ``maxsize``, to model a consumer slower than the chain.

Usage: ``python crash_worker.py ENDPOINT --state PATH [--epoch-length 20 --consensus-at 15
--block-time 0.05 --io-delay-s 0 --queue 100000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from typing import Any

from blockfeed import Block, BlockFeed, FeedConfig
from blockfeed.epochs import EpochMonitor, EpochSchedule, TriggerContext
from blockfeed.feed import FeedSubscription
from blockfeed.store import open_store

DEFAULT_EPOCH_LENGTH = 20
DEFAULT_CONSENSUS_AT = 15
DEFAULT_BLOCK_TIME_S = 0.05
DEFAULT_QUEUE = 100_000
CONSENSUS = "consensus"
EPOCH_START = "epoch-start"


def emit(record: dict[str, Any]) -> None:
    """One JSON line on stdout, flushed at once (a SIGKILL right after must not lose it)."""
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class Printer:
    """The subscriber: one line per block (after a simulated I/O wait when ``io_delay_s``)."""

    def __init__(self, io_delay_s: float) -> None:
        self.io_delay_s = io_delay_s
        self.subscription: FeedSubscription | None = None

    def print_block(self, block: Block) -> None:
        fell_behind = 0 if self.subscription is None else self.subscription.fell_behind
        emit({"t": "block", "n": block.number, "hash": block.hash, "parent": block.parent_hash,
              "source": str(block.source), "late": block.late, "fell_behind": fell_behind})

    async def print_slowly(self, block: Block) -> None:
        await asyncio.sleep(self.io_delay_s)
        self.print_block(block)

    def attach(self, feed: BlockFeed, *, maxsize: int) -> None:
        callback = self.print_slowly if self.io_delay_s > 0 else self.print_block
        self.subscription = feed.subscribe(callback, name="printer", maxsize=maxsize)


def on_trigger(context: TriggerContext) -> None:
    emit({"t": "trigger", "name": context.name, "epoch": context.epoch,
          "block": context.block_number, "late": context.late})


async def run(args: argparse.Namespace) -> None:
    store = open_store(args.state)
    checkpoint = store.checkpoint()
    emit({"t": "start", "pid": os.getpid(), "checkpoint": None if checkpoint is None
          else checkpoint[0]})
    schedule = EpochSchedule(args.epoch_length)
    monitor = EpochMonitor(schedule, store, block_time_s=args.block_time)
    monitor.at_block(CONSENSUS, args.consensus_at, on_trigger)
    monitor.on_epoch_start(EPOCH_START, on_trigger)
    # The shared fast profile, with the roomier timeouts this test always had (a killed and
    # restarted worker competes with its own replacement for the cores).
    config = FeedConfig.for_block_time(args.block_time, epoch_length=args.epoch_length,
                                       http_timeout_s=1.0, open_timeout_s=1.0, log_blocks=False)
    feed = BlockFeed([args.endpoint], config, store=store)
    Printer(args.io_delay_s).attach(feed, maxsize=args.queue)
    monitor.attach(feed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        async with monitor, feed:
            await stop.wait()
    finally:
        store.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("endpoint", help="ws://host:port of the node")
    parser.add_argument("--state", required=True, help="SQLite state file")
    parser.add_argument("--epoch-length", type=int, default=DEFAULT_EPOCH_LENGTH)
    parser.add_argument("--consensus-at", type=int, default=DEFAULT_CONSENSUS_AT)
    parser.add_argument("--block-time", type=float, default=DEFAULT_BLOCK_TIME_S)
    parser.add_argument("--io-delay-s", type=float, default=0.0,
                        help="await this long in the callback before printing a block")
    parser.add_argument("--queue", type=int, default=DEFAULT_QUEUE,
                        help="maxsize of the printing subscription")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
