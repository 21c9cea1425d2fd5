"""One accepted TCP connection on the RPC port: HTTP JSON-RPC, or a WebSocket after an upgrade.

Real nodes serve both on one port (9944); so does devnode. HTTP requests are answered one after
another with keep-alive; an ``Upgrade: websocket`` request is handed to :class:`WsSession`.
HTTP-side faults (blackhole with ``http``, ``http_errors``, ``malformed``, ``lie``, ``latency``,
and a down node: nothing, or 502 behind a ``flap`` proxy) are applied here.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from blockfeed.devnode.http import (
    HttpProtocolError,
    HttpRequest,
    encode_response,
    read_body,
    read_request,
    text_response,
)
from blockfeed.devnode.jsonrpc import handle_payload, request_methods
from blockfeed.devnode.malformed import malformed_text
from blockfeed.devnode.wsession import WsSession, reset_transport

if TYPE_CHECKING:
    from blockfeed.devnode.node import DevNode

_log = logging.getLogger("blockfeed.devnode")


class Connection:
    """A client socket the node can drop at any moment (close, restart faults)."""

    def __init__(
        self, node: DevNode, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._node = node
        self._reader = reader
        self._writer = writer
        self.opened_at = node.faults.now()
        self.session: WsSession | None = None
        self.closed = False

    def abort(self, *, reset: bool = False, code: int | None = None) -> None:
        """Drop the socket now (see :meth:`WsSession.abort` for the three ways)."""
        if self.session is not None:
            self.session.abort(reset=reset, code=code)
        elif not self.closed:
            self._node.stats.connections_dropped += 1
            if reset:
                reset_transport(self._writer.transport)
            else:
                self._writer.transport.abort()
        self.closed = True
        self._node.wake_waiters()  # a request hanging on a fault must notice

    async def serve(self) -> None:
        """Answer requests until the peer leaves, a fault drops us, or the socket upgrades."""
        try:
            while not self.closed:
                try:
                    request = await read_request(self._reader)
                    if request is None:
                        return
                    if request.is_websocket_upgrade:
                        self.session = WsSession(
                            self._node,
                            self._reader,
                            self._writer,
                            request,
                            opened_at=self.opened_at,
                        )
                        await self.session.run()
                        return
                    body = await read_body(self._reader, request, self._writer)
                except HttpProtocolError as exc:
                    if self._node.refusing():  # a dead node answers nothing, not even 400
                        return
                    self._writer.write(text_response(exc.status, str(exc)))
                    await self._writer.drain()
                    return
                if not await self._answer(request, body):
                    return
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            return
        finally:
            self.closed = True
            if not self._writer.transport.is_closing():
                self._writer.close()

    async def _answer(self, request: HttpRequest, body: bytes) -> bool:
        """Answer one HTTP request; returns whether to keep the connection open."""
        keep_alive = request.keep_alive
        node = self._node
        if request.method == "POST":
            node.stats.http_requests += 1
            for method in request_methods(body):
                node.stats.count_request("http", method)
        if node.is_down():
            return await self._answer_down(keep_alive)
        if request.method == "OPTIONS":
            self._writer.write(
                encode_response(200, b"", keep_alive=keep_alive, extra_headers={"Allow": "POST"})
            )
            await self._writer.drain()
            return keep_alive
        if request.method != "POST":
            self._writer.write(
                encode_response(
                    405,
                    b"Used HTTP Method is not allowed. POST or OPTIONS is required",
                    content_type="text/plain; charset=utf-8",
                    keep_alive=keep_alive,
                )
            )
            await self._writer.drain()
            return keep_alive
        await node.wait_until(lambda: self.closed or not self._hung())
        if self.closed:
            return False
        errors = [f for f in node.faults.active("http_errors") if not f.options["hang"]]
        if errors:
            status = errors[-1].options["status"]
            retry_after = errors[-1].options["retry_after"]
            headers = None if retry_after is None else {"Retry-After": str(retry_after)}
            self._writer.write(
                encode_response(
                    status,
                    f"devnode: injected HTTP {status}".encode(),
                    content_type="text/plain; charset=utf-8",
                    keep_alive=keep_alive,
                    extra_headers=headers,
                )
            )
            node.stats.http_errors_sent += 1
            await self._writer.drain()
            return keep_alive
        view = node.views["http"]
        answer = handle_payload(
            body, lambda method, params: node.api.call(method, params, view=view, host=None)
        )
        text = answer or ""
        bad = node.malformed_choice("http")
        if bad is not None and answer is not None:
            kind, fault = bad
            text = malformed_text(
                kind,
                text,
                node.fault_rng,
                big_bytes=fault.options["big_bytes"],
                unknown_id=node.new_subscription_id(),
            )
            node.stats.malformed_sent += 1
        delay_s = node.latency_s("http")
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        if self.closed:
            return False
        self._writer.write(encode_response(200, text.encode(), keep_alive=keep_alive))
        await self._writer.drain()
        return keep_alive

    async def _answer_down(self, keep_alive: bool) -> bool:
        """The node is down: a ``flap`` proxy answers 502; otherwise nothing is served."""
        if not self._node.flapping():
            self.abort()
            return False
        self._writer.write(
            encode_response(
                502,
                b"devnode: bad gateway (the node behind this endpoint is down)",
                content_type="text/plain; charset=utf-8",
                keep_alive=keep_alive,
            )
        )
        self._node.stats.down_answers += 1
        await self._writer.drain()
        return keep_alive

    def _hung(self) -> bool:
        """True while an HTTP request on this socket must hang (blackhole, http_errors hang)."""
        faults = self._node.faults
        if any(f.options["hang"] for f in faults.active("http_errors")):
            return True
        return any(
            fault.options["http"] and (fault.options["new"] or self.opened_at < fault.started_at)
            for fault in faults.active("blackhole")
        )
