"""A three-node JetStream cluster on loopback: one server SIGKILLed mid-stream loses nothing."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sink_chain import fast_delays, make_chain
from sink_servers import NatsServer, free_port, nats_binary

from blockfeed.sinks.nats import NatsConsumer, NatsSink
from blockfeed.sinks.redis_consumer import FROM_FIRST

pytestmark = pytest.mark.sinks

WAIT_S = 60.0


@pytest.fixture
def cluster() -> Iterator[list[NatsServer]]:
    if nats_binary() is None:
        pytest.skip("nats-server not found (Debian package nats-server; scripts/system-deps.sh)")
    store = Path(tempfile.mkdtemp(prefix="blockfeed-nats-cluster-"))
    ports = [free_port() for _ in range(3)]
    servers = [
        NatsServer(
            name=f"n{i + 1}",
            store=store,
            cluster_port=port,
            routes=[p for p in ports if p != port],
        )
        for i, port in enumerate(ports)
    ]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop(remove=False)
        servers[0].stop(remove=True)


async def test_a_killed_cluster_member_loses_and_repeats_nothing(cluster: list[NatsServer]) -> None:
    """R3 stream; the server a publisher may be using is killed mid-stream; every block once."""
    url = ",".join(s.url for s in cluster)
    chain = make_chain(3000)
    sink = NatsSink(url, replicas=3, batch_size=200, ack_timeout_s=3.0,
                    reconnect_delays=fast_delays)  # fmt: skip
    async with sink:
        for block in chain[:1500]:
            await sink.publish(block)
        assert await sink.flush(WAIT_S), sink.status()
        for block in chain[1500:]:
            await sink.publish(block)

        async def midway() -> None:
            while (sink.status()["last_published"] or 0) < chain[1700].number:  # noqa: ASYNC110
                await asyncio.sleep(0.001)

        await asyncio.wait_for(midway(), WAIT_S)
        cluster[0].kill()  # mid-stream, with batches in flight
        assert await sink.flush(WAIT_S), sink.status()
    survivors = ",".join(s.url for s in cluster[1:])
    got = []

    async def read() -> None:
        async for block in NatsConsumer(survivors, after=FROM_FIRST):
            got.append(block)
            if len(got) == len(chain):
                return

    await asyncio.wait_for(read(), WAIT_S)
    assert [b.number for b in got] == [b.number for b in chain]
    assert [b.hash for b in got] == [b.hash for b in chain]
    assert all(b.parent_hash == a.hash for a, b in itertools.pairwise(got))
