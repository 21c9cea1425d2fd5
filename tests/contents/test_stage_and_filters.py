"""ContentsStage (the feed's seam): order, batching, failover, retries; and event filters."""

from __future__ import annotations

import asyncio

import pytest
from contents_kit import FixtureNode, fixture_blocks, raw_blocks, transport_error

from blockfeed.contents import ContentsFetcher, ContentsLevel, ContentsStage, EventFilter
from blockfeed.errors import ConfigError
from blockfeed.types import Block

WAIT_S = 10.0


class Sink:
    """Collects delivered batches; lets a test wait for a count of blocks."""

    def __init__(self) -> None:
        self.batches: list[list[Block]] = []
        self.changed = asyncio.Event()

    def __call__(self, blocks: list[Block]) -> None:
        self.batches.append(blocks)
        self.changed.set()

    @property
    def blocks(self) -> list[Block]:
        return [b for batch in self.batches for b in batch]

    async def wait_for(self, count: int) -> None:
        async def _wait() -> None:
            while len(self.blocks) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(_wait(), WAIT_S)


async def _run_stage(stage: ContentsStage, sink: Sink, count: int) -> None:
    task = asyncio.create_task(stage.run())
    try:
        await sink.wait_for(count)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_stage_delivers_in_order_in_batches() -> None:
    """40 blocks pushed in three runs come out once each, in order, 16 per batch at most."""
    node, sink = FixtureNode(), Sink()
    stage = ContentsStage(ContentsFetcher(ContentsLevel.FULL), lambda: [("a", node)], sink,
                          batch_blocks=16)
    blocks = fixture_blocks()
    stage.push(blocks[:5])
    stage.push(blocks[5:30])
    stage.push(blocks[30:])
    await _run_stage(stage, sink, 40)
    assert [b.number for b in sink.blocks] == [b.number for b in blocks]
    assert all(len(batch) <= 16 for batch in sink.batches)
    assert all(b.extrinsics is not None for b in sink.blocks)
    assert stage.pending == 0


async def test_a_lying_endpoint_is_skipped_for_an_honest_one() -> None:
    """A node altering a body is never delivered from; the next endpoint's answer is."""
    liar, honest, sink = FixtureNode(), FixtureNode(), Sink()
    target = raw_blocks()["blocks"][3]
    liar.body_override[target["hash"]] = target["extrinsics"][:1] + target["extrinsics"][:1]
    stage = ContentsStage(ContentsFetcher(ContentsLevel.FULL),
                          lambda: [("liar", liar), ("honest", honest)], sink)
    stage.push(fixture_blocks()[:10])
    await _run_stage(stage, sink, 10)
    assert [b.number for b in sink.blocks] == list(range(25, 35))
    assert stage.failures == 1 and honest.calls["batch"] == 1


async def test_stage_waits_and_retries_until_an_endpoint_answers() -> None:
    """While every endpoint fails nothing is delivered (no skipping); with backoff sleeps
    (a fake sleep, so no time passes) it tries again and delivers once one answers."""
    node, sink = FixtureNode(), Sink()
    node.fail_with = transport_error()
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            node.fail_with = None
        await asyncio.sleep(0)

    stage = ContentsStage(ContentsFetcher(ContentsLevel.TIMESTAMP), lambda: [("a", node)],
                          sink, sleep=fake_sleep, retry_cap_s=5.0)
    stage.push(fixture_blocks()[:2])
    await _run_stage(stage, sink, 2)
    assert len(sleeps) == 3 and all(0 <= s <= 5.0 for s in sleeps)
    assert stage.failures == 3 and stage.last_error is None
    assert [b.timestamp is not None for b in sink.blocks] == [True, True]


def test_event_filter_parses_and_matches() -> None:
    """Pallet.Name and whole pallets match; other events are dropped from the block."""
    f = EventFilter.parse("SubtensorModule.WeightsSet, Balances")
    assert f.matches({"pallet": "SubtensorModule", "name": "WeightsSet"})
    assert f.matches({"pallet": "Balances", "name": "Transfer"})
    assert not f.matches({"pallet": "System", "name": "ExtrinsicSuccess"})
    block = fixture_blocks()[0]
    events = [{"pallet": "System", "name": "ExtrinsicSuccess"},
              {"pallet": "Balances", "name": "Deposit"}]
    import dataclasses

    filtered = f.apply(dataclasses.replace(block, events=events))
    assert filtered.events == [events[1]] and filtered.number == block.number
    assert f.apply(block) is block


@pytest.mark.parametrize("spec", ["", "Bad-Pallet.X", "A.B.C", " , "])
def test_bad_event_filters_are_config_errors(spec: str) -> None:
    """Empty or malformed filters say how to write one."""
    with pytest.raises(ConfigError):
        EventFilter.parse(spec)
