"""A real feed on an endpoint URL full of secrets: nothing of them in any output, at DEBUG.

devnode -> BlockFeed -> gateway, all on 127.0.0.1, every logger at DEBUG (websockets logs its
handshake with ``Authorization: Basic base64(user:pass)``, httpx every request URL). After a
socket close and a node restart (mode events with reasons), every log line, /status, /metrics
and the SSE stream (block and mode events) are searched for every secret piece of the URL.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from gateway_fakes import SseReader, serve

from blockfeed.devnode import DevNode, DevNodeConfig
from blockfeed.feed import BlockFeed
from blockfeed.gateway import GatewayOptions, create_app
from blockfeed.store import open_store
from blockfeed.types import Mode

BLOCK_TIME_S = 0.1
WAIT_S = 30.0

USER, PASSWORD = "alice", "PW9zq-hunter2"
PATH_KEY, PATH_VALUE = "KEY7sk.x+y%2F", "VALUE4qq;z=1"
SHORT = "Qz8"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJtYXNrLXRlc3QiLCJuIjo3fQ"
    ".S1gNaTuReBytesXyZ0123456789abc"
)
SECRETS = (
    USER,
    PASSWORD,
    PATH_KEY,
    PATH_VALUE,
    f"key={SHORT}",
    *JWT.split("."),
    base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
)
LIBRARY_LOGGERS = ("websockets", "websockets.client", "httpx", "httpcore", "blockfeed")


async def _wait_until(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - polled state lives in the feed's tasks
            await asyncio.sleep(0.02)


async def test_no_secret_anywhere_at_debug_level(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """Logs at DEBUG, /status, /metrics and SSE mode events never show a piece of the URL."""
    caplog.set_level(logging.DEBUG)
    for name in LIBRARY_LOGGERS:  # other tests may have quietened them
        caplog.set_level(logging.DEBUG, logger=name)
    outputs: list[str] = []
    async with AsyncExitStack() as exits:
        node = await exits.enter_async_context(
            DevNode(DevNodeConfig(block_time_s=BLOCK_TIME_S, seed=4))
        )
        url = (
            f"ws://{USER}:{PASSWORD}@127.0.0.1:{node.port}/v1/sk_live.{PATH_KEY};"
            f"apikey={PATH_VALUE}?key={SHORT}&token={JWT}"
        )
        store = open_store(str(tmp_path / "state.sqlite"))
        exits.callback(store.close)
        feed = BlockFeed([url], store=store, block_time_s=BLOCK_TIME_S, emoji=False)
        app = create_app(feed=feed, store=store, options=GatewayOptions(network="devnode"))
        base = await exits.enter_async_context(serve(app))
        http = await exits.enter_async_context(httpx.AsyncClient(base_url=base, timeout=WAIT_S))
        await _wait_until(lambda: feed.status().mode == Mode.STREAMING)
        async with http.stream("GET", "/stream") as response:
            reader = SseReader(response)
            first = await asyncio.wait_for(reader.next_named("mode"), WAIT_S)
            outputs.append(json.dumps(first))
            node.faults.inject("restart", seconds=0.5)
            change = await asyncio.wait_for(reader.next_named("mode"), WAIT_S)
            back = await asyncio.wait_for(reader.next_named("mode"), WAIT_S)
            outputs += [json.dumps(change), json.dumps(back)]
            outputs.append(json.dumps(await asyncio.wait_for(reader.next_named("block"), WAIT_S)))
        assert json.loads(change["data"])["new_mode"] in ("polling", "disconnected")
        node.faults.inject("close", seconds=0)
        await _wait_until(lambda: feed.status().reconnects >= 2)
        await _wait_until(lambda: feed.status().mode == Mode.STREAMING)
        outputs.append((await http.get("/status")).text)
        outputs.append((await http.get("/metrics")).text)
    outputs.append(caplog.text)
    outputs += [record.getMessage() for record in caplog.records]
    everything = "\n".join(outputs)
    for secret in SECRETS:
        assert secret not in everything, secret
    # The test saw what it is about: the handshake at DEBUG, the masked endpoint, mode reasons.
    assert "> GET /*** HTTP/1.1" in caplog.text
    assert "> Authorization: ***" in caplog.text
    assert f"ws://127.0.0.1:{node.port}/***" in everything
    assert json.loads(change["data"])["reason"]
