"""The catch-up progress display: shown while far behind the head, silent near it."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest

from blockfeed.cli._progress import chain_head, report_catch_up


class _FakeFeed:
    """Reports a fixed head through status().endpoints, as BlockFeed does."""

    def __init__(self, head: int | None) -> None:
        self.head = head

    def status(self) -> SimpleNamespace:
        return SimpleNamespace(endpoints=[{"head_number": self.head}, {"head_number": None}])


def test_chain_head_is_the_highest_reported() -> None:
    """The head is the best number any endpoint reported; None before any report."""
    assert chain_head(_FakeFeed(7)) == 7
    assert chain_head(_FakeFeed(None)) is None


async def test_far_behind_logs_progress_with_rate(caplog: pytest.LogCaptureFixture) -> None:
    """10,000 blocks behind: a 'catching up' line names the position, the head and the rate."""
    position = [0]
    seen = asyncio.Event()

    class _Watcher(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "catching up" in record.getMessage():
                seen.set()

    def advance() -> int:
        position[0] += 500
        return position[0]

    handler = _Watcher()
    logging.getLogger("blockfeed").addHandler(handler)
    caplog.set_level(logging.INFO, logger="blockfeed")
    task = asyncio.create_task(report_catch_up(_FakeFeed(10_000), advance, fancy=False))
    try:
        await asyncio.wait_for(seen.wait(), timeout=10)
    finally:
        task.cancel()
        logging.getLogger("blockfeed").removeHandler(handler)
    line = next(r.getMessage() for r in caplog.records if "catching up" in r.getMessage())
    assert "of #10000" in line and "blocks/s" in line


async def test_near_the_head_stays_silent(caplog: pytest.LogCaptureFixture) -> None:
    """Within the threshold nothing is logged, however long it runs (checked over 8 ticks)."""
    ticks = [0]
    done = asyncio.Event()

    def position() -> int:
        ticks[0] += 1
        if ticks[0] >= 8:
            done.set()
        return 9_950

    caplog.set_level(logging.INFO, logger="blockfeed")
    task = asyncio.create_task(report_catch_up(_FakeFeed(10_000), position, fancy=False))
    try:
        await asyncio.wait_for(done.wait(), timeout=10)
    finally:
        task.cancel()
    assert not [r for r in caplog.records if "catching up" in r.getMessage()]
