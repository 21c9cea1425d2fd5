"""The NATS JetStream sink and consumer against a real ``nats-server -js``."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import nats
import pytest
from sink_chain import BIG_AMOUNT, WindowStore, fast_delays, make_chain, with_contents
from sink_servers import NatsServer

from blockfeed.contents import json_safe
from blockfeed.errors import ConfigError, VerificationError
from blockfeed.sinks.nats import NatsConsumer, NatsSink, split_servers
from blockfeed.types import Block

pytestmark = pytest.mark.sinks

WAIT_S = 30.0


def stream_name() -> str:
    return "T" + uuid.uuid4().hex[:10].upper()


def sink(url: str, stream: str, **options: Any) -> NatsSink:
    options.setdefault("reconnect_delays", fast_delays)
    return NatsSink(url, stream=stream, subject_prefix=f"bf.{stream}", **options)


async def read_all(url: str, stream: str) -> list[tuple[str, dict[str, Any]]]:
    """Every message in the stream, in stream order: (subject, payload)."""
    import json

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq=seq)
            out.append((str(msg.subject), json.loads(msg.data)))
        return out
    finally:
        await nc.close()


async def consume(url: str, stream: str, count: int, **options: Any) -> list[Block]:
    reader = NatsConsumer(url, stream=stream, subject_prefix=f"bf.{stream}", **options)

    async def run() -> list[Block]:
        got: list[Block] = []
        async for block in reader:
            got.append(block)
            if len(got) == count:
                break
        return got

    return await asyncio.wait_for(run(), WAIT_S)


async def test_publishes_one_message_per_block_in_order(nats: NatsServer) -> None:
    """Each block is one message on its own subject; the consumer reads them back verified."""
    stream, chain = stream_name(), make_chain(700)
    async with sink(nats.url, stream, batch_size=256) as s:
        for block in chain:
            await s.publish(block)
        assert await s.flush(WAIT_S)
        assert s.status()["last_published"] == chain[-1].number
    messages = await read_all(nats.url, stream)
    assert [m[1]["number"] for m in messages] == [b.number for b in chain]
    assert [m[0] for m in messages] == [f"bf.{stream}.{b.number}" for b in chain]
    got = await consume(nats.url, stream, 700, after=chain[0].number - 1)
    assert [b.hash for b in got] == [b.hash for b in chain]
    later = await consume(nats.url, stream, 100, after=chain[599].number)
    assert [b.number for b in later] == [b.number for b in chain[600:]]


async def test_contents_travel_in_the_payload(nats: NatsServer) -> None:
    """A block's contents are in its message (big ints as text) and the consumer reads them
    back; a header-only block has no ``contents`` key."""
    stream, chain = stream_name(), make_chain(4, seed=12)
    blocks = with_contents(chain[:2]) + chain[2:]
    async with sink(nats.url, stream) as s:
        for block in blocks:
            await s.publish(block)
        assert await s.flush(WAIT_S)
    messages = [m[1] for m in await read_all(nats.url, stream)]
    assert messages[0]["contents"]["events"][0]["fields"]["amount"] == str(BIG_AMOUNT)
    assert "contents" not in messages[2]
    got = await consume(nats.url, stream, 4, after=chain[0].number - 1)
    assert [b.spec_version for b in got] == [218, 218, None, None]
    assert got[1].events is not None and got[1].events[0]["name"] == "Transfer"
    assert got[1].extrinsics == json_safe(blocks[1].extrinsics)


async def test_redundant_publishers_leave_each_block_once(nats: NatsServer) -> None:
    """Two publishers of the same chain: every block once; the loser counts duplicates."""
    stream, chain = stream_name(), make_chain(1000)
    async with sink(nats.url, stream, batch_size=100) as a, \
            sink(nats.url, stream, batch_size=64) as b:  # fmt: skip
        for block in chain:
            await a.publish(block)
            await b.publish(block)
        assert await a.flush(WAIT_S) and await b.flush(WAIT_S)
        dupes = a.status()["duplicates"] + b.status()["duplicates"]
        assert a.status()["errors"] == 0 and b.status()["errors"] == 0
    messages = await read_all(nats.url, stream)
    assert sorted(m[1]["number"] for m in messages) == [b.number for b in chain]
    assert dupes >= 1


async def test_another_chain_is_refused_and_never_published(nats: NatsServer) -> None:
    """A different hash on an existing subject is an error; nothing of the other chain lands."""
    stream = stream_name()
    ours, theirs = make_chain(10, seed=1), make_chain(20, seed=2)
    async with sink(nats.url, stream) as s:
        for block in ours:
            await s.publish(block)
        assert await s.flush(WAIT_S)
    async with sink(nats.url, stream, close_drain_s=0) as other:
        for block in theirs[5:]:
            await other.publish(block)

        async def refused() -> None:
            while not other.status()["errors"]:  # noqa: ASYNC110 - the sink's own task
                await asyncio.sleep(0.02)

        await asyncio.wait_for(refused(), WAIT_S)
        assert "another chain" in other.status()["last_error"]
    messages = await read_all(nats.url, stream)
    assert [m[1]["hash"] for m in messages] == [b.hash for b in ours]


async def test_a_restarted_publisher_catches_up_from_the_store(nats: NatsServer) -> None:
    """A new publisher resumes after the stream's newest block, filling from the store window."""
    stream, chain = stream_name(), make_chain(300)
    async with sink(nats.url, stream) as first:
        for block in chain[:100]:
            await first.publish(block)
        assert await first.flush(WAIT_S)
    async with sink(nats.url, stream, store=WindowStore(chain)) as second:
        for block in chain[250:]:
            await second.publish(block)
        assert await second.flush(WAIT_S)
    messages = await read_all(nats.url, stream)
    assert [m[1]["number"] for m in messages] == [b.number for b in chain]


async def test_the_consumer_refuses_a_broken_link(nats: NatsServer) -> None:
    """A block whose parent is not the previous block's hash stops the consumer loudly."""
    stream = stream_name()
    ours, theirs = make_chain(10, seed=1), make_chain(10, seed=2)
    async with sink(nats.url, stream) as s:
        for block in ours[:5] + theirs[5:]:
            await s.publish(block)
        assert await s.flush(WAIT_S)
    with pytest.raises(VerificationError, match="mixes two chains"):
        await consume(nats.url, stream, 10, after=ours[0].number - 1)


def test_urls_are_checked_and_redacted() -> None:
    """Several servers split on commas; bad schemes are refused; credentials never shown."""
    assert split_servers("nats://a:4222,b:4223") == ["nats://a:4222", "nats://b:4223"]
    with pytest.raises(ConfigError):
        split_servers("http://a:4222")
    s = NatsSink("nats://user:natspassword1@a:4222,nats://user:natspassword1@b:4222")
    assert "natspassword1" not in s.url and "natspassword1" not in repr(s.status())


def test_consume_cli_prints_the_stream_in_order(nats: NatsServer) -> None:
    """`blockfeed consume nats://... --from N --count K --json` prints K verified blocks."""
    import json
    import subprocess
    import sys

    stream, chain = stream_name(), make_chain(30)

    async def publish() -> None:
        async with NatsSink(nats.url, stream=stream) as s:
            for block in chain:
                await s.publish(block)
            assert await s.flush(WAIT_S)

    asyncio.run(publish())
    done = subprocess.run(
        [sys.executable, "-m", "blockfeed", "consume", nats.url, "--stream", stream,
         "--from", str(chain[10].number), "--count", "20", "--json", "--quiet"],
        capture_output=True, text=True, timeout=WAIT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [x["number"] for x in lines] == [b.number for b in chain[10:]]
    assert [x["hash"] for x in lines] == [b.hash for b in chain[10:]]
