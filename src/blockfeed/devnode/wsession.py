"""One WebSocket connection: websockets' sans-I/O protocol driven by two small tasks.

Using the sans-I/O ``ServerProtocol`` (not the asyncio server) gives devnode byte-level control
that fault injection needs: it can stop reading so pings go unanswered (blackhole), delay every
outgoing frame (latency), slip garbage between frames (malformed), and end a socket with a close
frame, a bare FIN or a TCP reset.

Outgoing frames go through one FIFO of ``(due_time, bytes)`` so a delay never reorders them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from websockets.frames import DATA_OPCODES, Frame
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from blockfeed.devnode.api import FINALIZED, NOTIFICATION_METHODS
from blockfeed.devnode.http import HttpRequest
from blockfeed.devnode.malformed import malformed_text
from blockfeed.devnode.shared import answer_ws_message, disordered, head_number

if TYPE_CHECKING:
    from blockfeed.devnode.node import DevNode

MAX_INCOMING_MESSAGE_BYTES = 10 * 1024 * 1024
MAX_PENDING_OUT_BYTES = 64 * 1024 * 1024
"""A client that lets this much pile up is dropped, as a node drops a slow subscriber."""
CLOSE_FLUSH_TIMEOUT_S = 1.0
FLAP_CLOSE_CODE = 1001
"""Close code of a WebSocket that a ``flap`` proxy closes right after its handshake."""
READ_CHUNK_BYTES = 65536

_log = logging.getLogger("blockfeed.devnode")


def reset_transport(transport: asyncio.BaseTransport) -> None:
    """Close with a TCP reset (RST) rather than a FIN: SO_LINGER 0, then abort."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    if isinstance(transport, asyncio.Transport):
        transport.abort()
    else:
        transport.close()


@dataclass(slots=True)
class Subscription:
    """One subscription on one socket."""

    id: str
    kind: str
    created_at: float
    held: str | None = None
    """A notification held back by the ``disorder`` fault, sent after the next one."""


class WsSession:
    """Serves JSON-RPC and subscriptions on one upgraded connection."""

    def __init__(
        self,
        node: DevNode,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: HttpRequest,
        *,
        opened_at: float,
    ) -> None:
        self._node = node
        self._reader = reader
        self._writer = writer
        self._request = request
        self.opened_at = opened_at
        self._proto = ServerProtocol(max_size=MAX_INCOMING_MESSAGE_BYTES)
        self._out: deque[tuple[float, bytes]] = deque()
        self._out_bytes = 0
        self._wake = asyncio.Event()
        self._sent = asyncio.Event()
        """Set by the writer after each chunk it handles (for flushing before close)."""
        self._subscriptions: dict[str, Subscription] = {}
        self._pending_initial: list[Subscription] = []
        self._fragments: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        self.closed = False

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Handshake, then serve until the socket ends (by either side or by a fault)."""
        self._proto.receive_data(self._request.raw_head)
        events = self._proto.events_received()
        if not events or not isinstance(events[0], Request):
            self._flush()
            await self._drain_and_close()
            return
        response = self._proto.accept(events[0])
        await self._node.wait_until(lambda: self.closed or not self._blackholed())
        if self.closed:
            return
        self._proto.send_response(response)
        writer_task = asyncio.create_task(self._write_loop(), name="devnode-ws-writer")
        self._flush()
        try:
            if response.status_code != 101:
                return
            self._node.stats.ws_connections += 1
            flap = [f for f in self._node.faults.active("close") if f.options["flap"]]
            if flap:
                self.abort(reset=flap[-1].options["reset"], code=flap[-1].options["code"])
                return
            if self._node.is_down():  # restart/reset: a proxy (flap) or a dying node
                flapping = self._node.flapping()
                if flapping:
                    self._node.stats.down_answers += 1
                self.abort(code=FLAP_CLOSE_CODE if flapping else None)
                return
            await self._read_loop()
        finally:
            self._drop_subscriptions()
            await self._finish(writer_task)

    async def _finish(self, writer_task: asyncio.Task[None]) -> None:
        if not self.closed:
            # let the close frame / handshake answer go out, briefly
            try:
                await asyncio.wait_for(self._wait_out_empty(), CLOSE_FLUSH_TIMEOUT_S)
            except TimeoutError:
                pass
        self.closed = True
        writer_task.cancel()
        try:
            await writer_task
        except asyncio.CancelledError:
            pass
        if not self._writer.transport.is_closing():
            self._writer.close()

    async def _wait_out_empty(self) -> None:
        while self._out and not self.closed and not self._writer.transport.is_closing():
            self._sent.clear()
            await self._sent.wait()

    async def _drain_and_close(self) -> None:
        for chunk in self._proto.data_to_send():
            if chunk:
                self._writer.write(chunk)
        try:
            await asyncio.wait_for(self._writer.drain(), CLOSE_FLUSH_TIMEOUT_S)
        except (TimeoutError, ConnectionError):
            pass
        self.closed = True
        self._writer.close()

    def abort(self, *, reset: bool = False, code: int | None = None) -> None:
        """End the socket now: TCP reset, close frame ``code``, or (neither) a bare FIN."""
        if self.closed:
            return
        self.closed = True
        self._node.stats.connections_dropped += 1
        self._node.wake_waiters()
        self._drop_subscriptions()
        transport = self._writer.transport
        if reset:
            reset_transport(transport)
            return
        if code is not None and self._proto.state is State.OPEN:
            try:
                self._proto.send_close(code, "devnode fault: close")
            except Exception:  # an unsendable code: fall back to dropping the socket
                transport.abort()
                return
            queued = [chunk for _, chunk in self._out]  # whole frames, never half-written
            self._out.clear()
            self._out_bytes = 0
            for chunk in [*queued, *self._proto.data_to_send()]:
                if chunk:
                    transport.write(chunk)
            transport.close()
            self._loop.call_later(CLOSE_FLUSH_TIMEOUT_S, transport.abort)
            return
        transport.abort()

    # -- reading ---------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        while not self.closed:
            try:
                data = await self._reader.read(READ_CHUNK_BYTES)
            except (ConnectionError, OSError):
                data = b""
            if data and self._blackholed():
                await self._node.wait_until(lambda: self.closed or not self._blackholed())
            if self.closed:
                return
            if not data:
                self._proto.receive_eof()
                self._flush()
                return
            self._proto.receive_data(data)
            for event in self._proto.events_received():
                if isinstance(event, Frame) and event.opcode in DATA_OPCODES:
                    self._fragments.append(bytes(event.data))
                    if event.fin:
                        message = b"".join(self._fragments)
                        self._fragments.clear()
                        self._on_message(message)
            self._flush()
            if self._proto.state is State.CLOSED or self._proto.close_expected():
                return

    def _on_message(self, message: bytes) -> None:
        answer = answer_ws_message(self._node, self, message)
        if answer is not None:
            self._send_text(answer)
        pending, self._pending_initial = self._pending_initial, []
        for subscription in pending:
            if subscription.id in self._subscriptions:
                self._notify(subscription, head_number(self._node.chain, subscription.kind))

    # -- subscriptions (SubscriptionHost) --------------------------------------------------------

    def subscribe(self, kind: str) -> str:
        """Create a subscription; its first header is sent right after the answer."""
        subscription = Subscription(
            id=self._node.new_subscription_id(), kind=kind, created_at=self._node.faults.now()
        )
        self._subscriptions[subscription.id] = subscription
        self._pending_initial.append(subscription)
        self._node.stats.subscriptions += 1
        self._node.stats.active_subscriptions += 1
        return subscription.id

    def unsubscribe(self, kind: str, subscription_id: str) -> bool:
        """Drop a subscription of ``kind``; False when unknown on this socket."""
        subscription = self._subscriptions.get(subscription_id)
        if subscription is None or subscription.kind != kind:
            return False
        del self._subscriptions[subscription_id]
        self._node.stats.active_subscriptions -= 1
        return True

    def _drop_subscriptions(self) -> None:
        self._node.stats.active_subscriptions -= len(self._subscriptions)
        self._subscriptions.clear()

    def on_head(self, kind: str, number: int) -> None:
        """The chain moved: notify this socket's subscriptions of ``kind``."""
        if self.closed:
            return
        for subscription in list(self._subscriptions.values()):
            if subscription.kind == kind:
                self._notify(subscription, number)

    def _notify(self, subscription: Subscription, number: int) -> None:
        node = self._node
        if self._blackholed() or self._stalled(subscription):
            node.stats.notifications_dropped += 1
            return
        view = node.views["ws"]
        if subscription.kind == FINALIZED:
            number = max(node.chain.start_block, number - view.lag_blocks())
        text = node.notification_text(
            NOTIFICATION_METHODS[subscription.kind], subscription.id, view, number
        )
        action = node.disorder_action()
        if action == "skip":
            node.stats.notifications_dropped += 1
        for frame in disordered(action, text, subscription):
            self._send_text(frame, notification=True)

    def _stalled(self, subscription: Subscription) -> bool:
        return any(
            fault.options["new"] or subscription.created_at < fault.started_at
            for fault in self._node.faults.active("sub_stall")
        )

    def _blackholed(self) -> bool:
        return any(
            fault.options["new"] or self.opened_at < fault.started_at
            for fault in self._node.faults.active("blackhole")
        )

    # -- writing ---------------------------------------------------------------------------------

    def _send_text(self, text: str, *, notification: bool = False) -> None:
        if self.closed or self._proto.state is not State.OPEN:
            return
        node = self._node
        bad = node.malformed_choice("ws")
        if bad is not None:
            kind, fault = bad
            garbage = malformed_text(
                kind,
                text,
                node.fault_rng,
                big_bytes=fault.options["big_bytes"],
                unknown_id=node.new_subscription_id(),
            )
            self._proto.send_text(garbage.encode("utf-8", "surrogateescape"))
            node.stats.malformed_sent += 1
            if fault.options["replace"]:
                self._flush()
                return
        self._proto.send_text(text.encode())
        if notification:
            node.stats.notifications += 1
        self._flush()

    def _flush(self) -> None:
        chunks = self._proto.data_to_send()
        if not chunks:
            return
        due = self._loop.time() + self._node.latency_s("ws")
        for chunk in chunks:
            self._out.append((due, chunk))
            self._out_bytes += len(chunk)
        self._wake.set()
        if self._out_bytes > MAX_PENDING_OUT_BYTES:
            _log.warning("devnode: dropping a WebSocket client that does not read")
            self.abort()

    async def _write_loop(self) -> None:
        transport = self._writer.transport
        while True:
            if not self._out:
                self._wake.clear()
                await self._wake.wait()
                continue
            due, chunk = self._out[0]
            wait_s = due - self._loop.time()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
                continue
            if self._blackholed():
                await self._node.wait_until(lambda: self.closed or not self._blackholed())
                continue
            self._out.popleft()
            self._out_bytes -= len(chunk)
            self._sent.set()
            if transport.is_closing():
                continue
            if not chunk:  # websockets asks to half-close after the closing handshake
                transport.close()
                continue
            transport.write(chunk)
            try:
                await self._writer.drain()
            except (ConnectionError, OSError):
                return
