"""The transport seam: where the feed gets its RPC clients from.

The feed never builds a client itself; it asks a :class:`Connector`. :class:`NetworkConnector`
(the default) opens real sockets (``WsRpc``, ``HttpRpc``); ``blockfeed.testing`` provides an
in-memory one whose scripted nodes answer the same calls and play every fault class without a
socket, so the feed can run under a fake clock.

The contract a connector's clients keep (the feed relies on it):

* a transport failure (refused, reset, timed out, closed) raises :class:`RpcTransportError`,
  carrying ``status`` (HTTP status) and ``retry_after_s`` when the node sent them;
* a JSON-RPC error answer raises :class:`RpcServerError` (``code``, ``message``); inside a
  ``batch`` it is returned in place of that call's result instead;
* an answer that is not JSON-RPC raises :class:`MalformedFrame`; a malformed *notification* on
  a socket is dropped and reported to ``SocketOptions.on_malformed``;
* ``subscribe`` returns an async iterator of raw notification results that ends by raising
  :class:`RpcTransportError` when the socket closes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from blockfeed.rpc.http import HttpRpc
from blockfeed.rpc.jsonrpc import Params
from blockfeed.rpc.methods import RpcCaller
from blockfeed.rpc.ws import WsRpc


@dataclass(frozen=True)
class SocketOptions:
    """How the feed wants a socket opened (every value already scaled to the block time)."""

    open_timeout_s: float
    ping_interval_s: float | None
    ping_timeout_s: float | None
    close_timeout_s: float
    max_frame_bytes: int
    on_malformed: Callable[[str], None] | None = None


class RpcClient(RpcCaller, Protocol):
    """An HTTP-side client: requests and batches, closed when the feed stops."""

    async def aclose(self) -> None: ...


class SocketClient(RpcCaller, Protocol):
    """One open WebSocket: requests, batches and subscriptions on a single connection."""

    @property
    def closed(self) -> bool: ...

    async def subscribe(
        self,
        method: str,
        params: Params = None,
        *,
        notification: str,
        unsubscribe: str | None = None,
        timeout_s: float | None = ...,
    ) -> AsyncIterator[Any]: ...

    async def close(self) -> None: ...


class Connector(Protocol):
    """Builds the clients for one endpoint's HTTP and WebSocket URLs."""

    def http(self, url: str, *, timeout_s: float) -> RpcClient:
        """A client for ``url`` (nothing is sent until the first call)."""
        ...

    async def websocket(self, url: str, options: SocketOptions) -> SocketClient:
        """Open a socket to ``url``; raises :class:`RpcTransportError` when it cannot."""
        ...


class NetworkConnector:
    """The real network: ``HttpRpc`` over httpx, ``WsRpc`` over websockets."""

    def http(self, url: str, *, timeout_s: float) -> RpcClient:
        return HttpRpc(url, timeout_s=timeout_s)

    async def websocket(self, url: str, options: SocketOptions) -> SocketClient:
        return await WsRpc.connect(
            url,
            open_timeout_s=options.open_timeout_s,
            ping_interval_s=options.ping_interval_s,
            ping_timeout_s=options.ping_timeout_s,
            close_timeout_s=options.close_timeout_s,
            max_frame_bytes=options.max_frame_bytes,
            on_malformed=options.on_malformed,
        )


__all__ = ["Connector", "NetworkConnector", "RpcClient", "SocketClient", "SocketOptions"]
