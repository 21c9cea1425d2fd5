"""The transport seam: every RPC client the feed uses comes from its connector."""

from __future__ import annotations

from typing import Any

import pytest
from feedkit import WAIT_S, Collector, assert_sound, feed_config, node_config

from blockfeed import BlockFeed, Mode
from blockfeed.devnode import DevNode
from blockfeed.errors import RpcTransportError
from blockfeed.rpc.connector import NetworkConnector, RpcClient, SocketClient, SocketOptions


class RecordingClient:
    """An HTTP client that records each method it is asked for, then forwards it."""

    def __init__(self, inner: RpcClient, methods: list[str]) -> None:
        self._inner = inner
        self._methods = methods

    async def call(self, method: str, params: Any = None, *, timeout_s: float | None = None
                   ) -> Any:
        self._methods.append(method)
        return await self._inner.call(method, params, timeout_s=timeout_s)

    async def batch(self, calls: Any, *, timeout_s: float | None = None) -> list[Any]:
        self._methods.extend(method for method, _params in calls)
        return await self._inner.batch(calls, timeout_s=timeout_s)

    async def aclose(self) -> None:
        self._methods.append("aclose")
        await self._inner.aclose()


class RecordingConnector:
    """The real network, with a record of every client asked for (and sockets refused on
    demand)."""

    def __init__(self, *, refuse_sockets: bool = False) -> None:
        self.refuse_sockets = refuse_sockets
        self.http_urls: list[str] = []
        self.socket_opens: list[tuple[str, SocketOptions]] = []
        self.methods: list[str] = []
        self._network = NetworkConnector()

    def http(self, url: str, *, timeout_s: float) -> RpcClient:
        self.http_urls.append(url)
        return RecordingClient(self._network.http(url, timeout_s=timeout_s), self.methods)

    async def websocket(self, url: str, options: SocketOptions) -> SocketClient:
        self.socket_opens.append((url, options))
        if self.refuse_sockets:
            raise RpcTransportError("refused by the test connector")
        return await self._network.websocket(url, options)


async def test_feed_builds_every_client_through_its_connector() -> None:
    """HTTP clients and sockets come from the injected connector, with T-scaled options."""
    connector = RecordingConnector()
    async with DevNode(node_config()) as node:
        collector = Collector()
        feed = BlockFeed([node.ws_url], connector=connector, config=feed_config())
        feed.subscribe(collector.on_block, name="collector")
        async with feed:
            await collector.wait_past(node.chain.finalized_number + 3)
            assert feed.mode is Mode.STREAMING
        assert_sound(collector, node)
    assert connector.http_urls == [node.http_url]
    assert [url for url, _ in connector.socket_opens] == [node.ws_url]
    options = connector.socket_opens[0][1]
    assert options.open_timeout_s == pytest.approx(0.5)
    assert options.ping_interval_s == pytest.approx(0.3)
    assert options.on_malformed is not None
    assert "chain_getBlockHash" in connector.methods  # the chain's identity, over that client
    assert connector.methods[-1] == "aclose"  # the feed closed what it was given


async def test_sockets_refused_by_the_connector_leave_polling() -> None:
    """A connector that refuses every socket leaves the feed polling over its HTTP clients."""
    connector = RecordingConnector(refuse_sockets=True)
    async with DevNode(node_config()) as node:
        collector = Collector()
        feed = BlockFeed([node.ws_url], connector=connector, config=feed_config())
        feed.subscribe(collector.on_block, name="collector")
        async with feed:
            await collector.wait_past(node.chain.finalized_number + 3, timeout_s=WAIT_S)
            assert feed.mode is not Mode.STREAMING
        assert_sound(collector, node)
    assert len(connector.socket_opens) >= 1  # it kept asking the connector, never around it
    assert {block.source.value for block in (s.block for s in collector.seen)} <= {"poll",
                                                                                     "backfill"}
    assert "chain_getFinalizedHead" in connector.methods
