"""The service with `--redis`: blocks from the feed land in a real Redis stream as `<number>-0`."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_fakes import serve

import redis
from blockfeed.config import load_settings
from blockfeed.devnode import DevNode, DevNodeConfig
from blockfeed.gateway import create_app

REDIS = shutil.which("redis-server")
WAIT_S = 30.0
pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(REDIS is None, reason="redis-server is missing (scripts/system-deps.sh)"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A throwaway redis-server on loopback, stopped after the test."""
    assert REDIS is not None
    port = _free_port()
    proc = subprocess.Popen(
        [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        for _ in range(500):  # up to ~10 s for the server to answer
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            if proc.poll() is not None:
                pytest.fail("redis-server exited at start")
            time.sleep(0.02)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_blocks_published_to_redis(redis_url: str, tmp_path: Path) -> None:
    """create_app(settings with redis_url) publishes each block once, in order, ID = number-0."""
    async with DevNode(DevNodeConfig(block_time_s=0.1)) as node:
        settings = load_settings(endpoints=[node.ws_url], state=str(tmp_path / "s.sqlite"),
                                 block_time_s=0.1, redis_url=redis_url, redis_stream="bf:test")
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            async with serve(create_app(settings)):
                async with asyncio.timeout(WAIT_S):
                    while await client.xlen("bf:test") < 15:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
            entries = await client.xrange("bf:test")
        finally:
            await client.aclose()
    ids = [entry_id.decode() for entry_id, _ in entries]
    numbers = [int(i.split("-")[0]) for i in ids]
    assert all(i.endswith("-0") for i in ids)
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    first_fields = entries[0][1]
    assert first_fields[b"hash"].decode() == node.chain.hash_of(numbers[0])
