"""ScriptedNode: devnode's chain, RPC methods and fault injector, served without sockets.

The socket devnode (``blockfeed.devnode.DevNode``) wires three sans-I/O parts to real ports:
``Chain`` (parent-linked headers with finality), ``NodeApi`` (the RPC methods) and
``FaultInjector`` (which misbehaviours hold, until when). A ScriptedNode wires the same three to
in-memory sockets (:mod:`blockfeed.testing.network`), on the running loop's clock, so under a
:class:`~blockfeed.testing.VirtualClock` a whole fault script plays in milliseconds and the same
way every time. Faults have the same names and options as devnode's::

    node.faults.inject("close")                       # F1
    node.faults.inject("restart", seconds=5)          # F2 (flap=True: a proxy answers 502)
    node.faults.inject("blackhole", seconds=5)        # F3 half-open
    node.faults.inject("sub_stall", seconds=5)        # F4
    node.faults.inject("sub_error", seconds=5)        # F5
    node.faults.inject("http_errors", status=429, retry_after=2)   # F6 (rpc_errors too)
    node.faults.inject("finality_halt", seconds=30)   # F7
    node.faults.inject("malformed", rate=0.5)         # F8
    node.faults.inject("disorder", rate=0.5)          # F9
    node.faults.inject("lie", mode="parent")          # F10 (mode="lag" for a lagging head)
    node.faults.inject("latency", delay_s=0.3)        # F11
    node.faults.inject("reset")                       # F13 (a new chain under the endpoint)

F14 (a wrong declared block time) is a node option: ``ScriptedNode(block_time_s=0.2,
slot_duration_s=12)`` declares 12 s slots while producing a block every 0.2 s.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import string
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from blockfeed.devnode.api import FINALIZED, NEW_HEADS, NOTIFICATION_METHODS, NodeApi
from blockfeed.devnode.chain import Chain, Tick
from blockfeed.devnode.config import DevNodeConfig
from blockfeed.devnode.contents import DevNodeContents
from blockfeed.devnode.faults import ActiveFault, FaultInjector
from blockfeed.devnode.jsonrpc import handle_payload, request_methods
from blockfeed.devnode.malformed import malformed_text
from blockfeed.devnode.runtime import Runtime
from blockfeed.devnode.shared import (
    FaultReadings,
    Pulse,
    answer_ws_message,
    disordered,
    head_number,
    package_version,
    reset_seed,
)
from blockfeed.devnode.stats import DevNodeStats
from blockfeed.devnode.view import ChainView, LieBook
from blockfeed.errors import RpcTransportError

if TYPE_CHECKING:
    from blockfeed.testing.network import MemorySocket

SUBSCRIPTION_ID_LENGTH = 16
FLAP_CLOSE_CODE = 1001
DEFAULT_WAIT_TIMEOUT_S = 60.0
"""Virtual seconds :meth:`ScriptedNode.wait_for_finalized` waits by default."""

FINALIZED_AT_KEPT = 100_000
PONG = object()
"""What a node sends back for a keepalive ping (through the same queue as every frame)."""


def _loop_time() -> float:
    """The running loop's clock (virtual under a VirtualClock); real time outside a loop."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


@dataclass(slots=True)
class _Subscription:
    id: str
    kind: str
    order: int
    """When it was created, on the node's event counter (``ScriptedNode.next_order``)."""
    held: str | None = None
    """A notification held back by the ``disorder`` fault (reorder), sent after the next one."""


class ServerSession:
    """The node's side of one in-memory WebSocket: requests in, answers and notifications out.

    Frames leave through one FIFO, each due at send time + the ``latency`` fault, and wait out a
    ``blackhole``; requests are read through another FIFO that a blackhole stops too.
    """

    def __init__(self, node: ScriptedNode, client: MemorySocket) -> None:
        self._node = node
        self._client = client
        self.opened_order = node.next_order()
        self.closed = False
        self._subscriptions: dict[str, _Subscription] = {}
        self._pending_initial: list[_Subscription] = []
        self._out: deque[tuple[float, object]] = deque()
        self._in: deque[object] = deque()
        self._out_wake = asyncio.Event()
        self._in_wake = asyncio.Event()
        self._tasks = [
            asyncio.get_running_loop().create_task(self._write_loop(), name="scripted-ws-out"),
            asyncio.get_running_loop().create_task(self._read_loop(), name="scripted-ws-in"),
        ]

    # -- from the client ---------------------------------------------------------------------

    def receive(self, item: object) -> None:
        """A text frame from the client, or :data:`PONG` standing for a keepalive ping."""
        if not self.closed:
            self._in.append(item)
            self._in_wake.set()

    def client_closed(self) -> None:
        """The client closed the socket."""
        self._end()

    # -- lifecycle -----------------------------------------------------------------------------

    def abort(self, *, reset: bool = False, code: int | None = None) -> None:
        """End the socket now as a fault does: TCP reset, close frame ``code``, or a bare FIN."""
        if self.closed:
            return
        self._node.stats.connections_dropped += 1
        if reset:
            reason = "connection lost (connection reset by peer)"
        elif code is not None:
            reason = f"closed by the node (code {code})"
        else:
            reason = "connection lost (socket closed)"
        self._end()
        self._client._lost(reason)

    def _end(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._node.stats.active_subscriptions -= len(self._subscriptions)
        self._subscriptions.clear()
        self._node._sessions.pop(self, None)
        self._node.stats.open_connections -= 1
        for task in self._tasks:
            task.cancel()
        self._node.wake_waiters()

    # -- reading -------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        node = self._node
        while not self.closed:
            if not self._in:
                self._in_wake.clear()
                await self._in_wake.wait()
                continue
            if self.blackholed():
                await node.wait_until(lambda: self.closed or not self.blackholed())
                continue
            item = self._in.popleft()
            if item is PONG:  # a ping: answer it like any frame
                self._queue(PONG)
                continue
            assert isinstance(item, str)
            self._on_message(item)

    def _on_message(self, message: str) -> None:
        answer = answer_ws_message(self._node, self, message)
        if answer is not None:
            self._send_text(answer)
        pending, self._pending_initial = self._pending_initial, []
        for subscription in pending:
            if subscription.id in self._subscriptions:
                self._notify(subscription, head_number(self._node.chain, subscription.kind))

    # -- subscriptions (devnode's SubscriptionHost) --------------------------------------------

    def subscribe(self, kind: str) -> str:
        """Create a subscription; its first header is sent right after the answer."""
        node = self._node
        subscription = _Subscription(node.new_subscription_id(), kind, node.next_order())
        self._subscriptions[subscription.id] = subscription
        self._pending_initial.append(subscription)
        node.stats.subscriptions += 1
        node.stats.active_subscriptions += 1
        return subscription.id

    def unsubscribe(self, kind: str, subscription_id: str) -> bool:
        """Drop a subscription of ``kind``; False when unknown on this socket."""
        subscription = self._subscriptions.get(subscription_id)
        if subscription is None or subscription.kind != kind:
            return False
        del self._subscriptions[subscription_id]
        self._node.stats.active_subscriptions -= 1
        return True

    def on_head(self, kind: str, number: int) -> None:
        """The chain moved: notify this socket's subscriptions of ``kind``."""
        for subscription in list(self._subscriptions.values()):
            if subscription.kind == kind:
                self._notify(subscription, number)

    def _notify(self, subscription: _Subscription, number: int) -> None:
        node = self._node
        if self.blackholed() or self._stalled(subscription):
            node.stats.notifications_dropped += 1
            return
        view = node.views["ws"]
        if subscription.kind == FINALIZED:
            number = max(node.chain.start_block, number - view.lag_blocks())
        header = view.header(number).to_json()
        text = json.dumps(
            {"jsonrpc": "2.0", "method": NOTIFICATION_METHODS[subscription.kind],
             "params": {"subscription": subscription.id, "result": header}},
            separators=(",", ":"),
        )
        action = node.disorder_action()
        if action == "skip":
            node.stats.notifications_dropped += 1
        for frame in disordered(action, text, subscription):
            self._send_text(frame, notification=True)

    def _stalled(self, subscription: _Subscription) -> bool:
        return any(
            fault.options["new"] or self._node.before(subscription.order, fault)
            for fault in self._node.faults.active("sub_stall")
        )

    def blackholed(self) -> bool:
        """True while a ``blackhole`` fault holds this socket (nothing flows either way)."""
        return any(
            fault.options["new"] or self._node.before(self.opened_order, fault)
            for fault in self._node.faults.active("blackhole")
        )

    # -- writing -------------------------------------------------------------------------------

    def _send_text(self, text: str, *, notification: bool = False) -> None:
        node = self._node
        bad = node.malformed_choice("ws")
        if bad is not None:
            kind, fault = bad
            garbage = malformed_text(kind, text, node.fault_rng, big_bytes=fault.options[
                "big_bytes"], unknown_id=node.new_subscription_id())
            self._queue(garbage)
            node.stats.malformed_sent += 1
            if fault.options["replace"]:
                return
        self._queue(text)
        if notification:
            node.stats.notifications += 1

    def _queue(self, item: object) -> None:
        if self.closed:
            return
        self._out.append((self._node.faults.now() + self._node.latency_s("ws"), item))
        self._out_wake.set()

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.closed:
            if not self._out:
                self._out_wake.clear()
                await self._out_wake.wait()
                continue
            due, item = self._out[0]
            wait_s = due - loop.time()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
                continue
            if self.blackholed():
                await self._node.wait_until(lambda: self.closed or not self.blackholed())
                continue
            self._out.popleft()
            self._client._receive(item)


class ScriptedNode(FaultReadings):
    """A fake Substrate node without sockets: ``ws://NAME.test/`` and ``http://NAME.test/``.

    ``config`` keywords are :class:`~blockfeed.devnode.DevNodeConfig`'s (``block_time_s``,
    ``seed``, ``start_block``, ``finality_lag``, ``finality_jumps``, ``slot_duration_s``,
    ``auto_produce``, ...; host and port mean nothing here). Attach it to an
    :class:`~blockfeed.testing.InMemoryNetwork` and start it (``async with node:``); blocks are
    then produced every ``block_time_s`` on the loop's clock.
    """

    def __init__(self, name: str = "node-a", **config: Any) -> None:
        if not isinstance(name, str) or not name or not all(
            c.isalnum() or c in "-_" for c in name
        ):
            raise ValueError(f"node name must be letters, digits, '-' or '_', got {name!r}")
        self.name = name
        self.config = DevNodeConfig(**config)
        cfg = self.config
        self.contents = None if cfg.contents_fixture is None else DevNodeContents.load(
            cfg.contents_fixture)
        """Recorded block bodies, events and metadata when ``contents_fixture`` is set."""
        self.chain = Chain(
            body_root=None if self.contents is None else self.contents.extrinsics_root,
            seed=cfg.seed, start_block=cfg.start_block, finality_lag=cfg.finality_lag,
            finality_jumps=cfg.finality_jumps)
        self.faults = FaultInjector(clock=_loop_time)
        self.stats = DevNodeStats()
        self.fault_rng = random.Random(f"faults-{cfg.seed}")
        self._ids_rng = random.Random(f"subscription-ids-{cfg.seed}")
        self._lie_book = LieBook()
        self.views = {
            transport: ChainView(self.chain, self.faults, transport, self._lie_book)
            for transport in ("ws", "http")
        }
        self.api = NodeApi(
            runtime=Runtime(tempos=cfg.tempos, runtime_api=cfg.runtime_api,
                            slot_duration_ms=cfg.slot_duration_ms),
            faults=self.faults, stats=self.stats, chain_name=cfg.chain_name,
            version=package_version(), rng=self.fault_rng, contents=self.contents,
        )
        self._sessions: dict[ServerSession, None] = {}
        """Open sockets in the order they opened (a dict: iteration order must not vary)."""
        self._orders = itertools.count()
        self._fault_orders: dict[str, int] = {}
        self._used_ids: set[str] = set()
        self._producer: asyncio.Task[None] | None = None
        self.finalized_at: dict[int, float] = {}
        """Loop time at which each block number was finalized (the most recent
        :data:`FINALIZED_AT_KEPT`): what delivery delays are measured from."""
        self._fault_pulse: Pulse | None = None
        self._chain_pulse: Pulse | None = None
        self._started = False
        self.faults.on_inject(self._on_fault_injected)
        self.faults.on_change(self.wake_waiters)

    @property
    def ws_url(self) -> str:
        """``ws://NAME.test/`` (what an :class:`InMemoryNetwork` resolves to this node)."""
        return f"ws://{self.name}.test/"

    @property
    def http_url(self) -> str:
        """``http://NAME.test/``."""
        return f"http://{self.name}.test/"

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> ScriptedNode:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start producing blocks (unless ``auto_produce=False``)."""
        if self._started:
            raise RuntimeError(f"node {self.name} is already started")
        self._started = True
        if self.config.auto_produce:
            self._producer = asyncio.get_running_loop().create_task(
                self._produce_forever(), name=f"scripted-node-{self.name}")

    async def stop(self) -> None:
        """Stop producing and drop every socket."""
        for session in list(self._sessions):
            session.abort()
        if self._producer is not None:
            self._producer.cancel()
            try:
                await self._producer
            except asyncio.CancelledError:
                pass
            self._producer = None
        self._started = False

    def _ensure_pulses(self) -> tuple[Pulse, Pulse]:
        if self._fault_pulse is None or self._chain_pulse is None:
            self._fault_pulse, self._chain_pulse = Pulse(), Pulse()
        return self._fault_pulse, self._chain_pulse

    # -- chain ---------------------------------------------------------------------------------

    async def _produce_forever(self) -> None:
        block_time_s = self.config.block_time_s
        loop = asyncio.get_running_loop()
        next_at = loop.time() + block_time_s
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            self._tick()
            next_at += block_time_s

    def advance(self, blocks: int = 1) -> Tick:
        """Produce ``blocks`` blocks now; returns the last tick."""
        if blocks < 1:
            raise ValueError("blocks must be >= 1")
        tick = self._tick()
        for _ in range(blocks - 1):
            tick = self._tick()
        return tick

    def _tick(self) -> Tick:
        before = self.chain.finalized_number
        tick = self.chain.tick(finality_halted=self.faults.is_active("finality_halt"))
        self.stats.blocks_produced += 1
        now = self.faults.now()
        for number in range(before + 1, self.chain.finalized_number + 1):
            self.finalized_at[number] = now
        while len(self.finalized_at) > FINALIZED_AT_KEPT:
            del self.finalized_at[next(iter(self.finalized_at))]
        for session in list(self._sessions):
            session.on_head(NEW_HEADS, tick.best)
            if tick.finalized_to is not None:
                session.on_head(FINALIZED, tick.finalized_to)
        self._ensure_pulses()[1].fire()
        return tick

    async def wait_for_finalized(self, number: int,
                                 timeout_s: float = DEFAULT_WAIT_TIMEOUT_S) -> int:
        """Wait until block ``number`` is finalized; ``TimeoutError`` after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.chain.finalized_number < number:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"{self.name}: block {number} not finalized within "
                                   f"{timeout_s:g}s (now {self.chain.finalized_number})")
            await self._ensure_pulses()[1].wait(left)
        return self.chain.finalized_number

    def new_subscription_id(self) -> str:
        """A fresh random-looking id, like jsonrpsee's (seeded: runs repeat)."""
        alphabet = string.ascii_letters + string.digits
        while True:
            candidate = "".join(self._ids_rng.choices(alphabet, k=SUBSCRIPTION_ID_LENGTH))
            if candidate not in self._used_ids:
                self._used_ids.add(candidate)
                return candidate

    # -- faults --------------------------------------------------------------------------------

    def next_order(self) -> int:
        """A number from the node's event counter. Sockets, subscriptions and faults take one
        when they start, so "opened before the fault" holds even at one virtual instant."""
        return next(self._orders)

    def before(self, order: int, fault: ActiveFault) -> bool:
        """True when what took ``order`` existed before ``fault`` was injected."""
        return order < self._fault_orders.get(fault.id, -1)

    def _on_fault_injected(self, fault: ActiveFault) -> None:
        self._fault_orders[fault.id] = self.next_order()
        if fault.kind == "close":
            for session in list(self._sessions):
                session.abort(reset=fault.options["reset"], code=fault.options["code"])
        elif fault.kind == "restart":
            self._drop_all()
        elif fault.kind == "reset":
            self._replace_chain()
            self._drop_all()

    def _drop_all(self) -> None:
        for session in list(self._sessions):
            session.abort()

    def _replace_chain(self) -> None:
        chain = self.chain
        fault = self.faults.active("reset")[-1]
        seed = reset_seed(self.config.seed, chain.generation)
        same_genesis = fault.options["genesis"] == "same"
        chain.replace(seed=seed, genesis_seed=chain.genesis_seed if same_genesis else seed,
                      start_block=fault.options["start_block"])
        self._lie_book.clear()
        self.stats.resets += 1

    def wake_waiters(self) -> None:
        """Make every :meth:`wait_until` re-check now (faults changed, a socket was dropped)."""
        self._ensure_pulses()[0].fire()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, re-checking on every fault change and expiry."""
        while not predicate():
            next_change_s = self.faults.next_change_in_s()
            await self._ensure_pulses()[0].wait(
                None if next_change_s is None else next_change_s + 0.001)

    # -- transports (used by blockfeed.testing.network) ----------------------------------------

    async def open_socket(self, client: MemorySocket, open_timeout_s: float) -> ServerSession:
        """The handshake: refused while down, hung while blackholed, closed at once when a
        ``flap`` proxy (``close``/``restart``/``reset`` with ``flap``) stands in front."""
        self._check_started()
        if self.refusing():
            raise RpcTransportError(f"cannot connect to {self.ws_url}: connection refused")
        try:
            async with asyncio.timeout(open_timeout_s):
                delay_s = self.latency_s("ws")
                if delay_s:
                    await asyncio.sleep(2 * delay_s)  # request and answer
                await self.wait_until(lambda: not any(
                    f.options["new"] for f in self.faults.active("blackhole")))
        except TimeoutError:
            raise RpcTransportError(f"WebSocket connect to {self.ws_url} timed out after "
                                    f"{open_timeout_s:g} s") from None
        if self.refusing():
            raise RpcTransportError(f"cannot connect to {self.ws_url}: connection refused")
        session = ServerSession(self, client)
        self._sessions[session] = None
        self.stats.connections += 1
        self.stats.open_connections += 1
        self.stats.ws_connections += 1
        flap = [f for f in self.faults.active("close") if f.options["flap"]]
        if flap or self.is_down():
            if self.is_down():
                self.stats.down_answers += 1
            code = flap[-1].options["code"] if flap else FLAP_CLOSE_CODE
            asyncio.get_running_loop().call_soon(lambda: session.abort(code=code))
        return session

    def _check_started(self) -> None:
        if not self._started:
            raise RpcTransportError(f"cannot connect to {self.name}.test: connection refused "
                                    "(the node is not started: `async with node:`)")

    async def serve_http(self, body: str) -> str:
        """Answer one HTTP POST body, as devnode's HTTP side does (faults included).

        Raises :class:`RpcTransportError` for what the network would show: refused, 502 behind a
        ``flap`` proxy, an ``http_errors`` status (with ``retry_after_s``). Hangs while a
        blackhole or a hanging ``http_errors`` holds (the caller's timeout decides).
        """
        self._check_started()
        self.stats.connections += 1
        self.stats.http_requests += 1
        for method in request_methods(body):
            self.stats.count_request("http", method)
        if self.is_down():
            if not self.refusing():
                self.stats.down_answers += 1
                raise RpcTransportError(f"HTTP 502 from {self.http_url}", status=502)
            raise RpcTransportError(f"HTTP request to {self.http_url} failed (connection "
                                    "refused)")
        opened = self.next_order()
        await self.wait_until(lambda: not self._http_hung(opened))
        errors = [f for f in self.faults.active("http_errors") if not f.options["hang"]]
        if errors:
            status = errors[-1].options["status"]
            retry_after = errors[-1].options["retry_after"]
            self.stats.http_errors_sent += 1
            raise RpcTransportError(f"HTTP {status} from {self.http_url}", status=status,
                                    retry_after_s=None if retry_after is None else
                                    float(retry_after))
        view = self.views["http"]
        answer = handle_payload(
            body, lambda method, params: self.api.call(method, params, view=view, host=None))
        text = answer or ""
        bad = self.malformed_choice("http")
        if bad is not None and answer is not None:
            kind, fault = bad
            text = malformed_text(kind, text, self.fault_rng,
                                  big_bytes=fault.options["big_bytes"],
                                  unknown_id=self.new_subscription_id())
            self.stats.malformed_sent += 1
        delay_s = self.latency_s("http")
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        return text

    def _http_hung(self, opened: int) -> bool:
        faults = self.faults
        if any(f.options["hang"] for f in faults.active("http_errors")):
            return True
        return any(
            f.options["http"] and (f.options["new"] or self.before(opened, f))
            for f in faults.active("blackhole")
        )
