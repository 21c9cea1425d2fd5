"""Real `blockfeed serve` processes: two on one PostgreSQL / NATS sink with one SIGKILLed and
restarted leave every block once, consecutive, parent-linked and equal to the chain; a webhook
receiver sees each block once, in order, signed, across its own outage and a SIGKILLed serve."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import nats as nats_py
import pytest

from blockfeed.devnode import DevNode, DevNodeConfig
from blockfeed.sinks.nats import NatsConsumer
from blockfeed.sinks.redis_consumer import FROM_FIRST

pytestmark = pytest.mark.sinks

WAIT_S = 60.0
BLOCK_TIME_S = 0.05


async def start_serve(node_url: str, sink: str, state: Path, log: Path) -> Any:
    env = {**os.environ, "BLOCKFEED_BLOCK_TIME_S": str(BLOCK_TIME_S), "NO_COLOR": "1"}
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "blockfeed", "serve", node_url, "--port", "0",
            "--state", str(state), "--network", "local", "--sink", sink,
            stdout=out, stderr=out, env=env,
        )  # fmt: skip


async def wait_ready(log: Path) -> None:
    """Wait (bounded) until the process writing ``log`` says it serves (signals installed)."""

    async def loop() -> None:
        while "(dashboard)" not in log.read_text(errors="replace"):  # noqa: ASYNC110, ASYNC240
            await asyncio.sleep(0.05)

    await asyncio.wait_for(loop(), WAIT_S)


async def pg_rows(url: str) -> list[tuple[int, str, str]]:
    conn = await asyncpg.connect(url)
    try:
        if not await conn.fetchval("SELECT to_regclass('blockfeed.blocks') IS NOT NULL"):
            return []
        rows = await conn.fetch(
            "SELECT number, hash, parent_hash FROM blockfeed.blocks ORDER BY number"
        )
    finally:
        await conn.close()
    return [(r["number"], r["hash"], r["parent_hash"]) for r in rows]


async def nats_count(url: str) -> int:
    nc = await nats_py.connect(url)
    try:
        info = await nc.jetstream().stream_info("BLOCKFEED")
        return int(info.state.messages)
    except Exception:
        return 0
    finally:
        await nc.close()


async def nats_rows(url: str) -> list[tuple[int, str, str]]:
    count = await nats_count(url)
    rows: list[tuple[int, str, str]] = []
    async for block in NatsConsumer(url, after=FROM_FIRST):
        rows.append((block.number, block.hash, block.parent_hash))
        if len(rows) == count:
            break
    return rows


async def grows_by(count: Callable[[], Awaitable[int]], blocks: int) -> None:
    """Wait (bounded) until the target holds ``blocks`` more blocks than now."""
    target = await count() + blocks

    async def loop() -> None:
        while await count() < target:  # noqa: ASYNC110 - the rows come from other processes
            await asyncio.sleep(0.05)

    await asyncio.wait_for(loop(), WAIT_S)


@pytest.mark.parametrize("kind", ["postgresql", "nats"])
async def test_redundant_writers_with_one_killed_leave_the_exact_chain(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """SIGKILL of one of two serve processes mid-stream loses and repeats nothing."""
    if kind == "postgresql":
        url: str = request.getfixturevalue("pg_url")

        async def count() -> int:
            return len(await pg_rows(url))

        read = pg_rows
    else:
        url = request.getfixturevalue("nats").url

        async def count() -> int:
            return await nats_count(url)

        read = nats_rows
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b", "a2")}
    procs: list[Any] = []
    try:
        async with DevNode(DevNodeConfig(block_time_s=BLOCK_TIME_S)) as node:
            a = await start_serve(node.ws_url, url, tmp_path / "a.sqlite", logs["a"])
            b = await start_serve(node.ws_url, url, tmp_path / "b.sqlite", logs["b"])
            procs += [a, b]
            await grows_by(count, 20)
            a.send_signal(signal.SIGKILL)
            await a.wait()
            await grows_by(count, 20)  # b alone
            a = await start_serve(node.ws_url, url, tmp_path / "a.sqlite", logs["a2"])
            procs.append(a)
            await wait_ready(logs["a2"])
            await wait_ready(logs["b"])
            await grows_by(count, 20)
            for proc in (a, b):
                proc.send_signal(signal.SIGTERM)
            for proc, name in ((a, "a2"), (b, "b")):
                code = await asyncio.wait_for(proc.wait(), WAIT_S)
                assert code == 0, logs[name].read_text()[-3000:]
            rows = await read(url)
            expected = {n: node.chain.hash_of(n) for n, _, _ in rows}
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    numbers = [r[0] for r in rows]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "gap or repeat"
    assert all(h == expected[n] for n, h, _ in rows), "a hash differs from the chain"
    assert all(after[2] == before[1] for before, after in itertools.pairwise(rows))
    assert all("Traceback" not in log.read_text() for log in logs.values())


async def test_webhook_receiver_sees_each_block_once_across_its_outage_and_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Signed POSTs reach the receiver in order, once each, across 503s and a SIGKILLed serve."""
    from webhook_receiver import SECRET, Receiver

    receiver = Receiver()
    await receiver.start()
    monkeypatch.setenv("BLOCKFEED_WEBHOOK_SECRET", SECRET.decode())  # serve inherits it
    logs = {name: tmp_path / f"{name}.log" for name in ("first", "second")}
    procs: list[Any] = []
    try:
        async with DevNode(DevNodeConfig(block_time_s=BLOCK_TIME_S)) as node:
            state = tmp_path / "state.sqlite"
            first = await start_serve(node.ws_url, receiver.url, state, logs["first"])
            procs.append(first)
            await receiver.wait_for(10)
            receiver.fail_with = 503  # the receiver is down for a while
            refused_from = receiver.requests

            async def refusals() -> None:
                while receiver.requests < refused_from + 5:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)

            await asyncio.wait_for(refusals(), WAIT_S)
            receiver.fail_with = None
            await receiver.wait_for(len(receiver.accepted) + 10)
            first.send_signal(signal.SIGKILL)
            await first.wait()
            second = await start_serve(node.ws_url, receiver.url, state, logs["second"])
            procs.append(second)
            await wait_ready(logs["second"])
            await receiver.wait_for(len(receiver.accepted) + 15)
            second.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.wait(), WAIT_S) == 0
            accepted = list(receiver.accepted)
            expected = {b["number"]: node.chain.hash_of(b["number"]) for b in accepted}
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await receiver.stop()
    numbers = [b["number"] for b in accepted]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "gap or repeat"
    assert all(b["hash"] == expected[b["number"]] for b in accepted)
    assert receiver.bad_signatures == 0
