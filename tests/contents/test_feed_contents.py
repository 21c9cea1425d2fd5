"""BlockFeed(contents=...) and ``blockfeed watch --contents`` against devnode serving the
recorded subtensor blocks (127.0.0.1 only; every wait bounded)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from contents_kit import FIXTURE, expected

from blockfeed import BlockFeed
from blockfeed.devnode import DevNode, DevNodeConfig
from blockfeed.epochs import EpochMonitor, EpochSchedule, TriggerContext
from blockfeed.store import open_store
from blockfeed.types import Block, FeedEvent, RuntimeUpgraded, VerificationFailed

START = 5_000
FIRST = START + 1
WAIT_S = 60.0
"""Generous bound on every wait (a loaded 2-core machine)."""


@pytest.fixture
async def node() -> AsyncIterator[DevNode]:
    cfg = DevNodeConfig(host="127.0.0.1", port=0, auto_produce=False, start_block=START,
                        finality_lag=0, finality_jumps=0.0, block_time_s=0.1,
                        contents_fixture=str(FIXTURE / "blocks.json"))
    async with DevNode(cfg) as dev:
        dev.advance(blocks=60)
        yield dev


def _feed(node: DevNode, contents: str, **kwargs: Any) -> BlockFeed:
    return BlockFeed([node.ws_url], start_at=FIRST, block_time_s=0.1, contents=contents,
                     log_blocks=False, **kwargs)


async def _take(feed: BlockFeed, count: int) -> list[Block]:
    out: list[Block] = []

    async def collect() -> None:
        async for block in feed:
            out.append(block)
            if len(out) == count:
                return

    await asyncio.wait_for(collect(), WAIT_S)
    return out


class Collector:
    """A callback subscriber that can be awaited until it holds ``count`` items."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = asyncio.Event()

    def __call__(self, item: Any) -> None:
        self.items.append(item)
        self._changed.set()

    async def wait_for(self, condition: Callable[[list[Any]], bool], what: str) -> None:
        async def wait() -> None:
            while not condition(self.items):
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(wait(), WAIT_S)
        except TimeoutError:
            pytest.fail(f"timed out waiting for {what}")


def _want(number: int) -> dict[str, Any]:
    return expected()["blocks"][number % 40]


def _check_against_expected(number: int, events: list[dict[str, Any]],
                            extrinsics: list[dict[str, Any]]) -> None:
    want = _want(number)
    assert [(e["pallet"], e["name"]) for e in events] == [
        (e["pallet"], e["event"]) for e in want["events"]]
    assert [(x["pallet"], x["call"], x["signed"], x.get("signer")) for x in extrinsics] == [
        (x["pallet"], x["call"], x["signed"], x.get("signer")) for x in want["extrinsics"]]


async def test_feed_delivers_45_blocks_with_verified_decoded_contents(node: DevNode) -> None:
    """contents="full": every block once, in order, with timestamp, spec_version, events and
    extrinsics matching expected.json (devnode block n carries recorded block n mod 40)."""
    async with _feed(node, "full") as feed:
        blocks = await _take(feed, 45)
    assert [b.number for b in blocks] == list(range(FIRST, FIRST + 45))
    assert all(b.parent_hash == a.hash for a, b in itertools.pairwise(blocks))
    for block in blocks:
        assert block.spec_version == 218 and block.timestamp == _want(block.number)["timestamp_ms"]
        assert block.events is not None and block.extrinsics is not None
        _check_against_expected(block.number, block.events, block.extrinsics)


async def test_runtime_upgrade_is_a_feed_event_and_both_sides_decode(node: DevNode) -> None:
    """An upgrade in #FIRST+9: #FIRST+10 is the first block of 219, one runtime_upgraded event
    reaches the hooks and status, events decode on both sides."""
    assert node.contents is not None
    node.contents.upgrade_at(FIRST + 9)
    events: list[FeedEvent] = []
    async with _feed(node, "events") as feed:
        feed.add_event_hook(events.append)
        blocks = await _take(feed, 20)
        recent = [e.kind for e in feed.status().recent_events]
    assert [b.spec_version for b in blocks] == [218] * 10 + [219] * 10
    upgrades = [e for e in events if isinstance(e, RuntimeUpgraded)]
    assert [e.number for e in upgrades] == [FIRST + 10]
    assert "runtime_upgraded" in recent
    assert all(b.events for b in blocks)


async def test_an_altered_body_is_never_delivered(node: DevNode) -> None:
    """While the node alters bodies nothing is delivered (the stage keeps failing and
    retrying); once it stops, the same blocks arrive, verified, none skipped."""
    node.faults.inject("lie", seconds=WAIT_S, mode="body")
    got, alerts = Collector(), Collector()
    async with _feed(node, "full") as feed:
        feed.add_event_hook(lambda e: alerts(e) if isinstance(e, VerificationFailed) else None)
        sub = feed.subscribe(got, name="probe")
        await alerts.wait_for(lambda items: len(items) >= 2, "two rejections of the body")
        assert got.items == []
        assert all(e.contents and e.first is not None and e.endpoint for e in alerts.items)
        node.faults.clear()
        await got.wait_for(lambda items: len(items) >= 5, "blocks after the lie stopped")
        sub.cancel()
    blocks: list[Block] = got.items
    assert [b.number for b in blocks[:5]] == list(range(FIRST, FIRST + 5))
    assert all(b.extrinsics is not None for b in blocks)


async def test_store_window_keeps_what_was_delivered(node: DevNode, tmp_path: Path) -> None:
    """Blocks saved by a feed with contents read back from its state file (what /blocks/{n},
    catch-up and replays use) with the delivered timestamp, spec version, events, extrinsics."""
    with open_store(tmp_path / "state.sqlite") as store:
        async with _feed(node, "full", store=store) as feed:
            blocks = await _take(feed, 12)
            await asyncio.wait_for(feed.save_checkpoint(), WAIT_S)
        for block in blocks:
            stored = store.get_block(block.number)
            assert stored is not None and stored.hash == block.hash
            assert (stored.timestamp, stored.spec_version, stored.events, stored.extrinsics) == (
                block.timestamp, block.spec_version, block.events, block.extrinsics)
            assert stored.events and stored.extrinsics


async def test_epoch_triggers_see_the_block_with_its_contents(node: DevNode) -> None:
    """A trigger's context carries the delivered block, with the events and extrinsics that
    expected.json lists for it (10-block epochs, trigger at position 3)."""
    contexts = Collector()
    async with _feed(node, "full") as feed:
        async with EpochMonitor(EpochSchedule(10)) as monitor:
            monitor.at_block("weights", 3, contexts)
            monitor.attach(feed)
            await contexts.wait_for(lambda items: len(items) >= 3, "three trigger calls")
    calls: list[TriggerContext] = contexts.items
    numbers = [c.block_number for c in calls]
    assert len(numbers) >= 3 and all(n % 10 == 3 for n in numbers)
    assert numbers == sorted(set(numbers))  # each epoch once, in order
    for context in calls:
        block = context.block
        assert block is not None and block.number == context.block_number
        assert block.events is not None and block.extrinsics is not None
        _check_against_expected(block.number, block.events, block.extrinsics)


async def test_subscriber_event_filter_and_skip_empty(node: DevNode) -> None:
    """subscribe(events=[...], skip_empty=True) gets only blocks with a match, only matching
    events; an unfiltered subscriber still gets every block."""
    filtered: list[Block] = []
    everything = Collector()
    async with _feed(node, "events") as feed:
        feed.subscribe(filtered.append, events=["SubtensorModule.WeightsSet", "Balances.Transfer"],
                       skip_empty=True)
        feed.subscribe(everything)
        await everything.wait_for(lambda items: len(items) >= 40, "40 blocks")
    assert all(b.events and all(e["name"] in ("WeightsSet", "Transfer") for e in b.events)
               for b in filtered)
    want_slots = {i for i, b in enumerate(expected()["blocks"])
                  if any(e["event"] in ("WeightsSet", "Transfer") for e in b["events"])}
    assert len(want_slots) == 4  # recorded #32, #38, #39, #42
    assert {b.number % 40 for b in filtered if b.number < FIRST + 40} == want_slots


async def _watch(*args: str) -> tuple[int, str, str]:
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("BLOCKFEED_CONFIG", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "blockfeed", "watch", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    try:
        out, err = await asyncio.wait_for(process.communicate(), WAIT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_watch_contents_full_json_matches_expected_for_all_40(node: DevNode) -> None:
    """`watch --contents full --json --count 40`: per line timestamp, spec_version, events and
    extrinsics whose pallet, name/call, signed flag and signer match expected.json."""
    code, out, err = await _watch(node.ws_url, "--contents", "full", "--json", "--count", "40",
                                  "--from", str(FIRST), "--block-time", "0.1")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [line["number"] for line in lines] == list(range(FIRST, FIRST + 40))
    assert {line["number"] % 40 for line in lines} == set(range(40))
    for line in lines:
        assert line["spec_version"] == 218
        assert line["timestamp"] == _want(line["number"])["timestamp_ms"]
        _check_against_expected(line["number"], line["events"], line["extrinsics"])


async def test_watch_events_filter_and_bad_flags(node: DevNode) -> None:
    """--events keeps only matching events (text lines under each block); a filter with a
    level without events, or a bad level, is bad input (exit 2) with a clear message."""
    code, out, err = await _watch(node.ws_url, "--events", "SubtensorModule.WeightsSet",
                                  "--count", "40", "--from", str(FIRST), "--block-time", "0.1")
    assert code == 0, err
    event_lines = [line for line in out.splitlines() if line.startswith("    ")]
    assert event_lines and all("SubtensorModule.WeightsSet" in line for line in event_lines)
    code, _, err = await _watch(node.ws_url, "--contents", "timestamp", "--events", "A.B")
    assert code == 2 and "--events needs" in err
    code, _, err = await _watch(node.ws_url, "--contents", "everything")
    assert code == 2 and "unknown contents level" in err

