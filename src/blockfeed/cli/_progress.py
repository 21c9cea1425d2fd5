"""Progress for long catch-ups (a resume after downtime, ``--from`` far below the head).

A backfill of thousands of blocks runs at several thousand blocks per second, but a resume after
a day offline is still tens of thousands of blocks: people want to see how far along it is.
When stderr is a terminal and stdout is not (``--json | jq``, a file), a transient rich bar is
drawn; otherwise one log line every few seconds says how far it got, at what rate, and the ETA.
Nothing is shown when the feed is within ``threshold_blocks`` of the head.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

DEFAULT_THRESHOLD_BLOCKS = 100
"""Catch-ups shorter than this are not worth a progress display."""
DEFAULT_LOG_EVERY_S = 5.0
_TICK_S = 0.25

log = logging.getLogger("blockfeed")


def chain_head(feed: Any) -> int | None:
    """The highest finalized number any endpoint reported (from ``feed.status()``)."""
    heads = [e.get("head_number") for e in feed.status().endpoints]
    numbers = [h for h in heads if isinstance(h, int)]
    return max(numbers) if numbers else None


async def report_catch_up(
    feed: Any,
    position: Callable[[], int | None],
    *,
    threshold_blocks: int = DEFAULT_THRESHOLD_BLOCKS,
    log_every_s: float = DEFAULT_LOG_EVERY_S,
    fancy: bool | None = None,
) -> None:
    """Run until cancelled: show progress while ``position()`` is far below the chain head."""
    if fancy is None:
        fancy = sys.stderr.isatty() and not sys.stdout.isatty()
    bar: Any = None
    task_id: Any = None
    started: tuple[float, int] | None = None
    last_log = 0.0
    try:
        while True:
            await asyncio.sleep(_TICK_S)
            at, head = position(), chain_head(feed)
            if at is None or head is None or head - at <= threshold_blocks:
                if bar is not None:
                    bar.stop()
                    bar = None
                started = None
                continue
            now = time.monotonic()
            if started is None:
                started = (now, at)
            done = at - started[1]
            total = head - started[1]
            rate = done / (now - started[0]) if now > started[0] else 0.0
            if fancy:
                if bar is None:
                    bar = _new_bar()
                    task_id = bar.add_task("catching up", total=total)
                bar.update(task_id, completed=done, total=total)
            elif now - last_log >= log_every_s:
                last_log = now
                eta = f", about {(head - at) / rate:.0f} s left" if rate > 0 else ""
                log.info(
                    "catching up: block #%d of #%d (%d behind, %.0f blocks/s%s)",
                    at, head, head - at, rate, eta,
                )
    finally:
        if bar is not None:
            bar.stop()


def _new_bar() -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    bar.start()
    return bar
