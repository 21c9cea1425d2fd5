"""The PostgreSQL sink against a real PostgreSQL started by the tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sink_chain import (
    BIG_AMOUNT,
    WindowStore,
    assert_linked,
    fast_delays,
    make_chain,
    with_contents,
)

from blockfeed.errors import ConfigError
from blockfeed.sinks.base import Sink
from blockfeed.sinks.postgres import MIGRATIONS, PostgresSink, migrate

pytestmark = pytest.mark.sinks

WAIT_S = 30.0


async def rows(url: str) -> list[tuple[int, str, str]]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        got = await conn.fetch(
            "SELECT number, hash, parent_hash FROM blockfeed.blocks ORDER BY number"
        )
    finally:
        await conn.close()
    return [(r["number"], r["hash"], r["parent_hash"]) for r in got]


async def wait_for(predicate: Any, timeout_s: float = WAIT_S) -> None:
    """Poll ``predicate`` (sync) every 20 ms until true; fail after ``timeout_s``."""

    async def loop() -> None:
        while not predicate():  # noqa: ASYNC110 - the state lives in other tasks
            await asyncio.sleep(0.02)

    await asyncio.wait_for(loop(), timeout_s)


def sink(url: str, **options: Any) -> PostgresSink:
    options.setdefault("reconnect_delays", fast_delays)
    return PostgresSink(url, **options)


async def test_writes_every_block_in_order_with_its_cursor(pg_url: str) -> None:
    """Blocks land as consecutive, parent-linked rows, and the writer's cursor names the last."""
    chain = make_chain(1200)
    async with sink(pg_url, batch_size=500, writer="w1") as s:
        assert isinstance(s, Sink)
        for block in chain:
            await s.publish(block)
        assert await s.flush(WAIT_S)
        status = s.status()
    assert_linked(await rows(pg_url), chain)
    assert status["last_published"] == chain[-1].number and status["lag_blocks"] == 0
    assert status["published"] == 1200 and status["kind"] == "postgresql"
    conn = await asyncpg.connect(pg_url)
    try:
        cursor = await conn.fetchrow("SELECT number, hash FROM blockfeed.cursors WHERE writer='w1'")
        roots = await conn.fetchrow(
            "SELECT state_root, received_at, delivered_at FROM blockfeed.blocks WHERE number=$1",
            chain[0].number,
        )
    finally:
        await conn.close()
    assert (cursor["number"], cursor["hash"]) == (chain[-1].number, chain[-1].hash)
    assert roots["state_root"] == "0x" + chain[0].header.state_root.hex()
    assert roots["received_at"].timestamp() == pytest.approx(chain[0].received_at)


async def test_contents_fill_the_jsonb_column(pg_url: str) -> None:
    """Blocks with contents fill ``contents`` (big ints as text, NUL as U+FFFD, since JSONB
    refuses it); header-only blocks leave it NULL."""
    chain = make_chain(6, seed=11)
    blocks = with_contents(chain[:3]) + chain[3:]
    async with sink(pg_url) as s:
        for block in blocks:
            await s.publish(block)
        assert await s.flush(WAIT_S)
    conn = await asyncpg.connect(pg_url, timeout=10)
    try:
        got = await conn.fetch(
            "SELECT number, contents, contents->'events'->0->>'name' AS event"
            " FROM blockfeed.blocks WHERE number = ANY($1::bigint[]) ORDER BY number",
            [b.number for b in blocks],
        )
    finally:
        await conn.close()
    assert [r["number"] for r in got] == [b.number for b in blocks]
    assert [r["event"] for r in got] == ["Transfer"] * 3 + [None] * 3
    first = json.loads(got[0]["contents"])
    assert first["spec_version"] == 218 and first["timestamp"] == blocks[0].timestamp
    assert first["events"][0]["fields"] == {"amount": str(BIG_AMOUNT), "memo": "a\ufffdb"}
    assert first["extrinsics"][0]["call"] == "set"
    assert [r["contents"] for r in got[3:]] == [None] * 3


async def test_redundant_writers_leave_one_row_per_number(pg_url: str) -> None:
    """Two writers given the same blocks at the same time leave each number exactly once."""
    chain = make_chain(2000)
    async with sink(pg_url, batch_size=100, writer="a") as a, \
            sink(pg_url, batch_size=170, writer="b") as b:  # fmt: skip
        for block in chain:
            await a.publish(block)
            await b.publish(block)
        assert await a.flush(WAIT_S) and await b.flush(WAIT_S)
        assert a.status()["errors"] == 0 and b.status()["errors"] == 0
    assert_linked(await rows(pg_url), chain)


async def test_a_different_hash_at_an_existing_number_is_refused_loudly(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Another chain's block at a stored number is never written over; the error is reported."""
    ours, theirs = make_chain(20, seed=1), make_chain(20, seed=2)
    async with sink(pg_url) as s:
        for block in ours[:10]:
            await s.publish(block)
        assert await s.flush(WAIT_S)
    async with sink(pg_url, close_drain_s=0) as other:
        for block in theirs[5:20]:
            await other.publish(block)
        await wait_for(lambda: other.status()["errors"] >= 1)
        status = other.status()
    assert "another chain" in status["last_error"]
    assert status["last_published"] == ours[9].number  # nothing of theirs went in
    assert_linked(await rows(pg_url), ours[:10])
    assert any("another chain" in r.getMessage() for r in caplog.records)


async def test_catches_up_from_the_store_window_after_a_restart(pg_url: str) -> None:
    """A restarted writer fills the blocks between the table's newest row and its outbox."""
    chain = make_chain(600)
    async with sink(pg_url) as first:
        for block in chain[:100]:
            await first.publish(block)
        assert await first.flush(WAIT_S)
    store = WindowStore(chain[50:500])  # what the feed's store kept meanwhile
    async with sink(pg_url, store=store, batch_size=64) as second:
        for block in chain[450:]:  # the feed resumes at its checkpoint, well past the table
            await second.publish(block)
        assert await second.flush(WAIT_S)
        assert second.status()["caught_up"] == 350 and second.status()["gaps"] == 0
    assert_linked(await rows(pg_url), chain)


async def test_reconnects_after_its_connection_is_killed(pg_url: str) -> None:
    """A terminated backend is a transient error: the sink reconnects and goes on in order."""
    chain = make_chain(300)
    async with sink(pg_url, batch_size=50) as s:
        for block in chain[:100]:
            await s.publish(block)
        assert await s.flush(WAIT_S)
        admin = await asyncpg.connect(pg_url)
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        for block in chain[100:]:
            await s.publish(block)
        assert await s.flush(WAIT_S)
        assert s.status()["reconnects"] >= 1
    assert_linked(await rows(pg_url), chain)


async def test_migrations_are_versioned_and_refuse_a_newer_schema(pg_url: str) -> None:
    """migrate() records each version once; a schema newer than this code is refused."""
    conn = await asyncpg.connect(pg_url)
    try:
        assert await migrate(conn) == MIGRATIONS[-1][0]
        assert await migrate(conn) == MIGRATIONS[-1][0]
        versions = await conn.fetch("SELECT version FROM blockfeed.schema_migrations")
        assert [r["version"] for r in versions] == [v for v, _ in MIGRATIONS]
        await conn.execute("INSERT INTO blockfeed.schema_migrations (version) VALUES (999)")
    finally:
        await conn.close()
    async with sink(pg_url, close_drain_s=0) as s:
        await s.publish(make_chain(1)[0])
        await wait_for(lambda: s.status()["errors"] >= 1)
        assert "newer than this blockfeed" in s.status()["last_error"]


async def test_an_unreachable_database_never_shows_its_password() -> None:
    """Connection errors are reported with the URL's password masked."""
    port = _closed_port()
    url = f"postgresql://indexer:hunter2secret@127.0.0.1:{port}/chain"
    async with sink(url, close_drain_s=0) as s:
        await s.publish(make_chain(1)[0])
        await wait_for(lambda: s.status()["errors"] >= 1)
        status = s.status()
    assert "hunter2secret" not in repr(status) and "hunter2secret" not in repr(s)
    assert status["connected"] is False and status["lag_blocks"] == 1


def test_bad_urls_are_config_errors_without_secrets() -> None:
    """A URL that is not postgresql:// is refused at once, with its secret masked."""
    with pytest.raises(ConfigError) as info:
        PostgresSink("mysql://root:topsecretpw@db/x")
    assert "topsecretpw" not in str(info.value)
    with pytest.raises(ConfigError):
        PostgresSink("postgresql://db/x", batch_size=0)


def _closed_port() -> int:
    from sink_servers import free_port

    return free_port()


WRITER_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {here!r})
    from sink_chain import make_chain
    from blockfeed.sinks.postgres import PostgresSink

    async def main():
        chain = make_chain({count})
        sink = PostgresSink({url!r}, batch_size={batch})
        await sink.start()
        for block in chain:
            await sink.publish(block)
        while not await sink.flush(60):
            pass
        await sink.aclose()

    asyncio.run(main())
    """
)


async def test_a_writer_killed_mid_batch_leaves_whole_batches_and_a_restart_completes(
    pg_url: str,
) -> None:
    """SIGKILL during a write leaves only committed whole batches; a new writer finishes the job."""
    count, batch = 30_000, 5_000
    script = WRITER_SCRIPT.format(here=str(Path(__file__).parent), count=count, url=pg_url,
                                  batch=batch)  # fmt: skip
    chain = make_chain(count)
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ})  # noqa: ASYNC220
    try:
        conn = await asyncpg.connect(pg_url)
        try:

            async def first_commit() -> None:
                while True:
                    have = await conn.fetchval(
                        "SELECT count(*) FROM pg_tables WHERE schemaname = 'blockfeed' "
                        "AND tablename = 'blocks'"
                    )
                    if have and await conn.fetchval("SELECT count(*) FROM blockfeed.blocks"):
                        return
                    assert proc.poll() is None, "the writer exited before it was killed"
                    await asyncio.sleep(0.005)

            await asyncio.wait_for(first_commit(), WAIT_S)
        finally:
            await conn.close()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left = await rows(pg_url)
    assert left and len(left) % batch == 0 and len(left) < count  # whole batches only
    assert_linked(left, chain[: len(left)])
    store = WindowStore(chain)
    async with sink(pg_url, store=store, batch_size=batch) as again:
        await again.publish(chain[-1])  # the feed resumes at its checkpoint
        assert await again.flush(WAIT_S)
    assert_linked(await rows(pg_url), chain)
