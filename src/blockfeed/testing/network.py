"""InMemoryNetwork: a :class:`~blockfeed.rpc.connector.Connector` whose endpoints are
:class:`~blockfeed.testing.ScriptedNode` objects, with no socket anywhere.

``ws://node-a.test/`` and ``http://node-a.test/`` resolve to the node named ``node-a``. The
clients keep the connector contract exactly as the real ones do, because they parse what the
node sends with the same code (:mod:`blockfeed.rpc.jsonrpc`):

* refused, reset, closed, timed out, HTTP 429/5xx: :class:`RpcTransportError` (``status`` and
  ``retry_after_s`` set when the node sent them);
* a JSON-RPC error answer: :class:`RpcServerError` (in place inside a batch);
* an HTTP answer that is not JSON-RPC: :class:`MalformedFrame`; a malformed frame on a socket
  is dropped and reported to ``SocketOptions.on_malformed``; a frame over
  ``max_frame_bytes`` closes the socket (as websockets does with 1009);
* keepalive: with ``ping_interval_s`` set, a ping whose pong does not come within
  ``ping_timeout_s`` (a blackholed socket, a slow one) closes the socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from blockfeed.errors import ConfigError, MalformedFrame, RpcServerError, RpcTransportError
from blockfeed.rpc import jsonrpc
from blockfeed.rpc.connector import SocketOptions
from blockfeed.testing.node import PONG, ScriptedNode, ServerSession

DEFAULT_CALL_TIMEOUT_S = 5.0
"""A socket call's deadline when the caller gives none (as ``WsRpc``)."""
HOST_SUFFIX = ".test"
MAX_PENDING_NOTIFICATIONS = 1024
"""Per subscription; beyond it the oldest are dropped (as ``WsRpc``)."""


class InMemoryNetwork:
    """Where in-memory endpoints live: add nodes, then hand the network to the feed as its
    ``connector``. Also counts what was asked of it (``sockets_opened``, ``http_clients``)."""

    def __init__(self, *nodes: ScriptedNode) -> None:
        self._nodes: dict[str, ScriptedNode] = {}
        self.sockets_opened = 0
        self.http_clients = 0
        for node in nodes:
            self.add(node)

    def add(self, node: ScriptedNode) -> ScriptedNode:
        """Make ``node`` reachable as ``ws://NAME.test/`` and ``http://NAME.test/``."""
        if node.name in self._nodes:
            raise ValueError(f"a node named {node.name!r} is already on this network")
        self._nodes[node.name] = node
        return node

    def node_for(self, url: str) -> ScriptedNode:
        """The node ``url`` names (``RpcTransportError`` when there is none, as a DNS failure)."""
        try:
            host = urlsplit(url).hostname or ""
        except ValueError:
            host = ""
        name = host[: -len(HOST_SUFFIX)] if host.endswith(HOST_SUFFIX) else ""
        node = self._nodes.get(name)
        if node is None:
            raise RpcTransportError(f"cannot resolve {host or 'the host'}: no such in-memory node")
        return node

    # -- Connector -----------------------------------------------------------------------------

    def http(self, url: str, *, timeout_s: float) -> MemoryHttp:
        """An HTTP client for ``url`` (nothing is sent until the first call)."""
        _check_url(url, ("http", "https"))
        self.http_clients += 1
        return MemoryHttp(self, url, timeout_s=timeout_s)

    async def websocket(self, url: str, options: SocketOptions) -> MemorySocket:
        """Open an in-memory socket to ``url``'s node (``RpcTransportError`` when refused)."""
        _check_url(url, ("ws", "wss"))
        node = self.node_for(url)
        self.sockets_opened += 1
        socket = MemorySocket(url, options)
        socket._attach(await node.open_socket(socket, options.open_timeout_s))
        return socket


def _check_url(url: str, schemes: tuple[str, ...]) -> None:
    try:
        ok = urlsplit(url).scheme in schemes and bool(urlsplit(url).hostname)
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(f"not a {'/'.join(schemes)} endpoint URL: {url!r}")


class MemoryHttp:
    """The HTTP side: every call is one POST body handed to the node, parsed like ``HttpRpc``."""

    def __init__(self, network: InMemoryNetwork, url: str, *, timeout_s: float) -> None:
        if not timeout_s > 0:
            raise ConfigError("timeout_s must be positive")
        self._network = network
        self._url = url
        self._timeout_s = timeout_s
        self._ids = jsonrpc.RequestIds()
        self.closed = False

    async def call(self, method: str, params: jsonrpc.Params = None, *,
                   timeout_s: float | None = None) -> Any:
        """One request; the node's error raises ``RpcServerError``."""
        request_id = self._ids.next()
        body = await self._post(jsonrpc.encode_request(request_id, method, params), timeout_s)
        response = jsonrpc.parse_response(body)
        if response.id is not None and response.id != request_id:
            raise MalformedFrame("response id does not match the request id")
        return response.unwrap()

    async def batch(self, calls: Sequence[jsonrpc.Call], *,
                    timeout_s: float | None = None) -> list[Any | RpcServerError]:
        """``calls`` as one batch; per-call errors in place."""
        if not calls:
            return []
        ids = [self._ids.next() for _ in calls]
        payload = [jsonrpc.encode_request(rid, m, p) for rid, (m, p) in zip(ids, calls,
                                                                             strict=True)]
        return jsonrpc.match_batch(await self._post(payload, timeout_s), ids)

    async def _post(self, payload: Any, timeout_s: float | None) -> Any:
        if self.closed:
            raise RpcTransportError(f"HTTP client for {self._url} is closed")
        deadline_s = self._timeout_s if timeout_s is None else timeout_s
        node = self._network.node_for(self._url)
        try:
            async with asyncio.timeout(deadline_s):
                text = await node.serve_http(jsonrpc.dumps(payload))
        except TimeoutError:
            raise RpcTransportError(
                f"HTTP request to {node.http_url} timed out after {deadline_s:g} s") from None
        return jsonrpc.decode_json(text)

    async def aclose(self) -> None:
        """Close the client (later calls fail)."""
        self.closed = True


class MemorySubscription:
    """Raw notification results of one subscription; ends with ``RpcTransportError`` when the
    socket dies (after what was buffered), ``StopAsyncIteration`` after :meth:`aclose`."""

    def __init__(self, socket: MemorySocket, subscription_id: str, *, notification: str,
                 unsubscribe: str | None) -> None:
        self.id = subscription_id
        self.notification = notification
        self.dropped = 0
        self._socket = socket
        self._unsubscribe = unsubscribe
        self._queue: list[Any] = []
        self._wake = asyncio.Event()
        self._failure: str | None = None
        self._closed = False

    def _push(self, result: Any) -> None:
        if self._closed:
            return
        if len(self._queue) >= MAX_PENDING_NOTIFICATIONS:
            self._queue.pop(0)
            self.dropped += 1
        self._queue.append(result)
        self._wake.set()

    def _fail(self, message: str) -> None:
        if self._failure is None:
            self._failure = message
        self._wake.set()

    def __aiter__(self) -> MemorySubscription:
        return self

    async def __anext__(self) -> Any:
        while True:
            if self._queue:
                return self._queue.pop(0)
            if self._closed:
                raise StopAsyncIteration
            if self._failure is not None:
                raise RpcTransportError(self._failure)
            self._wake.clear()
            await self._wake.wait()

    async def aclose(self) -> None:
        """Stop the iterator and unsubscribe (best effort)."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._socket._subscriptions.pop(self.id, None)
        if self._unsubscribe is not None and not self._socket.closed:
            try:
                await self._socket.call(self._unsubscribe, [self.id], timeout_s=1.0)
            except (RpcTransportError, RpcServerError, MalformedFrame):
                pass


class MemorySocket:
    """The client side of one in-memory WebSocket (what ``WsRpc`` is on the network)."""

    def __init__(self, url: str, options: SocketOptions) -> None:
        self._url = url
        self._options = options
        self._session: ServerSession | None = None
        self._ids = jsonrpc.RequestIds()
        self._pending: dict[Any, asyncio.Future[Any]] = {}
        self._subscribing: dict[Any, tuple[str, str | None]] = {}
        self._subscriptions: dict[str, MemorySubscription] = {}
        self._pong: asyncio.Future[None] | None = None
        self._failure: str | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self.malformed_frames = 0

    def _attach(self, session: ServerSession) -> None:
        self._session = session
        if self._options.ping_interval_s and not session.closed:
            self._keepalive = asyncio.get_running_loop().create_task(
                self._keepalive_loop(), name="scripted-ws-keepalive")

    @property
    def closed(self) -> bool:
        """True once the socket is closed or lost."""
        return self._failure is not None

    # -- requests ------------------------------------------------------------------------------

    async def call(self, method: str, params: jsonrpc.Params = None, *,
                   timeout_s: float | None = DEFAULT_CALL_TIMEOUT_S) -> Any:
        """One request over the socket; the node's error raises ``RpcServerError``."""
        request_id = self._ids.next()
        future = self._send([request_id], jsonrpc.encode_request(request_id, method, params))
        response: jsonrpc.Response = await self._wait(future, [request_id], timeout_s)
        return response.unwrap()

    async def batch(self, calls: Sequence[jsonrpc.Call], *,
                    timeout_s: float | None = DEFAULT_CALL_TIMEOUT_S) -> list[Any | RpcServerError]:
        """``calls`` as one batch frame; per-call errors in place."""
        if not calls:
            return []
        ids = [self._ids.next() for _ in calls]
        payload = [jsonrpc.encode_request(rid, m, p) for rid, (m, p) in zip(ids, calls,
                                                                             strict=True)]
        futures = [self._register(rid) for rid in ids]
        self._deliver(payload)
        responses = await self._wait(asyncio.gather(*futures), ids, timeout_s)
        return [r.error if r.error is not None else r.result for r in responses]

    async def subscribe(self, method: str, params: jsonrpc.Params = None, *, notification: str,
                        unsubscribe: str | None = None,
                        timeout_s: float | None = DEFAULT_CALL_TIMEOUT_S,
                        ) -> AsyncIterator[Any]:
        """Subscribe; returns the iterator of raw notification results."""
        request_id = self._ids.next()
        self._subscribing[request_id] = (notification, unsubscribe)
        future = self._send([request_id], jsonrpc.encode_request(request_id, method, params))
        subscription: MemorySubscription = await self._wait(future, [request_id], timeout_s)
        return subscription

    async def close(self) -> None:
        """Close the socket; pending calls and subscriptions raise ``RpcTransportError``."""
        if self._session is not None:
            self._session.client_closed()
        self._lost("closed by client")

    def _register(self, request_id: Any) -> asyncio.Future[Any]:
        if self._failure is not None:
            raise RpcTransportError(self._failure)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._pending[request_id] = future
        return future

    def _send(self, ids: list[Any], payload: Any) -> asyncio.Future[Any]:
        future = self._register(ids[0])
        self._deliver(payload)
        return future

    def _deliver(self, payload: Any) -> None:
        assert self._session is not None
        self._session.receive(jsonrpc.dumps(payload))

    async def _wait(self, awaitable: Any, ids: list[Any], timeout_s: float | None) -> Any:
        try:
            return await asyncio.wait_for(awaitable, timeout_s)
        except TimeoutError:
            for rid in ids:
                self._pending.pop(rid, None)
                self._subscribing.pop(rid, None)
            raise RpcTransportError(
                f"no response from {self._url} within {timeout_s:g} s") from None

    # -- from the node -------------------------------------------------------------------------

    def _receive(self, item: object) -> None:
        if self._failure is not None:
            return
        if item is PONG:
            if self._pong is not None and not self._pong.done():
                self._pong.set_result(None)
            return
        assert isinstance(item, str)
        if len(item.encode("utf-8", "surrogateescape")) > self._options.max_frame_bytes:
            self._malformed(f"frame larger than {self._options.max_frame_bytes} bytes")
            if self._session is not None:
                self._session.client_closed()
            self._lost(f"frame larger than {self._options.max_frame_bytes} bytes (closed "
                       "with 1009)")
            return
        try:
            items = jsonrpc.parse_frame(jsonrpc.decode_json(item))
        except MalformedFrame as exc:
            self._malformed(str(exc))
            return
        for entry in items:
            if isinstance(entry, jsonrpc.Notification):
                subscription = self._subscriptions.get(entry.subscription)
                if subscription is None:
                    continue  # an id nobody holds (WsRpc buffers it briefly, then forgets)
                if entry.method != subscription.notification:
                    self._malformed(f"notification {entry.method!r} for a "
                                    f"{subscription.notification!r} subscription")
                    continue
                subscription._push(entry.result)
            else:
                self._on_response(entry)

    def _on_response(self, response: jsonrpc.Response) -> None:
        if response.id is None:
            self._malformed(f"error response without an id ({response.error})")
            return
        future = self._pending.pop(response.id, None)
        subscribing = self._subscribing.pop(response.id, None)
        if future is None or future.done():
            return
        if subscribing is None:
            future.set_result(response)
        elif response.error is not None:
            future.set_exception(response.error)
        else:
            try:
                subscription_id = jsonrpc.parse_subscription_id(response.result)
            except MalformedFrame as exc:
                self._malformed(str(exc))
                future.set_exception(exc)
                return
            notification, unsubscribe = subscribing
            subscription = MemorySubscription(self, subscription_id, notification=notification,
                                              unsubscribe=unsubscribe)
            self._subscriptions[subscription_id] = subscription
            future.set_result(subscription)

    def _malformed(self, reason: str) -> None:
        self.malformed_frames += 1
        hook = self._options.on_malformed
        if hook is not None:
            try:
                hook(reason)
            except Exception:  # a broken hook must not break the socket
                pass

    def _lost(self, reason: str) -> None:
        if self._failure is not None:
            return
        self._failure = f"socket to {self._url}: {reason}"
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(RpcTransportError(self._failure))
        subscriptions, self._subscriptions = self._subscriptions, {}
        for subscription in subscriptions.values():
            subscription._fail(self._failure)
        if self._keepalive is not None and self._keepalive is not asyncio.current_task():
            self._keepalive.cancel()

    async def _keepalive_loop(self) -> None:
        interval_s = self._options.ping_interval_s or 0.0
        timeout_s = self._options.ping_timeout_s
        while self._failure is None and self._session is not None:
            await asyncio.sleep(interval_s)
            if self._failure is not None:
                return
            self._pong = asyncio.get_running_loop().create_future()
            self._session.receive(PONG)
            try:
                await asyncio.wait_for(self._pong, timeout_s)
            except TimeoutError:
                self._session.client_closed()
                self._lost("keepalive ping timed out")
                return
