"""The driver: runs the sans-I/O :class:`~blockfeed.core.Follower`'s actions over RPC.

:class:`Driver` *holds* a follower (it does not inherit from it) and does two things:

1. performs the follower's actions over the clients its
   :class:`~blockfeed.rpc.connector.Connector` builds (a socket per attempt; an HTTP client per
   endpoint for polls, probes, backfills and chain checks), each within the endpoint's request
   budget and a T-scaled timeout, reporting every outcome back to the follower;
2. calls ``on_timer`` at ``next_deadline()`` (one timer task).

Every follower call happens on the event loop, immediately followed by :meth:`Driver.pump`, so
the follower is never re-entered. Every duration is measured on the loop's clock
(``loop.time()``), so a loop with virtual time drives it all; Unix time only stamps events. What
the follower outputs goes to the feed through three callbacks: verified blocks (``deliver``),
events (``emit``) and the proof that every endpoint serves another chain (``on_diverged``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from blockfeed.codec import header_from_json
from blockfeed.core import (
    CheckChain,
    CloseSocket,
    Connect,
    FetchRange,
    Follower,
    FollowerConfig,
    Poll,
    Probe,
    Subscribe,
)
from blockfeed.core.actions import Action
from blockfeed.errors import (
    BlockfeedError,
    MalformedFrame,
    RpcError,
    RpcServerError,
    RpcTransportError,
    VerificationError,
)
from blockfeed.feed.budget import RequestBudget
from blockfeed.feed.config import FeedConfig
from blockfeed.feed.endpoints import Endpoint
from blockfeed.rpc import methods
from blockfeed.rpc.connector import Connector, RpcClient, SocketClient, SocketOptions
from blockfeed.types import Block, Diverged, FeedEvent, Header
from blockfeed.util.redact import redact_url

logger = logging.getLogger("blockfeed")

SLOT_DURATION_APIS = (("AuraApi_slot_duration", "Aura"), ("BabeApi_configuration", "BABE"))
"""Runtime calls whose SCALE answer starts with the slot duration in ms (u64, little-endian)."""
RATE_LIMIT_PAUSE_BLOCKS = 1.0
"""A JSON-RPC rate-limit error carries no Retry-After: pause the channel this many T."""
CLOSE_TIMEOUT_CAP_S = 2.0
"""A half-open socket never answers the close handshake; do not wait on it for long."""
DEFAULT_HTTP_CLIENT_TIMEOUT_S = 10.0
"""Only the ceiling: every request the feed sends carries its own T-scaled timeout."""
GENESIS_RETRY_CAP_S = 10.0
FINALIZED_HEADS = ("chain_subscribeFinalizedHeads", "chain_finalizedHead",
                   "chain_unsubscribeFinalizedHeads")


class _SocketRun:
    """The driver's side of one socket attempt."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.subscribe = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.ws: SocketClient | None = None


class Driver:
    """One follower at a time, its actions run over the connector's clients."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        config: FeedConfig,
        connector: Connector,
        *,
        deliver: Callable[[list[Block]], None],
        emit: Callable[[FeedEvent], None],
        on_diverged: Callable[[Diverged], None],
    ) -> None:
        self._endpoints = list(endpoints)
        self._by_label: dict[str, Endpoint] = {ep.label: ep for ep in self._endpoints}
        self._config = config
        self._connector = connector
        self._deliver = deliver
        self._emit = emit
        self._on_diverged = on_diverged
        self.core_config: FollowerConfig = config.follower_config()
        self.follower: Follower | None = None
        self.genesis: str | None = None
        """The chain's genesis hash, once known (from the store's binding or chain facts)."""
        self._tg: asyncio.TaskGroup | None = None
        self._wake = asyncio.Event()
        self._http: dict[str, RpcClient] = {}
        self._sockets: dict[int, _SocketRun] = {}
        self._wall_offset_s = 0.0
        """Unix time minus loop time, fixed when the first follower starts (stamps events)."""
        self._diverged_handled = False
        self.budget = RequestBudget(lambda: self.block_interval_s, clock=self.now)

    # ------------------------------------------------------------------ clients

    def open_clients(self) -> None:
        """Build each endpoint's HTTP client (nothing is sent yet)."""
        self._http = {
            ep.label: self._connector.http(ep.http_url, timeout_s=DEFAULT_HTTP_CLIENT_TIMEOUT_S)
            for ep in self._endpoints
        }

    def http_clients(self) -> list[tuple[str, RpcClient]]:
        """(label, HTTP client) per endpoint, in order of preference."""
        return [(ep.label, self._http[ep.label]) for ep in self._endpoints
                if ep.label in self._http]

    async def close_clients(self) -> None:
        """Close every HTTP client (sockets close with their sessions)."""
        for http in self._http.values():
            try:
                await http.aclose()
            except Exception:  # closing must not hide the real outcome
                logger.debug("closing an HTTP client failed", exc_info=True)

    # ------------------------------------------------------------------ timeouts that follow T

    @property
    def block_interval_s(self) -> float:
        """The learned block time (the prior until the follower exists)."""
        follower = self.follower
        return self.core_config.block_time_s if follower is None else follower.block_interval_s

    @property
    def _open_timeout_s(self) -> float:
        return self._config.open_timeout_s_for(self.block_interval_s)

    @property
    def _http_timeout_s(self) -> float:
        return self._config.http_timeout_s_for(self.block_interval_s)

    @property
    def _ping_interval_s(self) -> float:
        return self._config.ping_interval_s_for(self.block_interval_s)

    @property
    def _ping_timeout_s(self) -> float:
        return self._config.ping_timeout_s_for(self.block_interval_s)

    # ------------------------------------------------------------------ the follower's life

    def start(self, tg: asyncio.TaskGroup, *, start_number: int | None,
              anchor: tuple[int, str] | None) -> None:
        """Build and start the first follower in ``tg``, with the timer and the chain facts."""
        self._tg = tg
        self._wall_offset_s = time.time() - asyncio.get_running_loop().time()
        follower = self._new_follower(start_number=start_number, anchor=anchor)
        follower.start(self.now())
        self.pump()
        tg.create_task(self._timer_loop(), name="blockfeed-timer")
        tg.create_task(self.learn_chain_facts(), name="blockfeed-chain-facts")

    def restart(self) -> None:
        """A new follower from the chain's finalized head (another chain is being followed)."""
        follower = self._new_follower(start_number=None, anchor=None)
        self._diverged_handled = False
        follower.start(self.now())
        self.pump()
        if self._tg is not None:
            self._tg.create_task(self.learn_chain_facts(), name="blockfeed-chain-facts")

    def detach(self) -> None:
        """The task group is gone: start no more tasks."""
        self._tg = None

    def drop_sockets(self) -> None:
        """Cancel every socket session (the follower they reported to is being replaced)."""
        for run in list(self._sockets.values()):
            if run.task is not None:
                run.task.cancel()
        self._sockets.clear()

    def _new_follower(self, *, start_number: int | None, anchor: tuple[int, str] | None,
                      ) -> Follower:
        previous = self.follower
        follower = Follower(
            [ep.label for ep in self._endpoints],
            config=self.core_config,
            start_number=start_number,
            anchor=anchor,
            wall_offset_s=self._wall_offset_s,
            http_labels={ep.label: redact_url(ep.http_url) for ep in self._endpoints},
            genesis_hash=self.genesis,
            numbering_from=0 if previous is None else previous.numbering,
        )
        self.follower = follower
        return follower

    async def learn_chain_facts(self) -> None:
        """In the background: the chain's identity (the hashes of blocks 0 and 1, to tell
        another chain from a lagging node) and the runtime's declared slot duration (a better
        prior than a hint). Endpoints are asked in order until one answers; each is asked
        once, so a node that cannot answer costs nothing more."""
        identified = False
        for ep in self._endpoints:
            rpc = self._http_channel(ep.label)
            await self.budget.acquire(ep.label)
            if not identified:
                try:
                    genesis, first = await methods.get_block_hashes(rpc, [0, 1])
                except (RpcError, MalformedFrame, ValueError) as exc:
                    logger.debug("chain identity from %s: %s", ep.label, exc)
                else:
                    identified = genesis is not None
                    self.genesis = self.genesis or genesis
                    if self.follower is not None:
                        self.follower.set_chain_identity(self.genesis, first)
            for api, engine in SLOT_DURATION_APIS:
                try:
                    raw = await methods.state_call(rpc, api, "0x")
                except (RpcError, MalformedFrame) as exc:
                    logger.debug("%s from %s: %s", api, ep.label, exc)
                    continue
                if len(raw) >= 8 and (slot_ms := int.from_bytes(raw[:8], "little")) > 0:
                    self.call(functools.partial(
                        _set_prior, slot_ms / 1000, f"the runtime's {engine} slot duration"))
                    return
            if identified:
                return

    async def fetch_genesis(self) -> str:
        """The chain's genesis hash from any endpoint (HTTP), retried with backoff."""
        attempt = 0
        while True:
            for ep in self._endpoints:
                try:
                    return await methods.get_genesis_hash(self._http[ep.label])
                except (RpcError, MalformedFrame) as exc:
                    logger.warning("cannot read the genesis hash from %s: %s", ep.label, exc)
            attempt += 1
            await asyncio.sleep(min(GENESIS_RETRY_CAP_S, 0.2 * 2**attempt))

    # ------------------------------------------------------------------ the follower's clock

    def now(self) -> float:
        """The loop's clock: what the follower runs on."""
        return asyncio.get_running_loop().time()

    async def _timer_loop(self) -> None:
        wake = self._wake
        while True:
            follower = self.follower
            assert follower is not None
            deadline = follower.next_deadline()
            delay = None if deadline is None else deadline - self.now()
            wake.clear()
            if delay is None or delay > 0:
                try:
                    async with asyncio.timeout(delay):
                        await wake.wait()
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(0)
            self.call(lambda now, f: f.on_timer(now))

    def call(self, fn: Callable[[float, Follower], None]) -> None:
        """Run one follower input now, then act on its outputs."""
        follower = self.follower
        if follower is None:
            return
        fn(self.now(), follower)
        self.pump()

    def pump(self) -> None:
        """Hand on the follower's outputs: events, divergence, blocks, then run its actions."""
        follower = self.follower
        if follower is None:
            return
        for event in follower.events():
            # The core runs on the loop's monotonic clock; people and alerts get Unix time.
            self._emit(dataclasses.replace(event, at=event.at + self._wall_offset_s))
        if follower.diverged is not None and not self._diverged_handled:
            self._diverged_handled = True
            self._on_diverged(follower.diverged)
            return
        blocks = follower.deliverable()
        if blocks:
            self._deliver(blocks)
        for action in follower.actions():
            self._execute(action)
        self._wake.set()

    # ------------------------------------------------------------------ actions

    def _execute(self, action: Action) -> None:
        tg = self._tg
        if tg is None:
            return
        if isinstance(action, Connect):
            run = _SocketRun(action.endpoint)
            self._sockets[action.attempt] = run
            run.task = tg.create_task(self._socket_session(action, run),
                                      name=f"blockfeed-socket {action.attempt}")
        elif isinstance(action, Subscribe):
            socket_run = self._sockets.get(action.attempt)
            if socket_run is not None:
                socket_run.subscribe.set()
        elif isinstance(action, CloseSocket):
            socket_run = self._sockets.pop(action.attempt, None)
            if socket_run is not None and socket_run.task is not None:
                socket_run.task.cancel()
        elif isinstance(action, Poll | Probe):
            tg.create_task(self._head_read(action), name=f"blockfeed-{action.purpose}")
        elif isinstance(action, FetchRange):
            tg.create_task(self._fetch_range(action), name="blockfeed-range")
        elif isinstance(action, CheckChain):
            tg.create_task(self._check_chain(action), name="blockfeed-chain-check")

    async def _check_chain(self, action: CheckChain) -> None:
        """``chain_getBlockHash([0, 1, number - 1, number])`` over HTTP, then the header the
        endpoint lists at ``number`` (its parent tells a lie from another chain)."""
        number = action.number
        numbers = sorted({0, 1} | ({number - 1, number} if number >= 2 else set())
                         | ({number} if number >= 0 else set()))
        parent_hash: str | None = None
        try:
            rpc = self._http_channel(action.endpoint)
            await self.budget.acquire(action.endpoint)
            hashes = await methods.get_block_hashes(rpc, numbers)
            listed = dict(zip(numbers, hashes, strict=True))
            theirs = listed.get(number) if number >= 2 else None
            if theirs is not None:
                await self.budget.acquire(action.endpoint)
                parent_hash = "0x" + (await methods.get_header(rpc, theirs)).parent_hash.hex()
        except Exception as exc:
            self._request_failed(action, exc, "chain check")
            return
        self.call(lambda now, f: f.on_chain_check(action, listed, now, parent_hash=parent_hash))

    def _fail(self, action: Action, exc: BaseException, *, lied: bool = False) -> None:
        status = getattr(exc, "status", None)
        reason = str(exc) or type(exc).__name__
        pause = getattr(exc, "retry_after_s", None)
        if isinstance(exc, RpcServerError) and exc.is_rate_limit:
            pause = RATE_LIMIT_PAUSE_BLOCKS * self.block_interval_s
        if isinstance(exc, MalformedFrame):
            self.call(lambda now, f: f.on_malformed(getattr(action, "endpoint", ""), now))
        self.call(lambda now, f: f.on_failure(action, reason, now, status=status, lied=lied,
                                              retry_after_s=pause))

    async def _socket_session(self, action: Connect, run: _SocketRun) -> None:
        """Open, subscribe, stream notifications into the follower, report the end."""
        label, attempt = action.endpoint, action.attempt
        endpoint = self._by_label[label]
        ws: SocketClient | None = None
        reason = "socket closed"
        try:
            try:
                ws = await self._connector.websocket(endpoint.ws_url, SocketOptions(
                    open_timeout_s=self._open_timeout_s,
                    ping_interval_s=self._ping_interval_s,
                    ping_timeout_s=self._ping_timeout_s,
                    close_timeout_s=min(CLOSE_TIMEOUT_CAP_S, self._open_timeout_s),
                    max_frame_bytes=self._config.max_frame_bytes,
                    on_malformed=lambda _reason: self.call(
                        lambda now, f: f.on_malformed(label, now)),
                ))
            except (BlockfeedError, OSError) as exc:
                self._fail(action, exc)
                return
            run.ws = ws
            self.call(lambda now, f: f.on_ws_connected(label, now, attempt=attempt))
            await run.subscribe.wait()
            method, notification, unsubscribe = FINALIZED_HEADS
            try:
                subscription = await ws.subscribe(
                    method, [], notification=notification, unsubscribe=unsubscribe,
                    timeout_s=self._http_timeout_s,
                )
            except (RpcError, MalformedFrame) as exc:
                self._fail(Subscribe(label, attempt), exc)
                return
            self.call(lambda now, f: f.on_ws_subscribed(label, now, attempt=attempt))
            try:
                async for raw in subscription:
                    try:
                        header = header_from_json(raw)
                    except MalformedFrame:
                        self.call(lambda now, f: f.on_malformed(label, now))
                        continue
                    self.call(functools.partial(_ws_header, header, label, attempt))
            except RpcError as exc:
                reason = str(exc)
            self.call(lambda now, f: f.on_ws_closed(label, reason, now, attempt=attempt))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not take the feed down: report a closed socket
            logger.exception("socket session on %s failed unexpectedly", label)
            detail = f"driver error: {type(exc).__name__}"
            self.call(lambda now, f: f.on_ws_closed(label, detail, now, attempt=attempt))
        finally:
            if self._sockets.get(attempt) is run:
                del self._sockets[attempt]
            if ws is not None:
                await asyncio.shield(_close_quietly(ws))

    async def _head_read(self, action: Poll | Probe) -> None:
        """``chain_getFinalizedHead`` (+ ``chain_getHeader`` unless the head is the known one),
        over HTTP, or over the open socket while HTTP backs off."""
        started = self.now()
        try:
            rpc = self._channel(action)
            await self.budget.acquire(action.endpoint)
            head = await methods.get_finalized_head(rpc)
            header = None
            if head != action.known_hash:
                await self.budget.acquire(action.endpoint)
                header = await methods.get_header(rpc, head)
        except Exception as exc:  # never let a poll take the feed down
            self._request_failed(action, exc, "head read")
            return
        latency = self.now() - started
        if isinstance(action, Poll):
            self.call(lambda now, f: f.on_poll_result(action, head, header, now,
                                                      latency_s=latency))
        else:
            self.call(lambda now, f: f.on_probe_result(action, head, header, now,
                                                       latency_s=latency))

    def _channel(self, action: Poll | Probe | FetchRange) -> methods.RpcCaller:
        """Where ``action``'s requests go: HTTP, or the open socket while HTTP backs off."""
        if action.transport != "ws":
            return self._http_channel(action.endpoint)
        rpc = self._open_socket_rpc(action.endpoint)
        if rpc is None:
            raise RpcTransportError("the socket to send over is gone")
        return rpc

    def _http_channel(self, label: str) -> methods.RpcCaller:
        """``label``'s HTTP side, every request carrying the T-scaled timeout."""
        return _WithTimeout(self._http[label], self._http_timeout_s)

    def _request_failed(self, action: Action, exc: Exception, what: str) -> None:
        """Report a failed request to the core: a header that does not hash to what the node
        named is a lie; RPC and frame errors are failures; anything else is a bug, logged."""
        if isinstance(exc, VerificationError):
            self._fail(action, exc, lied=True)
            return
        if not isinstance(exc, RpcError | MalformedFrame):
            logger.exception("%s on %s failed unexpectedly", what, action.endpoint)
        self._fail(action, exc)

    def _open_socket_rpc(self, label: str) -> methods.RpcCaller | None:
        """The open socket of ``label`` as a request channel, with the feed's request timeout
        (as HTTP requests have), or None."""
        for run in self._sockets.values():
            if run.endpoint == label and run.ws is not None and not run.ws.closed:
                return _WithTimeout(run.ws, self._http_timeout_s)
        return None

    async def _fetch_range(self, action: FetchRange) -> None:
        """Hashes of ``start..end`` in one call, then their headers in one batch (over HTTP, or
        over the open socket while HTTP backs off)."""
        started = self.now()
        try:
            rpc = self._channel(action)
            await self.budget.acquire(action.endpoint, bulk=True)
            hashes = await methods.get_block_hashes(rpc, range(action.start, action.end + 1))
            # Headers of the listed prefix (a vote may lack its first, link-only, number).
            skip = 1 if action.check_only_first and hashes and hashes[0] is None else 0
            known: list[str] = []
            for listed in hashes[skip:]:
                if listed is None:
                    break
                known.append(listed)
            headers: list[Any] = [None] * skip
            if known:
                await self.budget.acquire(action.endpoint, bulk=True)
                headers += await methods.get_headers(rpc, known)
        except Exception as exc:
            self._request_failed(action, exc, "backfill")
            return
        headers += [None] * (len(hashes) - len(headers))
        latency = self.now() - started
        self.call(lambda now, f: f.on_range_result(action, hashes, headers, now,
                                                   latency_s=latency))


class _WithTimeout:
    """An RPC caller whose requests default to ``timeout_s`` (the clients' own defaults are
    not scaled to the learned block time)."""

    def __init__(self, rpc: methods.RpcCaller, timeout_s: float) -> None:
        self._rpc = rpc
        self._timeout_s = timeout_s

    async def call(
        self, method: str, params: Any = None, *, timeout_s: float | None = None
    ) -> Any:
        return await self._rpc.call(method, params, timeout_s=timeout_s or self._timeout_s)

    async def batch(self, calls: Sequence[Any], *, timeout_s: float | None = None) -> list[Any]:
        return await self._rpc.batch(calls, timeout_s=timeout_s or self._timeout_s)


def _set_prior(seconds: float, source: str, now: float, follower: Follower) -> None:
    follower.set_block_time_prior(seconds, source, now)


def _ws_header(header: Header, label: str, attempt: int, now: float, follower: Follower) -> None:
    follower.on_ws_header(header, label, now, attempt=attempt)


async def _close_quietly(ws: SocketClient) -> None:
    try:
        await ws.close()
    except Exception:  # closing must never raise out of a finally
        logger.debug("socket close failed", exc_info=True)
