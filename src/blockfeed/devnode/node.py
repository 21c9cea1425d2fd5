"""DevNode: the asyncio shell around the chain, the RPC port and the fault injector."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import string
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from blockfeed.devnode.api import FINALIZED, NEW_HEADS, NodeApi
from blockfeed.devnode.chain import Chain, Tick
from blockfeed.devnode.config import DevNodeConfig
from blockfeed.devnode.contents import DevNodeContents
from blockfeed.devnode.faults import ActiveFault, FaultInjector
from blockfeed.devnode.http import MAX_HEAD_BYTES
from blockfeed.devnode.runtime import Runtime
from blockfeed.devnode.scenario import ScenarioStep, play_scenario
from blockfeed.devnode.server import Connection
from blockfeed.devnode.shared import FaultReadings, Pulse, package_version, reset_seed
from blockfeed.devnode.stats import DevNodeStats
from blockfeed.devnode.view import ChainView, LieBook

DEFAULT_WAIT_TIMEOUT_S = 10.0
REOPEN_RETRY_S = 0.2
STOP_GRACE_S = 2.0
HEADER_JSON_CACHE_SIZE = 256
SUBSCRIPTION_ID_LENGTH = 16
"""Faults during which the node behind the port is down (refused, or ``flap``)."""

_log = logging.getLogger("blockfeed.devnode")


class DevNode(FaultReadings):
    """A fake Substrate node with a fault injector; ``async with DevNode(cfg) as node: ...``."""

    def __init__(self, config: DevNodeConfig | None = None) -> None:
        self.config = config or DevNodeConfig()
        cfg = self.config
        self.contents = None if cfg.contents_fixture is None else DevNodeContents.load(
            cfg.contents_fixture)
        self.chain = Chain(
            body_root=None if self.contents is None else self.contents.extrinsics_root,
            seed=cfg.seed,
            start_block=cfg.start_block,
            finality_lag=cfg.finality_lag,
            finality_jumps=cfg.finality_jumps,
        )
        self.faults = FaultInjector()
        self.stats = DevNodeStats()
        self.fault_rng = random.Random(f"faults-{cfg.seed}")
        """Randomness for malformed/disorder choices (seeded: runs are reproducible)."""
        self._ids_rng = random.Random(f"subscription-ids-{cfg.seed}")
        self._lie_book = LieBook()
        self.views = {
            transport: ChainView(self.chain, self.faults, transport, self._lie_book)
            for transport in ("ws", "http")
        }
        self.api = NodeApi(
            runtime=Runtime(
                tempos=cfg.tempos,
                runtime_api=cfg.runtime_api,
                slot_duration_ms=cfg.slot_duration_ms,
            ),
            faults=self.faults,
            stats=self.stats,
            chain_name=cfg.chain_name,
            version=package_version(),
            rng=self.fault_rng,
            contents=self.contents,
        )
        self._header_json: dict[int, str] = {}
        self._used_ids: set[str] = set()
        self._connections: set[Connection] = set()
        self._client_tasks: set[asyncio.Task[None]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._reopen_task: asyncio.Task[None] | None = None
        self._port = cfg.port
        self._fault_pulse: Pulse | None = None
        self._chain_pulse: Pulse | None = None
        self._started = False
        self._stopping = False
        self.faults.on_inject(self._on_fault_injected)
        self.faults.on_change(self._on_faults_changed)

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> DevNode:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on the RPC port and start producing blocks (``OSError`` if the port is taken)."""
        if self._started:
            raise RuntimeError("this DevNode is already started")
        self._fault_pulse = Pulse()
        self._chain_pulse = Pulse()
        self._server = await self._listen()
        self._started = True
        if self.config.auto_produce:
            self._spawn(self._produce_forever(), "devnode-producer")
        _log.debug("devnode listening on %s (and %s)", self.ws_url, self.http_url)

    async def stop(self) -> None:
        """Stop listening, drop every socket, end every task the node started."""
        if self._stopping:
            return
        self._stopping = True
        if self._server is not None:
            self._server.close()
            self._server = None
        for connection in list(self._connections):
            connection.abort()
        self.wake_waiters()
        # Let client handlers end on their own (cancelling a start_server handler makes
        # Python 3.11 log a spurious traceback); cancel only what is still stuck.
        if self._client_tasks:
            await asyncio.wait(list(self._client_tasks), timeout=STOP_GRACE_S)
        tasks = [*self._background, *self._client_tasks]
        if self._reopen_task is not None:
            tasks.append(self._reopen_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _listen(self) -> asyncio.Server:
        server = await asyncio.start_server(
            self._on_client, self.config.host, self._port, limit=MAX_HEAD_BYTES
        )
        if self._port == 0 and server.sockets:
            self._port = server.sockets[0].getsockname()[1]
        return server

    def _spawn(self, coroutine: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coroutine, name=name)
        self._background.add(task)
        task.add_done_callback(self._background_done)
        return task

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("devnode task %s failed", task.get_name(), exc_info=task.exception())

    # -- addresses -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The RPC port (the real one once started, even when configured as 0)."""
        return self._port

    def _authority(self) -> str:
        host = self.config.host
        return f"[{host}]:{self._port}" if ":" in host else f"{host}:{self._port}"

    @property
    def ws_url(self) -> str:
        """``ws://host:port``."""
        return f"ws://{self._authority()}"

    @property
    def http_url(self) -> str:
        """``http://host:port`` (same port as the WebSocket, as on a real node)."""
        return f"http://{self._authority()}"

    # -- chain -----------------------------------------------------------------------------------

    async def _produce_forever(self) -> None:
        loop = asyncio.get_running_loop()
        block_time_s = self.config.block_time_s
        next_at = loop.time() + block_time_s
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            self._tick()
            next_at += block_time_s
            if loop.time() - next_at > block_time_s:  # fell far behind: do not burst
                next_at = loop.time() + block_time_s

    def advance(self, blocks: int = 1) -> Tick:
        """Produce ``blocks`` blocks now (works with ``auto_produce=False``); returns the last."""
        if blocks < 1:
            raise ValueError("blocks must be >= 1")
        tick = self._tick()
        for _ in range(blocks - 1):
            tick = self._tick()
        return tick

    def _tick(self) -> Tick:
        tick = self.chain.tick(finality_halted=self.faults.is_active("finality_halt"))
        self.stats.blocks_produced += 1
        self._broadcast(NEW_HEADS, tick.best)
        if tick.finalized_to is not None:
            self._broadcast(FINALIZED, tick.finalized_to)
        if self._chain_pulse is not None:
            self._chain_pulse.fire()
        return tick

    def _broadcast(self, kind: str, number: int) -> None:
        for connection in list(self._connections):
            if connection.session is None:
                continue
            try:
                connection.session.on_head(kind, number)
            except Exception:  # one broken socket must never stop the chain
                _log.exception("devnode: notifying a subscriber failed; dropping its socket")
                connection.abort()

    async def wait_for_finalized(
        self, number: int, timeout_s: float = DEFAULT_WAIT_TIMEOUT_S
    ) -> int:
        """Wait until block ``number`` is finalized; ``TimeoutError`` after ``timeout_s``."""
        return await self._wait_for_chain(lambda: self.chain.finalized_number, number, timeout_s)

    async def wait_for_best(self, number: int, timeout_s: float = DEFAULT_WAIT_TIMEOUT_S) -> int:
        """Wait until the best block reaches ``number``; ``TimeoutError`` after ``timeout_s``."""
        return await self._wait_for_chain(lambda: self.chain.best_number, number, timeout_s)

    async def _wait_for_chain(self, read: Callable[[], int], number: int, timeout_s: float) -> int:
        if self._chain_pulse is None:
            raise RuntimeError("start the DevNode first")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while read() < number:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(
                    f"devnode: block {number} not reached within {timeout_s:g}s (now {read()})"
                )
            await self._chain_pulse.wait(left)
        return read()

    def notification_text(
        self, method: str, subscription_id: str, view: ChainView, number: int
    ) -> str:
        """The JSON text of one head notification (canonical header JSON is cached)."""
        if view.lies_about(number):
            result = _compact_json(view.header(number).to_json())
        else:
            result = self._header_json.get(number) or self._cache_header_json(number)
        return (
            f'{{"jsonrpc":"2.0","method":"{method}","params":'
            f'{{"subscription":"{subscription_id}","result":{result}}}}}'
        )

    def _cache_header_json(self, number: int) -> str:
        text = _compact_json(self.chain.header_of(number).to_json())
        if len(self._header_json) >= HEADER_JSON_CACHE_SIZE:
            self._header_json.pop(next(iter(self._header_json)))
        self._header_json[number] = text
        return text

    def new_subscription_id(self) -> str:
        """A fresh random-looking id, like jsonrpsee's (16 alphanumerics)."""
        alphabet = string.ascii_letters + string.digits
        while True:
            candidate = "".join(self._ids_rng.choices(alphabet, k=SUBSCRIPTION_ID_LENGTH))
            if candidate not in self._used_ids:
                self._used_ids.add(candidate)
                return candidate

    # -- connections -----------------------------------------------------------------------------

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing():  # accepted just before the listening socket closed: a dead node
            self.stats.connections_dropped += 1
            writer.transport.abort()
            return
        task = asyncio.current_task()
        if task is not None:
            self._client_tasks.add(task)
        connection = Connection(self, reader, writer)
        self._connections.add(connection)
        self.stats.connections += 1
        self.stats.open_connections += 1
        try:
            await connection.serve()
        except asyncio.CancelledError:
            pass  # stop(): ending normally avoids Python 3.11's bogus "Exception in callback"
        except Exception:
            _log.exception("devnode: connection handler failed")
        finally:
            self._connections.discard(connection)
            self.stats.open_connections -= 1
            if task is not None:
                self._client_tasks.discard(task)

    # -- faults ----------------------------------------------------------------------------------

    def _on_fault_injected(self, fault: ActiveFault) -> None:
        _log.info(
            "devnode fault %s: %s (%s) for %gs %s",
            fault.id,
            fault.kind,
            fault.fault_class,
            fault.seconds,
            dict(fault.options) or "",
        )
        if fault.kind == "close":
            for connection in list(self._connections):
                connection.abort(reset=fault.options["reset"], code=fault.options["code"])
        elif fault.kind == "restart":
            self._go_down(fault)
        elif fault.kind == "reset":
            self._replace_chain(fault)
            self._go_down(fault)

    def _on_faults_changed(self) -> None:
        self.wake_waiters()

    def wake_waiters(self) -> None:
        """Make every :meth:`wait_until` re-check now (faults changed, a socket was dropped)."""
        if self._fault_pulse is not None:
            self._fault_pulse.fire()

    def _go_down(self, fault: ActiveFault) -> None:
        """Restart/reset: drop every socket (HTTP keep-alive too); unless ``flap``, stop
        listening so connects are refused until the fault ends."""
        if self._server is not None and fault.seconds > 0 and not fault.options["flap"]:
            self._server.close()
            self._server = None
            self.stats.restarts += 1
        for connection in list(self._connections):
            connection.abort()
        if (
            self._started
            and self._server is None
            and (self._reopen_task is None or self._reopen_task.done())
        ):
            self._reopen_task = asyncio.get_running_loop().create_task(
                self._come_back(), name="devnode-reopen"
            )

    def _replace_chain(self, fault: ActiveFault) -> None:
        """Reset (F13): a new chain from ``start_block`` on another or the same genesis."""
        chain = self.chain
        seed = reset_seed(self.config.seed, chain.generation)
        same_genesis = fault.options["genesis"] == "same"
        chain.replace(
            seed=seed,
            genesis_seed=chain.genesis_seed if same_genesis else seed,
            start_block=fault.options["start_block"],
        )
        self._header_json.clear()
        self._lie_book.clear()
        self.stats.resets += 1
        _log.info(
            "devnode chain replaced: genesis %s, best #%d",
            self.chain.genesis_hash,
            self.chain.best_number,
        )
        if self._chain_pulse is not None:
            self._chain_pulse.fire()

    async def _come_back(self) -> None:
        await self.wait_until(lambda: not self.refusing())
        while not self._stopping:
            try:
                self._server = await self._listen()
                _log.info("devnode listening again on %s", self.ws_url)
                return
            except OSError as exc:
                _log.warning("devnode: cannot listen on %s yet (%s); retrying", self._port, exc)
                await asyncio.sleep(REOPEN_RETRY_S)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, re-checking on every fault change and expiry."""
        while not predicate():
            if self._fault_pulse is None:
                raise RuntimeError("start the DevNode first")
            next_change_s = self.faults.next_change_in_s()
            await self._fault_pulse.wait(None if next_change_s is None else next_change_s + 0.001)

    def run_scenario(self, steps: Sequence[ScenarioStep]) -> asyncio.Task[None]:
        """Inject ``steps`` at their ``at`` offsets from now; the task ends after the last one."""
        if not self._started:
            raise RuntimeError("start the DevNode first")
        return self._spawn(play_scenario(self.faults, steps), "devnode-scenario")


def _compact_json(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))
