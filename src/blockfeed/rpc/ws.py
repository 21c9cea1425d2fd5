"""JSON-RPC over one WebSocket: calls, batches and subscriptions sharing a single reader task.

The reader is the only code that receives. It hands each response to the future waiting on its
id and each notification to the subscription it names. Nodes may send a subscription's first
notification *before* its subscribe response, so notifications for an id nobody has claimed yet
wait in a small buffer and are replayed, in order, when the subscription is created.

The reader never crashes on input: a frame that is not JSON-RPC is reported to
``on_malformed(reason)`` and skipped. When the socket closes or fails, for any reason (close
frame, reset, ping timeout, a frame over ``max_frame_bytes`` which makes the library close with
1009), every pending call and every subscription iterator raises :class:`RpcTransportError`;
iterators first hand out what they already buffered.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException
from websockets.frames import CloseCode

from blockfeed.errors import ConfigError, MalformedFrame, RpcServerError, RpcTransportError
from blockfeed.rpc import jsonrpc
from blockfeed.rpc._errors import describe, safe_cause
from blockfeed.rpc.http import install_log_redaction
from blockfeed.util.redact import redact_url

DEFAULT_OPEN_TIMEOUT_S = 5.0
DEFAULT_PING_INTERVAL_S = 10.0
"""Send a ping this often; half-open TCP (fault F3) is found within interval + timeout."""
DEFAULT_PING_TIMEOUT_S = 10.0
DEFAULT_CLOSE_TIMEOUT_S = 2.0
DEFAULT_CALL_TIMEOUT_S = 5.0
DEFAULT_MAX_FRAME_BYTES = 2**20
"""A header notification is about 1 KiB; anything near a MiB is garbage or an attack."""
DEFAULT_MAX_PENDING_NOTIFICATIONS = 1024
"""Per subscription; beyond it the oldest are dropped (and counted in ``Subscription.dropped``)."""
EARLY_NOTIFICATION_BUFFER = 256
"""Notifications for not-yet-known subscription ids kept for replay (oldest dropped first)."""
_ABANDONED_IDS_KEPT = 1024

MalformedHook = Callable[[str], None]

_log = logging.getLogger("blockfeed.rpc.ws")


@dataclass(slots=True)
class _Pending:
    """A request waiting for its response; ``notification`` is set for subscribe requests."""

    future: asyncio.Future[Any]
    notification: str | None = None
    unsubscribe: str | None = None
    max_pending: int = DEFAULT_MAX_PENDING_NOTIFICATIONS


def _mark_retrieved(future: asyncio.Future[Any]) -> None:
    """Keep asyncio quiet about a failure nobody awaits any more (its waiter was cancelled
    just as the socket died); a waiter that is still there gets the exception as usual."""
    if not future.cancelled():
        future.exception()


class Subscription:
    """An async iterator over one subscription's raw notification ``result`` objects.

    Ends with :class:`RpcTransportError` when the socket dies (after the buffered results), and
    with ``StopAsyncIteration`` after :meth:`aclose`.
    """

    def __init__(
        self,
        rpc: WsRpc,
        subscription_id: str,
        *,
        notification: str,
        unsubscribe: str | None,
        max_pending: int,
    ) -> None:
        self.id = subscription_id
        self.notification = notification
        self.dropped = 0
        """Notifications discarded because the consumer fell more than ``max_pending`` behind."""
        self._rpc = rpc
        self._unsubscribe = unsubscribe
        self._queue: deque[Any] = deque(maxlen=max_pending)
        self._wakeup = asyncio.Event()
        self._failure: Callable[[], RpcTransportError] | None = None
        self._closed = False

    def _push(self, result: Any) -> None:
        if self._closed:
            return
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(result)
        self._wakeup.set()

    def _fail(self, failure: Callable[[], RpcTransportError]) -> None:
        if self._failure is None:
            self._failure = failure
        self._wakeup.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        while True:
            if self._queue:
                return self._queue.popleft()
            if self._closed:
                raise StopAsyncIteration
            if self._failure is not None:
                raise self._failure()
            self._wakeup.clear()
            await self._wakeup.wait()

    async def aclose(self, *, timeout_s: float = DEFAULT_CALL_TIMEOUT_S) -> None:
        """Stop iterating and, if the socket is still open, unsubscribe (best effort)."""
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._wakeup.set()
        self._rpc._forget_subscription(self.id)
        if self._unsubscribe and not self._rpc.closed:
            try:
                await self._rpc.call(self._unsubscribe, [self.id], timeout_s=timeout_s)
            except (RpcTransportError, RpcServerError, MalformedFrame) as exc:
                _log.debug("unsubscribe %s failed: %s", self.id, exc)


class WsRpc:
    """A JSON-RPC client on one WebSocket connection. Create with :meth:`connect`."""

    def __init__(
        self,
        connection: ClientConnection,
        url: str,
        *,
        on_malformed: MalformedHook | None,
        max_frame_bytes: int,
    ) -> None:
        self._conn = connection
        self._url = url
        self.redacted_url = redact_url(url)
        """The endpoint as it may appear in logs and errors."""
        self._on_malformed = on_malformed
        self._max_frame_bytes = max_frame_bytes
        self._ids = jsonrpc.RequestIds()
        self._pending: dict[jsonrpc.RequestId, _Pending] = {}
        self._abandoned: deque[jsonrpc.RequestId] = deque(maxlen=_ABANDONED_IDS_KEPT)
        self._subscriptions: dict[str, Subscription] = {}
        self._early: deque[jsonrpc.Notification] = deque(maxlen=EARLY_NOTIFICATION_BUFFER)
        self._failure_message: str | None = None
        self._closing = False
        self.malformed_frames = 0
        """Frames rejected on this connection (also reported to ``on_malformed``)."""
        self._reader = asyncio.get_running_loop().create_task(
            self._read_loop(), name=f"blockfeed-ws-reader {self.redacted_url}"
        )

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        open_timeout_s: float = DEFAULT_OPEN_TIMEOUT_S,
        ping_interval_s: float | None = DEFAULT_PING_INTERVAL_S,
        ping_timeout_s: float | None = DEFAULT_PING_TIMEOUT_S,
        close_timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        on_malformed: MalformedHook | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> WsRpc:
        """Open the socket (handshake bounded by ``open_timeout_s``) and start the reader.

        Raises :class:`ConfigError` for a URL that is not ``ws(s)://``, and
        :class:`RpcTransportError` when the node cannot be reached or refuses the upgrade
        (``status`` is the HTTP status of a refused handshake).
        """
        redacted = redact_url(url)
        install_log_redaction()  # websockets logs the request path (which may hold a key)
        try:
            async with asyncio.timeout(open_timeout_s):
                connection = await connect(
                    url,
                    open_timeout=open_timeout_s,
                    ping_interval=ping_interval_s,
                    ping_timeout=ping_timeout_s,
                    close_timeout=close_timeout_s,
                    max_size=max_frame_bytes,
                    additional_headers=dict(headers) if headers else None,
                )
        except InvalidURI:
            raise ConfigError(f"not a ws(s):// endpoint URL: {redacted}") from None
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise RpcTransportError(
                f"WebSocket upgrade refused by {redacted} (HTTP {status})", status=status
            ) from safe_cause(exc, url)
        except TimeoutError:
            raise RpcTransportError(
                f"WebSocket connect to {redacted} timed out after {open_timeout_s:g} s"
            ) from None
        except (OSError, WebSocketException) as exc:
            raise RpcTransportError(
                f"WebSocket connect to {redacted} failed ({describe(exc, url)})"
            ) from safe_cause(exc, url)
        except ValueError as exc:  # e.g. ssl options that do not fit the URL
            raise ConfigError(f"cannot connect to {redacted}: {describe(exc, url)}") from None
        return cls(connection, url, on_malformed=on_malformed, max_frame_bytes=max_frame_bytes)

    # -- state ---------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called or the socket closed or failed."""
        return self._closing or self._failure_message is not None

    async def wait_closed(self) -> None:
        """Return when the reader has stopped (the socket is closed and everyone was told)."""
        await asyncio.shield(self._reader)

    async def close(self) -> None:
        """Close the socket; pending calls and subscriptions raise RpcTransportError."""
        self._closing = True
        try:
            await self._conn.close()
        except Exception as exc:  # closing must never raise; the reader reports the outcome
            _log.debug("close of %s raised %s", self.redacted_url, type(exc).__name__)
        await self.wait_closed()

    async def __aenter__(self) -> WsRpc:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- requests ------------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        params: jsonrpc.Params = None,
        *,
        timeout_s: float | None = DEFAULT_CALL_TIMEOUT_S,
    ) -> Any:
        """Send one request and return its result (raises the node's error as RpcServerError)."""
        request_id = self._ids.next()
        pending = self._register(request_id)
        await self._send(jsonrpc.encode_request(request_id, method, params), [request_id])
        response: jsonrpc.Response = await self._wait(pending.future, [request_id], timeout_s)
        return response.unwrap()

    async def batch(
        self, calls: Sequence[jsonrpc.Call], *, timeout_s: float | None = DEFAULT_CALL_TIMEOUT_S
    ) -> list[Any | RpcServerError]:
        """Send ``calls`` as one JSON-RPC batch frame; results in order, errors in place."""
        if not calls:
            return []
        request_ids = [self._ids.next() for _ in calls]
        futures = [self._register(rid).future for rid in request_ids]
        payload = [
            jsonrpc.encode_request(rid, method, params)
            for rid, (method, params) in zip(request_ids, calls, strict=True)
        ]
        await self._send(payload, request_ids)
        responses = await self._wait(asyncio.gather(*futures), request_ids, timeout_s)
        return [r.error if r.error is not None else r.result for r in responses]

    async def subscribe(
        self,
        method: str,
        params: jsonrpc.Params = None,
        *,
        notification: str,
        unsubscribe: str | None = None,
        timeout_s: float | None = DEFAULT_CALL_TIMEOUT_S,
        max_pending: int = DEFAULT_MAX_PENDING_NOTIFICATIONS,
    ) -> Subscription:
        """Subscribe and return an iterator of raw ``result`` objects.

        Raises :class:`RpcServerError` when the node refuses (fault F5),
        :class:`MalformedFrame` when its answer is not a subscription id.
        """
        request_id = self._ids.next()
        pending = self._register(
            request_id,
            notification=notification,
            unsubscribe=unsubscribe,
            max_pending=max_pending,
        )
        await self._send(jsonrpc.encode_request(request_id, method, params), [request_id])
        subscription: Subscription = await self._wait(pending.future, [request_id], timeout_s)
        return subscription

    # -- internals -----------------------------------------------------------------------------

    def _transport_error(self) -> RpcTransportError:
        return RpcTransportError(self._failure_message or f"socket to {self.redacted_url} closed")

    def _register(
        self,
        request_id: jsonrpc.RequestId,
        *,
        notification: str | None = None,
        unsubscribe: str | None = None,
        max_pending: int = DEFAULT_MAX_PENDING_NOTIFICATIONS,
    ) -> _Pending:
        if self.closed:
            raise self._transport_error()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_mark_retrieved)
        pending = _Pending(
            future,
            notification=notification,
            unsubscribe=unsubscribe,
            max_pending=max_pending,
        )
        self._pending[request_id] = pending
        return pending

    async def _send(self, payload: Any, request_ids: Sequence[jsonrpc.RequestId]) -> None:
        try:
            await self._conn.send(jsonrpc.dumps(payload))
        except ConnectionClosed:
            for rid in request_ids:
                self._pending.pop(rid, None)
            raise self._transport_error() from None

    async def _wait(
        self, awaitable: Any, request_ids: Sequence[jsonrpc.RequestId], timeout_s: float | None
    ) -> Any:
        try:
            return await asyncio.wait_for(awaitable, timeout_s)
        except TimeoutError:
            for rid in request_ids:
                if self._pending.pop(rid, None) is not None:
                    self._abandoned.append(rid)
            raise RpcTransportError(
                f"no response from {self.redacted_url} within {timeout_s:g} s"
            ) from None

    def _forget_subscription(self, subscription_id: str) -> None:
        self._subscriptions.pop(subscription_id, None)

    def _malformed(self, reason: str) -> None:
        self.malformed_frames += 1
        _log.debug("malformed frame from %s: %s", self.redacted_url, reason)
        if self._on_malformed is not None:
            try:
                self._on_malformed(reason)
            except Exception:  # a broken hook must not stop the reader
                _log.exception("on_malformed hook raised")

    async def _read_loop(self) -> None:
        message = "socket closed"
        try:
            async for frame in self._conn:
                self._handle_frame(frame)
        except ConnectionClosed:
            pass  # described below from the close codes
        except Exception as exc:  # never let the reader die silently
            message = f"reader failed ({describe(exc, self._url)})"
            _log.exception("WebSocket reader for %s failed", self.redacted_url)
        finally:
            message = self._describe_close(message)
            self._failure_message = f"socket to {self.redacted_url}: {message}"
            self._fail_everything()

    def _describe_close(self, default: str) -> str:
        if self._closing:
            return "closed by client"
        sent = self._conn.protocol.close_sent
        rcvd = self._conn.protocol.close_rcvd
        if sent is not None and sent.code == CloseCode.MESSAGE_TOO_BIG:
            self._malformed(f"frame larger than {self._max_frame_bytes} bytes")
            return f"frame larger than {self._max_frame_bytes} bytes (closed with 1009)"
        if sent is not None and sent.code == CloseCode.INTERNAL_ERROR and rcvd is None:
            return "keepalive ping timed out"
        if rcvd is not None:
            return f"closed by the node (code {int(rcvd.code)})"
        if sent is not None:
            return f"closed (code {int(sent.code)})"
        return f"connection lost ({default})"

    def _fail_everything(self) -> None:
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if not entry.future.done():
                entry.future.set_exception(self._transport_error())
        subscriptions, self._subscriptions = self._subscriptions, {}
        for subscription in subscriptions.values():
            subscription._fail(self._transport_error)
        self._early.clear()

    def _handle_frame(self, frame: str | bytes) -> None:
        try:
            items = jsonrpc.parse_frame(jsonrpc.decode_json(frame))
        except MalformedFrame as exc:
            self._malformed(str(exc))
            return
        for item in items:
            if isinstance(item, jsonrpc.Notification):
                self._handle_notification(item)
            else:
                self._handle_response(item)

    def _handle_response(self, response: jsonrpc.Response) -> None:
        if response.id is None:
            self._malformed(f"error response without an id ({response.error})")
            return
        pending = self._pending.pop(response.id, None)
        if pending is None:
            if response.id not in self._abandoned:
                self._malformed("response to an unknown request id")
            return
        if pending.future.done():  # the waiter was cancelled
            return
        if pending.notification is None:
            pending.future.set_result(response)
        elif response.error is not None:
            pending.future.set_exception(response.error)
        else:
            self._start_subscription(pending, response.result)

    def _start_subscription(self, pending: _Pending, result: Any) -> None:
        try:
            subscription_id = jsonrpc.parse_subscription_id(result)
        except MalformedFrame as exc:
            self._malformed(str(exc))
            pending.future.set_exception(exc)
            return
        assert pending.notification is not None
        subscription = Subscription(
            self,
            subscription_id,
            notification=pending.notification,
            unsubscribe=pending.unsubscribe,
            max_pending=pending.max_pending,
        )
        self._subscriptions[subscription_id] = subscription
        early = [n for n in self._early if n.subscription == subscription_id]
        if early:
            self._early = deque(
                (n for n in self._early if n.subscription != subscription_id),
                maxlen=EARLY_NOTIFICATION_BUFFER,
            )
            for notification in early:
                self._handle_notification(notification)
        pending.future.set_result(subscription)

    def _handle_notification(self, notification: jsonrpc.Notification) -> None:
        subscription = self._subscriptions.get(notification.subscription)
        if subscription is None:
            self._early.append(notification)
            return
        if notification.method != subscription.notification:
            self._malformed(
                f"notification {notification.method!r} for a {subscription.notification!r} "
                "subscription"
            )
            return
        subscription._push(notification.result)
