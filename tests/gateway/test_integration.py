"""The gateway around the real feed, store and devnode on loopback (short block times)."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_fakes import SseReader, serve

from blockfeed.config import load_settings
from blockfeed.devnode import DevNode, DevNodeConfig
from blockfeed.feed import BlockFeed
from blockfeed.gateway import AlertDispatcher, GatewayOptions, create_app
from blockfeed.store import open_store
from blockfeed.types import Mode

BLOCK_TIME_S = 0.1
WAIT_S = 30.0
ADMIN = "integration-admin-token"


@dataclass
class Stack:
    node: DevNode
    feed: BlockFeed
    url: str
    http: httpx.AsyncClient
    app: Any


async def wait_until(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    """Bounded wait on state that the running feed changes."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - polled state lives in other tasks
            await asyncio.sleep(0.02)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """devnode -> BlockFeed (SQLite store) -> gateway under uvicorn, all on 127.0.0.1."""
    async with AsyncExitStack() as exits:
        node = await exits.enter_async_context(
            DevNode(DevNodeConfig(block_time_s=BLOCK_TIME_S, seed=3, finality_jumps=0.3))
        )
        store = open_store(str(tmp_path / "state.sqlite"))
        exits.callback(store.close)
        feed = BlockFeed([node.ws_url], store=store, block_time_s=BLOCK_TIME_S, emoji=False,
                         log_blocks=False)
        app = create_app(feed=feed, store=store,
                         options=GatewayOptions(network="devnode", admin_token=ADMIN,
                                                ready_max_block_age_s=5.0))
        url = await exits.enter_async_context(serve(app))
        http = await exits.enter_async_context(httpx.AsyncClient(base_url=url, timeout=WAIT_S))
        yield Stack(node=node, feed=feed, url=url, http=http, app=app)


def check_chain(blocks: list[dict[str, Any]], node: DevNode) -> None:
    """Consecutive, parent-linked and identical to the devnode's canonical chain."""
    numbers = [b["number"] for b in blocks]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    for prev, cur in itertools.pairwise(blocks):
        assert cur["parent_hash"] == prev["hash"]
    for block in blocks:
        assert block["hash"] == node.chain.hash_of(block["number"])


async def read_blocks(reader: SseReader, count: int, into: list[dict[str, Any]]) -> None:
    for _ in range(count):
        event = await reader.next_named("block")
        into.append(json.loads(event["data"]))


async def test_stream_resumes_across_faults_without_gap(stack: Stack) -> None:
    """SSE from the real feed: through a node restart and a reconnect, each block exactly once."""
    blocks: list[dict[str, Any]] = []
    async with stack.http.stream("GET", "/stream") as response:
        await asyncio.wait_for(read_blocks(SseReader(response), 15, blocks), WAIT_S)
    stack.node.faults.inject("restart", seconds=0.6)  # while no client is connected
    target = blocks[-1]["number"] + 20  # these arrive while the client is away
    await stack.node.wait_for_finalized(target, timeout_s=WAIT_S)
    headers = {"Last-Event-ID": str(blocks[-1]["number"])}
    async with stack.http.stream("GET", "/stream", headers=headers) as response:
        await asyncio.wait_for(read_blocks(SseReader(response), 25, blocks), WAIT_S)
    check_chain(blocks, stack.node)


async def test_mode_change_reaches_stream_status_and_metrics(stack: Stack) -> None:
    """A node restart shows up as `event: mode` on the stream, then in /status and /metrics."""
    await wait_until(lambda: stack.feed.status().mode == Mode.STREAMING)
    async with stack.http.stream("GET", "/stream") as response:
        reader = SseReader(response)
        snapshot = json.loads((await reader.next_named("mode"))["data"])
        assert snapshot["new_mode"] == "streaming"
        stack.node.faults.inject("restart", seconds=1.0)
        change = json.loads((await asyncio.wait_for(reader.next_named("mode"), WAIT_S))["data"])
    assert change["old_mode"] == "streaming" and change["new_mode"] in ("polling", "disconnected")
    assert change["reason"]
    await wait_until(lambda: stack.feed.status().mode == Mode.STREAMING)
    status = (await stack.http.get("/status")).json()
    assert [s["mode"] for s in status["timeline"]][-1] == "streaming"
    assert any(e["kind"] == "mode_changed" for e in status["recent_events"])
    assert status["epoch"]["length"] == 360
    metrics = (await stack.http.get("/metrics")).text
    assert 'blockfeed_mode{mode="streaming"} 1.0' in metrics
    assert "blockfeed_mode_transitions_total{from_mode=\"streaming\"" in metrics


async def test_blocks_routes_match_the_chain(stack: Stack) -> None:
    """/blocks and /blocks/{n} serve what the store kept, equal to the canonical chain."""
    await wait_until(lambda: (stack.feed.status().last_block or _Zero).number > 0)
    first = stack.feed.status().last_block
    assert first is not None
    await stack.node.wait_for_finalized(first.number + 20, timeout_s=WAIT_S)
    await wait_until(lambda: (stack.feed.status().last_block or _Zero).number >= first.number + 20)
    page = await stack.http.get("/blocks", params={"from": first.number, "limit": 20})
    assert page.status_code == 200, page.text
    check_chain(page.json()["blocks"], stack.node)
    one = (await stack.http.get(f"/blocks/{first.number + 5}")).json()
    assert one["hash"] == stack.node.chain.hash_of(first.number + 5)
    assert (await stack.http.get("/ready")).status_code == 200


class _Zero:
    number = 0


async def test_admin_reconnect_recycles_the_socket(stack: Stack) -> None:
    """POST /admin/reconnect with the token makes the real feed reconnect (reconnects grows)."""
    await wait_until(lambda: stack.feed.status().mode == Mode.STREAMING)
    before = stack.feed.status().reconnects
    denied = await stack.http.post("/admin/reconnect", headers={"Authorization": "Bearer nope"})
    assert denied.status_code == 403
    response = await stack.http.post("/admin/reconnect",
                                     headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status_code == 202
    await wait_until(lambda: stack.feed.status().reconnects > before)
    await wait_until(lambda: stack.feed.status().mode == Mode.STREAMING)


async def test_alert_on_real_fault(tmp_path: Path) -> None:
    """A node restart makes the real feed's events reach a webhook receiver on loopback."""
    received: list[dict[str, Any]] = []
    arrived = asyncio.Event()

    async def receiver(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        received.append(json.loads(body))
        arrived.set()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with AsyncExitStack() as exits:
        hook_url = await exits.enter_async_context(serve(receiver))
        node = await exits.enter_async_context(DevNode(DevNodeConfig(block_time_s=BLOCK_TIME_S)))
        feed = BlockFeed([node.ws_url], block_time_s=BLOCK_TIME_S, emoji=False, log_blocks=False)
        alerts = AlertDispatcher([hook_url + "/hook"], network="devnode", secrets=[node.ws_url])
        app = create_app(feed=feed, alerts=alerts, options=GatewayOptions(network="devnode"))
        await exits.enter_async_context(serve(app))
        await wait_until(lambda: feed.status().mode == Mode.STREAMING)
        before = len(received)  # a slow start may have alerted already (starting -> polling)
        node.faults.inject("restart", seconds=1.0)
        async with asyncio.timeout(WAIT_S):
            while not [a for a in received[before:] if a.get("old_mode") == "streaming"]:
                await arrived.wait()
                arrived.clear()
    alert = next(a for a in received[before:] if a.get("old_mode") == "streaming")
    assert alert["kind"] in ("mode_changed", "disconnected")
    assert alert["network"] == "devnode"
    assert "blockfeed [devnode]" in alert["text"]


async def test_service_built_from_settings(tmp_path: Path) -> None:
    """create_app(settings) opens the store, builds the feed and serves blocks on its own."""
    async with DevNode(DevNodeConfig(block_time_s=BLOCK_TIME_S)) as node:
        settings = load_settings(endpoints=[node.ws_url], state=str(tmp_path / "s.sqlite"),
                                 block_time_s=BLOCK_TIME_S, network="local")
        async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
            async with asyncio.timeout(WAIT_S):
                while (latest := await http.get("/blocks/latest")).status_code != 200:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            assert latest.json()["hash"] == node.chain.hash_of(latest.json()["number"])
            status = (await http.get("/status")).json()
            assert status["network"] == "local"
    assert (tmp_path / "s.sqlite").exists()


async def test_module_level_app_reads_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`uvicorn blockfeed.gateway:app` works: the app is built from BLOCKFEED_* on first use."""
    import blockfeed.gateway as gateway_module

    async with DevNode(DevNodeConfig(block_time_s=BLOCK_TIME_S)) as node:
        monkeypatch.setenv("BLOCKFEED_ENDPOINTS", node.ws_url)
        monkeypatch.setenv("BLOCKFEED_STATE", ":memory:")
        monkeypatch.setenv("BLOCKFEED_BLOCK_TIME_S", str(BLOCK_TIME_S))
        monkeypatch.setattr(gateway_module, "_app", None)
        app = gateway_module.app
        assert gateway_module.app is app  # built once
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
            async with asyncio.timeout(WAIT_S):
                while (await http.get("/ready")).status_code != 200:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            assert (await http.get("/status")).json()["network"] == "finney"
