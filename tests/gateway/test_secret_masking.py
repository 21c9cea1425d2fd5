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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blockfeed.devnode import DevNode, DevNodeConfig
from blockfeed.feed import BlockFeed
from blockfeed.gateway import GatewayOptions, create_app
from blockfeed.gateway.hub import event_payload
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


# Two capitals then a digit: no fixed text of any output contains such a sequence.
SECRET = st.from_regex(r"[A-Z]{2}[0-9][A-Za-z0-9._~+;=%\-]{1,12}", fullmatch=True)
SHORT_KEY = st.from_regex(r"[a-z]{1,3}", fullmatch=True)
CREDENTIAL = st.from_regex(r"[A-Z]{2}[0-9][A-Za-z0-9._~+;=\-]{1,12}", fullmatch=True)
"""No %: a credential that is not valid percent-encoding is a ConfigError (tested elsewhere)."""


@st.composite
def url_tails(draw: st.DrawFn) -> tuple[str, str, tuple[str, ...]]:
    """(userinfo, path + query, secrets) of a generated endpoint URL shape."""
    secrets: list[str] = []
    userinfo = ""
    if draw(st.booleans()):
        user, password = draw(CREDENTIAL), draw(CREDENTIAL)
        userinfo, secrets = f"{user}:{password}@", [user, password]
    key, value = draw(SECRET), draw(SECRET)
    path = draw(
        st.sampled_from(
            [f"/ws/{key}", f"/v1/sk_live.{key};apikey={value}", f"/{key}/{value}=+x%2F"]
        )
    )
    secrets += [key, value] if value in path else [key]
    query_values = draw(st.lists(SECRET, max_size=2))
    query = "&".join(f"{draw(SHORT_KEY)}={v}" for v in query_values)
    if draw(st.booleans()):
        query += ("&" if query else "") + f"token={JWT}"
        secrets += JWT.split(".")
    secrets += query_values
    return userinfo, path + (f"?{query}" if query else ""), tuple(secrets)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(tail=url_tails())
def test_generated_url_shapes_leave_no_trace_through_a_real_feed(
    tail: tuple[str, str, tuple[str, ...]], caplog: pytest.LogCaptureFixture
) -> None:
    """For generated URL shapes, a real feed (with a socket close) leaves no secret in DEBUG
    logs, /status, /metrics or the event payloads the SSE stream sends."""
    userinfo, rest, secrets = tail
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    for name in LIBRARY_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)

    async def scenario() -> list[str]:
        async with DevNode(DevNodeConfig(block_time_s=0.05, seed=6)) as node:
            url = f"ws://{userinfo}127.0.0.1:{node.port}{rest}"
            feed = BlockFeed([url], block_time_s=0.05, emoji=False)
            app = create_app(feed=feed, options=GatewayOptions(network="devnode"),
                             manage_feed=False)
            transport = httpx.ASGITransport(app=app)
            async with feed, httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
                await _wait_until(lambda: feed.status().last_block is not None)
                node.faults.inject("close", seconds=0)
                await _wait_until(lambda: feed.status().reconnects >= 1)
                await _wait_until(lambda: feed.status().mode == Mode.STREAMING)
                events = [json.dumps(event_payload(e)) for e in feed.status().recent_events]
                return [
                    (await http.get("/status")).text,
                    (await http.get("/metrics")).text,
                    *events,
                ]

    outputs = asyncio.run(scenario())
    everything = "\n".join([*outputs, caplog.text, *(r.getMessage() for r in caplog.records)])
    for secret in secrets:
        assert secret not in everything, (secret, userinfo, rest)
    assert "> GET /*** HTTP/1.1" in caplog.text
