"""F12: the process is SIGKILLed at random moments and restarted on the same state file.

A devnode (T = 0.05 s, GRANDPA-like finality jumps) keeps producing blocks in this process while
a child built on the library (``crash_worker.py``: BlockFeed + store + EpochMonitor) or the real
``blockfeed watch --state`` CLI is killed over and over. From everything the children printed:

* the union of delivered numbers is ONE consecutive range, parent-linked and canonical;
* a number is delivered again only by the run after a kill, and only above the checkpoint that
  run resumed from: exactly the blocks the killed run printed after its last checkpoint save
  (the store's docstring: "at most the blocks in flight since the last save_blocks");
* every epoch trigger fired at least once for every epoch whose trigger block is in the range.

The kill moments come from a seeded RNG; the seed is printed (``BLOCKFEED_CRASH_SEED`` replays
the same choices; the timing is real).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from durability_kit import WAIT_S, LineProcess, python_argv

from blockfeed import FeedConfig
from blockfeed.cli.watch import SAVE_BATCH_BLOCKS
from blockfeed.devnode import DevNode, DevNodeConfig
from blockfeed.store import open_store

SEED = int(os.environ.get("BLOCKFEED_CRASH_SEED", "20240612"))
BLOCK_TIME_S = 0.05
EPOCH_LENGTH = 20
CONSENSUS_AT = 15
TRIGGERS = {"epoch-start": 0, "consensus": CONSENSUS_AT}
WORKER_KILLS = 20
WATCH_KILLS = 4
WATCH_EARLY_KILL = 2
"""Which watch run is killed during start-up (the others after their first block)."""
EARLY_KILL_SHARE = 0.2
"""Share of kills aimed at start-up (imports, store, genesis, first backfill) rather than at a
run that is already delivering."""
MAX_STARTUP_KILL_S = 1.0
MAX_RUNNING_KILL_S = 1.0
FEED_RANGE_CHUNK: int = FeedConfig().range_chunk
"""The most blocks the feed hands out in one step (one backfill answer): a save in flight can
miss at most the blocks delivered while it runs, which is one such step at the very worst."""
WORKER = Path(__file__).resolve().parent / "crash_worker.py"
HALT_S = 120.0
LONG_TEST_TIMEOUT_S = 300
"""Safety net only: the 20-kill test takes ~25 s, but 21 Python start-ups on a loaded 2-core
machine can take several times longer."""
SLOW_QUEUE = 5
"""Queue of the slow subscriber in the fell-behind case."""


def node_config(seed: int) -> DevNodeConfig:
    return DevNodeConfig(block_time_s=BLOCK_TIME_S, finality_jumps=0.3, seed=seed,
                         start_block=6_940_000)


@dataclass
class Delivery:
    number: int
    hash: str
    parent: str


@dataclass
class RunView:
    """What one run printed, in the shape the checks need."""

    index: int
    killed: bool
    resumed_after: int | None
    """The checkpoint it started from (None: no checkpoint, or it died before reading it)."""
    started: bool
    blocks: list[Delivery] = field(default_factory=list)
    triggers: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Verdict:
    first: int
    last: int
    runs_before_first_checkpoint: int
    redelivered_per_restart: list[int]
    triggers_expected: int
    trigger_lines: int
    late_triggers: int


def check_runs(runs: list[RunView], canonical_hash: Callable[[int], str], *,
               max_redelivered: int, triggers: bool = True) -> Verdict:
    """Assert the durability properties over all runs (see the module docstring); ``triggers``
    False skips the epoch-trigger check (for a program that runs none).

    Runs that never printed their start line (killed during imports) carry no information and
    are left out. Runs before the last one that started *without* a checkpoint are left out
    too: with no checkpoint a feed starts at the current head (the documented start point), so
    what they printed is not part of the resumable history.
    """
    known_runs = [run for run in runs if run.started]
    runs = resumable(runs)
    assert any(run.blocks for run in runs), "no run delivered anything"
    known: dict[int, Delivery] = {}
    redelivered: list[int] = []
    last_checkpoint = -1
    for run in runs:
        numbers = [b.number for b in run.blocks]
        if numbers:
            assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), (
                f"run {run.index} did not deliver a consecutive increasing sequence: "
                f"{_first_break(numbers)}")
        again = [n for n in numbers if n in known]
        if run.resumed_after is not None:
            checkpoint = run.resumed_after
            assert checkpoint >= last_checkpoint, (
                f"run {run.index}: the checkpoint went back from {last_checkpoint} to {checkpoint}")
            last_checkpoint = checkpoint
            printed_before = max(known) if known else None
            assert printed_before is not None and checkpoint <= printed_before, (
                f"run {run.index}: the store's checkpoint #{checkpoint} is past the last block "
                f"any earlier run printed (#{printed_before}): blocks were checkpointed but "
                f"never handed to the subscriber, so they are lost")
            if numbers:
                assert numbers[0] == checkpoint + 1, (
                    f"run {run.index} resumed at #{numbers[0]}, not at checkpoint + 1 = "
                    f"#{checkpoint + 1}")
            assert all(n > checkpoint for n in again), "a checkpointed block was delivered again"
            assert len(again) <= max_redelivered, (
                f"run {run.index} repeated {len(again)} blocks (#{again[0]}..#{again[-1]}); "
                f"more than the {max_redelivered} that can be in flight at a kill")
            redelivered.append(len(again))
        else:
            assert not again, f"run {run.index} repeated #{again[0]} without a checkpoint"
        for block in run.blocks:
            earlier = known.get(block.number)
            assert earlier is None or earlier.hash == block.hash, (
                f"#{block.number} was delivered with two different hashes")
            known[block.number] = block
    first, last = min(known), max(known)
    missing = [n for n in range(first, last + 1) if n not in known]
    assert not missing, (
        f"{len(missing)} block(s) never delivered by any run, first #{missing[0]} "
        f"(range #{first}..#{last})")
    for number in range(first + 1, last + 1):
        assert known[number].parent == known[number - 1].hash, f"#{number} does not link"
    for number, block in known.items():
        assert block.hash == canonical_hash(number), f"#{number} is not the canonical block"
    expected = expected_triggers(first, last) if triggers else set()
    fired: dict[tuple[str, int], int] = {}
    late = 0
    for run in runs if triggers else []:
        for line in run.triggers:
            assert line["name"] in TRIGGERS, f"unknown trigger {line}"
            due = line["epoch"] * EPOCH_LENGTH + TRIGGERS[line["name"]]
            assert line["block"] == due, f"trigger fired for the wrong block: {line}"
            assert first <= due <= last, f"trigger for a block never delivered: {line}"
            key = (line["name"], line["epoch"])
            fired[key] = fired.get(key, 0) + 1
            late += bool(line["late"])
    never = sorted(expected - set(fired))
    assert not never, f"{len(never)} trigger(s) never fired, e.g. {never[:5]}"
    return Verdict(first, last, len(known_runs) - len(runs), redelivered, len(expected),
                   sum(fired.values()), late)


def resumable(runs: list[RunView]) -> list[RunView]:
    """The runs the durability properties apply to (see :func:`check_runs`)."""
    known_runs = [run for run in runs if run.started]
    fresh = [i for i, run in enumerate(known_runs) if run.resumed_after is None]
    return known_runs[fresh[-1]:] if fresh else known_runs


def expected_triggers(first: int, last: int) -> set[tuple[str, int]]:
    """Every (trigger, epoch) whose trigger block is in ``first..last``."""
    return {
        (name, epoch)
        for epoch in range(first // EPOCH_LENGTH, last // EPOCH_LENGTH + 1)
        for name, offset in TRIGGERS.items()
        if first <= epoch * EPOCH_LENGTH + offset <= last
    }


def _first_break(numbers: list[int]) -> str:
    for a, b in itertools.pairwise(numbers):
        if b != a + 1:
            return f"#{a} then #{b}"
    return "ok"


def worker_view(run: LineProcess) -> RunView:
    starts = run.of("start")
    return RunView(
        index=run.index,
        killed=run.killed,
        resumed_after=starts[0]["checkpoint"] if starts else None,
        started=bool(starts),
        blocks=[Delivery(r["n"], r["hash"], r["parent"]) for r in run.of("block")],
        triggers=run.of("trigger"),
    )


def last_number(run: LineProcess, key: str = "n") -> int:
    numbers = [r[key] for r in run.records if key in r]
    return numbers[-1] if numbers else -1


async def wait_past(run: LineProcess, number: int, key: str) -> None:
    """Wait (bounded) until ``run`` printed a block numbered >= ``number``."""
    await run.wait_until(lambda: last_number(run, key) >= number, f"block #{number}")


async def kill_at_random_moment(run: LineProcess, rng: random.Random, key: str, *,
                                early: bool) -> str:
    """SIGKILL ``run`` at a random moment during start-up (``early``) or after it delivered its
    first block; returns what was chosen."""
    if early:
        delay = rng.uniform(0.0, MAX_STARTUP_KILL_S)
        moment = f"{delay:.2f}s after spawn"
    else:
        await wait_past(run, 0, key)
        delay = rng.uniform(0.0, MAX_RUNNING_KILL_S)
        moment = f"{delay:.2f}s after its first block"
    # The kill moment itself is what is random here; nothing waits for a result by sleeping.
    await asyncio.sleep(delay)
    await run.kill()
    return moment


@pytest.mark.timeout(LONG_TEST_TIMEOUT_S)
async def test_library_worker_survives_repeated_sigkill(tmp_path: Path) -> None:
    """20 SIGKILLs of a library program: no gap, repeats only past the checkpoint, all triggers."""
    rng = random.Random(SEED)
    print(f"crash seed {SEED} (BLOCKFEED_CRASH_SEED replays the kill choices)")
    state = tmp_path / "worker.sqlite"
    stderr = tmp_path / "worker.stderr"
    runs: list[LineProcess] = []
    moments: list[str] = []

    def argv(ws_url: str) -> list[str]:
        return python_argv(str(WORKER), ws_url, "--state", str(state),
                           "--epoch-length", str(EPOCH_LENGTH), "--consensus-at",
                           str(CONSENSUS_AT), "--block-time", str(BLOCK_TIME_S))

    async with DevNode(node_config(seed=11)) as node:
        for index in range(WORKER_KILLS):
            run = await LineProcess.start(index, argv(node.ws_url), stderr)
            runs.append(run)
            early = rng.random() < EARLY_KILL_SHARE
            moments.append(await kill_at_random_moment(run, rng, "n", early=early))
        final = await LineProcess.start(WORKER_KILLS, argv(node.ws_url), stderr)
        runs.append(final)
        await wait_past(final, 0, "n")
        node.faults.inject("finality_halt", seconds=HALT_S)
        head = node.chain.finalized_number

        def caught_up() -> bool:
            views = resumable([worker_view(run) for run in runs])
            first = min(b.number for v in views for b in v.blocks)
            fired = {(t["name"], t["epoch"]) for v in views for t in v.triggers}
            return last_number(final) >= head and expected_triggers(first, head) <= fired

        await final.wait_until(caught_up, f"the final run to reach #{head} and fire its triggers")
        await final.terminate()
        node.faults.clear()

    sigkilled = [run for run in runs if run.killed]
    assert len(sigkilled) >= WORKER_KILLS
    assert all(run.returncode == -9 for run in sigkilled), [r.returncode for r in sigkilled]
    assert final.returncode == 0, f"a SIGTERM stop is clean: {final.stderr_tail()}"
    for run in runs:  # a kill can cut the line being written, nothing else is torn
        assert len(run.bad_lines) <= (1 if run.killed else 0), run.bad_lines[:3]
    views = [worker_view(run) for run in runs]
    verdict = check_runs(views, node.chain.hash_of, max_redelivered=FEED_RANGE_CHUNK)
    assert verdict.last == head
    assert verdict.late_triggers >= 1, "no trigger was ever fired late (catch-up never ran)"
    print(f"worker: {len(sigkilled)} SIGKILLs ({sum(v.started for v in views)} runs got going, "
          f"{verdict.runs_before_first_checkpoint} before the first checkpoint), "
          f"blocks #{verdict.first}..#{verdict.last} ({verdict.last - verdict.first + 1}), "
          f"re-delivered per restart {verdict.redelivered_per_restart} "
          f"(max {max(verdict.redelivered_per_restart, default=0)}), triggers expected "
          f"{verdict.triggers_expected}, lines {verdict.trigger_lines}, late "
          f"{verdict.late_triggers}; kill moments {moments}")


def read_checkpoint(state: Path) -> int | None:
    """The checkpoint in a state file no process holds (a SIGKILL released its lock)."""
    if not state.exists():
        return None
    with open_store(str(state)) as store:
        checkpoint = store.checkpoint()
    return None if checkpoint is None else checkpoint[0]


def watch_view(run: LineProcess, resumed_after: int | None) -> RunView:
    blocks = [Delivery(r["number"], r["hash"], r["parent_hash"])
              for r in run.records if "number" in r]
    return RunView(run.index, run.killed, resumed_after, True, blocks, [])


async def test_watch_cli_survives_repeated_sigkill(tmp_path: Path) -> None:
    """`blockfeed watch --state` SIGKILLed 4 times: no gap, repeats at most one save batch."""
    rng = random.Random(SEED + 1)
    state = tmp_path / "watch.sqlite"
    stderr = tmp_path / "watch.stderr"
    views: list[RunView] = []
    runs: list[LineProcess] = []
    moments: list[str] = []

    def argv(ws_url: str) -> list[str]:
        return python_argv("-m", "blockfeed", "watch", ws_url, "--state", str(state), "--json",
                           "--block-time", str(BLOCK_TIME_S), "--epoch-length",
                           str(EPOCH_LENGTH), "--startup-timeout", str(WAIT_S), "--quiet")

    async with DevNode(node_config(seed=12)) as node:
        for index in range(WATCH_KILLS + 1):
            resumed_after = read_checkpoint(state)
            run = await LineProcess.start(index, argv(node.ws_url), stderr)
            runs.append(run)
            if index < WATCH_KILLS:
                early = index == WATCH_EARLY_KILL
                moments.append(await kill_at_random_moment(run, rng, "number", early=early))
            else:
                await wait_past(run, 0, "number")
                node.faults.inject("finality_halt", seconds=HALT_S)
                head = node.chain.finalized_number
                await wait_past(run, head, "number")
                await run.terminate()
                node.faults.clear()
            views.append(watch_view(run, resumed_after))

    assert sum(run.killed for run in runs) == WATCH_KILLS
    assert runs[-1].returncode == 0, runs[-1].stderr_tail()
    verdict = check_runs(views, node.chain.hash_of, max_redelivered=SAVE_BATCH_BLOCKS,
                         triggers=False)
    assert verdict.last == head
    print(f"watch: {WATCH_KILLS} SIGKILLs ({verdict.runs_before_first_checkpoint} runs before "
          f"the first checkpoint), blocks #{verdict.first}..#{verdict.last}, re-delivered per "
          f"restart {verdict.redelivered_per_restart}; printed per run "
          f"{[len(v.blocks) for v in views]}, resumed after {[v.resumed_after for v in views]}; "
          f"kill moments {moments}")


async def test_slow_subscriber_that_fell_behind_loses_nothing_across_sigkill(
    tmp_path: Path,
) -> None:
    """A slow callback killed while its overflowed queue catches up still loses no block."""
    state = tmp_path / "slow.sqlite"
    stderr = tmp_path / "slow.stderr"

    def argv(ws_url: str, *extra: str) -> list[str]:
        return python_argv(str(WORKER), ws_url, "--state", str(state), "--block-time",
                           str(BLOCK_TIME_S), *extra)

    def overflowed(run: LineProcess) -> Callable[[], bool]:
        return lambda: any(line["fell_behind"] for line in run.of("block"))

    async with DevNode(node_config(seed=13)) as node:
        slow = await LineProcess.start(0, argv(node.ws_url, "--io-delay-s",
                                               str(4 * BLOCK_TIME_S), "--queue",
                                               str(SLOW_QUEUE)), stderr)
        await wait_past(slow, 0, "n")
        # Four blocks arrive per block processed: the queue overflows after ~SLOW_QUEUE blocks.
        await node.wait_for_finalized(last_number(slow) + 4 * SLOW_QUEUE, timeout_s=WAIT_S)
        await slow.wait_until(overflowed(slow), "the slow subscriber's queue to overflow")
        head_at_kill = node.chain.finalized_number
        await slow.kill()
        fast = await LineProcess.start(1, argv(node.ws_url), stderr)
        await wait_past(fast, 0, "n")
        await fast.kill()
    check_runs([worker_view(slow), worker_view(fast)], node.chain.hash_of,
                max_redelivered=FEED_RANGE_CHUNK, triggers=False)
    print(f"slow subscriber: killed {head_at_kill - last_number(slow)} blocks behind the head, "
          f"printed up to #{last_number(slow)}; the restart began at #{fast.of('block')[0]['n']}")


# -- the checker itself: it must be able to fail -----------------------------------------------


def _chain(first: int, last: int) -> dict[int, Delivery]:
    blocks: dict[int, Delivery] = {}
    for number in range(first, last + 1):
        parent = blocks[number - 1].hash if number - 1 in blocks else "0xparent"
        blocks[number] = Delivery(number, f"0x{number:064x}", parent)
    return blocks


def _run(index: int, chain: dict[int, Delivery], numbers: range,
         resumed_after: int | None) -> RunView:
    return RunView(index, True, resumed_after, True, [chain[n] for n in numbers], [])


def _canonical(number: int) -> str:
    return f"0x{number:064x}"


def test_checker_accepts_repeats_above_the_checkpoint() -> None:
    """Repeating exactly the blocks printed after the checkpoint passes and is counted."""
    chain = _chain(100, 130)
    runs = [_run(0, chain, range(100, 116), None), _run(1, chain, range(113, 131), 112)]
    verdict = check_runs(runs, _canonical, max_redelivered=10, triggers=False)
    assert (verdict.first, verdict.last, verdict.redelivered_per_restart) == (100, 130, [3])


def test_checker_rejects_a_checkpoint_past_what_was_printed() -> None:
    """A checkpoint beyond the last printed block (blocks lost at a kill) fails the check."""
    chain = _chain(100, 130)
    runs = [_run(0, chain, range(100, 116), None), _run(1, chain, range(118, 131), 117)]
    with pytest.raises(AssertionError, match="checkpointed but never handed"):
        check_runs(runs, _canonical, max_redelivered=10, triggers=False)


def test_checker_rejects_repeats_at_or_below_the_checkpoint_and_too_many_repeats() -> None:
    """Re-delivering a checkpointed block, or more than the in-flight bound, fails."""
    chain = _chain(100, 130)
    below = [_run(0, chain, range(100, 116), None), _run(1, chain, range(110, 131), 112)]
    with pytest.raises(AssertionError, match="resumed at #110"):
        check_runs(below, _canonical, max_redelivered=10, triggers=False)
    many = [_run(0, chain, range(100, 126), None), _run(1, chain, range(106, 131), 105)]
    with pytest.raises(AssertionError, match="more than the 10"):
        check_runs(many, _canonical, max_redelivered=10, triggers=False)


def test_checker_rejects_missing_triggers() -> None:
    """An epoch whose trigger block was delivered but whose trigger never fired fails."""
    chain = _chain(100, 130)
    run = _run(0, chain, range(100, 131), None)
    run.triggers = [{"name": "epoch-start", "epoch": 6, "block": 120, "late": False}]
    with pytest.raises(AssertionError, match=r"never fired.*consensus"):
        check_runs([run], _canonical, max_redelivered=10)
