"""BlockFeed: the asyncio driver around the sans-I/O :class:`~blockfeed.core.Follower`.

The feed *holds* a follower (it does not inherit from it) and does three things only:

1. performs the follower's actions over the clients its :class:`~blockfeed.rpc.connector.Connector`
   builds (a socket per attempt; an HTTP client per endpoint for polls, probes and backfills),
   reporting every outcome back to it;
2. calls ``on_timer`` at ``next_deadline()`` (one timer task);
3. hands delivered blocks to subscribers (each with its own bounded queue) and moves the
   checkpoint in the store as far as every subscriber has acknowledged.

One ``asyncio.TaskGroup`` owns the socket session, the HTTP requests, the timer, the checkpoint
writer and the callback subscribers, so nothing is left running when ``async with feed`` exits;
the final checkpoint write is shielded from cancellation. Every follower call happens on the
event loop, immediately followed by :meth:`_pump`, so the follower is never re-entered. Every
duration is measured on the loop's clock (``loop.time()``), so a loop with virtual time drives
the whole feed; Unix time only stamps blocks and events.

Delivery across crashes: at least once, and exactly what repeats
-----------------------------------------------------------------
Within one process every subscriber gets each block exactly once, in order (the merge's
guarantee, :mod:`blockfeed.core.merge`). Across a crash (SIGKILL, power loss) the guarantee is
*at least once*, with a precise bound:

* An iterator *acknowledges* block n when its consumer asks for the next block (the next
  ``__anext__``, i.e. the next turn of ``async for``) or closes it with ``await sub.aclose()``;
  a callback acknowledges a block when it returns (or raises: the error is logged). A block that
  was yielded but not yet processed is not acknowledged.
* The checkpoint is the highest number every live subscriber has acknowledged (the lowest
  unacknowledged number across subscribers, minus one). It is written to the store in the
  background after each acknowledgement (``await feed.save_checkpoint()`` forces it), and once
  more, shielded, when the feed stops.
* A restarted feed resumes at the stored checkpoint + 1. So a crash repeats, for each
  subscriber, exactly the blocks above the stored checkpoint that it had already been handed:
  the one it held unacknowledged (one per iterator or callback), plus any it acknowledged that
  the checkpoint did not cover yet (a write was in flight, or another subscriber was slower).
  Nothing is skipped. Each block carries its number (and hash) as the idempotency key: a
  consumer that records "done up to n" next to its own effects can drop the repeats.
* ``await sub.aclose()`` acknowledges the last block and stops receiving, but keeps owing the
  blocks it never got until the feed stops (or the iterator is dropped), so the checkpoint
  stays at the last block it handled: the next run starts right after it, never past blocks
  nobody handled. ``cancel()`` (or dropping an iterator, which the feed holds weakly) abandons
  a subscription: it owes nothing, so its unacknowledged block stops holding the checkpoint. A
  subscriber more than ``lag_limit_blocks`` (or its queue size) behind is cut off with
  ``SubscriberLagged`` and stops holding it too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import itertools
import logging
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any

from blockfeed.codec import header_from_json
from blockfeed.contents import contents_stage, filtered_callback
from blockfeed.core import (
    CheckChain,
    CloseSocket,
    Connect,
    FetchRange,
    Follower,
    Poll,
    Probe,
    Subscribe,
)
from blockfeed.core.actions import Action
from blockfeed.errors import (
    BlockfeedError,
    ChainDiverged,
    ConfigError,
    MalformedFrame,
    RpcError,
    RpcServerError,
    RpcTransportError,
    StoreError,
    VerificationError,
)
from blockfeed.feed.budget import RequestBudget
from blockfeed.feed.config import DEFAULT_LAG_LIMIT_BLOCKS, FeedConfig
from blockfeed.feed.endpoints import Endpoint, build_endpoints, network_url
from blockfeed.feed.logs import FeedLog
from blockfeed.feed.status import FeedStatus
from blockfeed.feed.subscribers import FeedSubscription
from blockfeed.rpc import methods
from blockfeed.rpc.connector import (
    Connector,
    NetworkConnector,
    RpcClient,
    SocketClient,
    SocketOptions,
)
from blockfeed.store import CheckpointStore
from blockfeed.types import Block, FeedEvent, Header, Mode
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
RECENT_EVENTS_KEPT = 50
RECENT_BLOCKS_KEPT = 1024
GENESIS_RETRY_CAP_S = 10.0
FINALIZED_HEADS = ("chain_subscribeFinalizedHeads", "chain_finalizedHead",
                   "chain_unsubscribeFinalizedHeads")

BlockCallback = Callable[[Block], Any]
EventHook = Callable[[FeedEvent], Any]


class _Stop(Exception):
    """Raised inside the task group to cancel every child on a normal stop."""


class _SocketRun:
    """The driver's side of one socket attempt."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.subscribe = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.ws: SocketClient | None = None


class BlockFeed:
    """Every finalized block, exactly once, in order, parent-linked, through any fault.

    ::

        async with BlockFeed(["wss://entrypoint-finney.opentensor.ai:443"]) as feed:
            async for block in feed:
                print(block.number, block.hash, block.source)

    ``endpoints`` are WebSocket URLs in order of preference; each one's HTTP twin is derived
    (``ws`` -> ``http``, ``wss`` -> ``https``, same host, port and path) unless ``http_endpoints``
    gives it. With a ``store``, the feed binds it to the chain, resumes at checkpoint + 1 (unless
    ``start_at`` is given) and moves the checkpoint once every subscriber has acknowledged a
    block (see the module docstring: at least once across crashes, and exactly what repeats).
    """

    def __init__(
        self,
        endpoints: str | Sequence[str],
        config: FeedConfig | None = None,
        *,
        store: CheckpointStore | None = None,
        start_at: int | None = None,
        http_endpoints: Sequence[str | None] | None = None,
        connector: Connector | None = None,
        **settings: Any,
    ) -> None:
        """``config`` holds every tuning value (:class:`~blockfeed.feed.config.FeedConfig`;
        default: ``FeedConfig()``, the finney setup); ``settings`` are FeedConfig field names
        applied on top of it (``BlockFeed(urls, block_time_s=0.5, log_blocks=False)``), an
        unknown name being a :class:`ConfigError`. :attr:`config` is the frozen result.

        ``start_at`` is the first block number to deliver (default: the store's checkpoint + 1,
        else the chain's finalized head). ``connector`` builds every RPC client the feed uses
        (default: the real network, :class:`~blockfeed.rpc.connector.NetworkConnector`);
        ``blockfeed.testing`` has an in-memory one.
        """
        base = FeedConfig() if config is None else config
        if not isinstance(base, FeedConfig):
            raise ConfigError(f"config must be a FeedConfig, got {type(base).__name__}")
        cfg = self._config = base.replace(**settings) if settings else base
        if start_at is not None and (
            isinstance(start_at, bool) or not isinstance(start_at, int) or start_at < 0
        ):
            raise ConfigError(f"start_at must be a block number >= 0, got {start_at!r}")
        self._endpoints = build_endpoints(endpoints, http_endpoints)
        self._by_label: dict[str, Endpoint] = {ep.label: ep for ep in self._endpoints}
        self._start_at = start_at
        self._store = store
        self._connector: Connector = NetworkConnector() if connector is None else connector
        self._core_config = cfg.follower_config()
        self._log = FeedLog(epoch_length=cfg.epoch_length, emoji=cfg.emoji, clock=self._now)

        # runtime state (created in __aenter__)
        self._follower: Follower | None = None
        self._runner: asyncio.Task[None] | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._stop: asyncio.Event | None = None
        self._ready: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._save_wake: asyncio.Event | None = None
        self._save_inflight: asyncio.Future[None] | None = None
        self._http: dict[str, RpcClient] = {}
        self._sockets: dict[int, _SocketRun] = {}
        self._iter_subs: weakref.WeakSet[FeedSubscription] = weakref.WeakSet()
        self._callback_subs: dict[FeedSubscription, BlockCallback] = {}
        self._callback_tasks_pending: list[FeedSubscription] = []
        self._hooks: list[EventHook] = []
        self._recent_blocks: deque[Block] = deque(maxlen=RECENT_BLOCKS_KEPT)
        self._recent_events: deque[FeedEvent] = deque(maxlen=RECENT_EVENTS_KEPT)
        self._unsaved: list[Block] = []
        self._saved_through: int | None = None
        self._save_lock = asyncio.Lock()
        self._lag_limit_blocks = cfg.lag_limit_blocks or max(
            DEFAULT_LAG_LIMIT_BLOCKS, 0 if store is None else int(store.window)
        )
        self._last_block: Block | None = None
        self._started_wall = time.time()
        self._wall_offset_s = 0.0
        """Unix time minus loop time, fixed when the follower starts (stamps events)."""
        self._error: BaseException | None = None
        self._sub_counter = 0
        self._genesis: str | None = None
        self._diverged_handled = False
        self._budget = RequestBudget(lambda: self._block_interval_s, clock=self._now)

        # contents="timestamp"|"events"|"full": verified blocks are enriched before delivery.
        self._contents = contents_stage(
            cfg.contents, store=store, deliver=self._deliver, on_event=self._emit_event,
            rpcs=lambda: [(ep.label, self._http[ep.label]) for ep in self._endpoints
                          if ep.label in self._http])

    # ------------------------------------------------------------------ timeouts that follow T

    @property
    def _block_interval_s(self) -> float:
        """The learned block time (the prior until the follower exists)."""
        follower = self._follower
        return self._core_config.block_time_s if follower is None else follower.block_interval_s

    @property
    def _open_timeout_s(self) -> float:
        return self._config.open_timeout_s_for(self._block_interval_s)

    @property
    def _http_timeout_s(self) -> float:
        return self._config.http_timeout_s_for(self._block_interval_s)

    @property
    def _ping_interval_s(self) -> float:
        return self._config.ping_interval_s_for(self._block_interval_s)

    @property
    def _ping_timeout_s(self) -> float:
        return self._config.ping_timeout_s_for(self._block_interval_s)

    # ------------------------------------------------------------------ construction helpers

    @property
    def config(self) -> FeedConfig:
        """Every tuning value of this feed (frozen)."""
        return self._config

    @classmethod
    def for_network(cls, name: str, **kwargs: Any) -> BlockFeed:
        """A feed on a named Bittensor network: ``finney``, ``test``, ``archive`` or ``local``."""
        return cls([network_url(name)], **kwargs)

    # ------------------------------------------------------------------ public API

    @property
    def mode(self) -> Mode:
        """Current mode."""
        return Mode.STARTING if self._follower is None else self._follower.mode

    @property
    def endpoints(self) -> list[str]:
        """Configured endpoints, as redacted labels."""
        return [ep.label for ep in self._endpoints]

    def subscribe(
        self, callback: BlockCallback, *, name: str | None = None, maxsize: int | None = None,
        events: str | Sequence[str] | None = None, skip_empty: bool = False,
    ) -> FeedSubscription:
        """Call ``callback(block)`` (sync or async) for every block, in order, on its own queue.

        A block is acknowledged when the callback returns; a raising callback is logged and
        the block counts as handled. A callback that falls further behind than the feed keeps
        blocks for is stopped with an error log naming the block to resume from.
        Returns the subscription; ``cancel()`` it to stop. ``events=["Pallet.Name", ...]``
        passes only those events (``skip_empty``: and only blocks that have one).
        """
        callback = filtered_callback(callback, events, skip_empty=skip_empty)
        label = name or str(getattr(callback, "__name__", "callback"))
        subscription = self._new_subscription(label, maxsize)
        self._callback_subs[subscription] = callback
        if self._tg is not None and self._follower is not None:
            self._tg.create_task(self._run_callback(subscription, callback),
                                 name=f"blockfeed-subscriber {subscription.name}")
        else:
            self._callback_tasks_pending.append(subscription)
        return subscription

    def blocks(self, *, name: str | None = None, maxsize: int | None = None) -> FeedSubscription:
        """A new async iterator over blocks delivered from now on (what ``async for`` uses).

        Asking for the next block acknowledges the previous one; ``await it.aclose()`` after
        the last block you handled acknowledges it too (otherwise a restart repeats it).
        """
        self._sub_counter += 1
        subscription = self._new_subscription(name or f"iterator-{self._sub_counter}", maxsize)
        self._iter_subs.add(subscription)
        return subscription

    def __aiter__(self) -> FeedSubscription:
        return self.blocks()

    def add_event_hook(self, hook: EventHook) -> None:
        """Call ``hook(event)`` (sync or async) for every :class:`FeedEvent`; errors are logged."""
        self._hooks.append(hook)

    def emit_event(self, event: FeedEvent) -> None:
        """Publish ``event`` as one of the feed's own (a sink that refuses to write into a
        stream of another chain, say): it reaches the log, ``status().recent_events``, and
        every event hook (the gateway's SSE stream, metrics and alerts)."""
        self._emit_event(event)

    def request_reconnect(self, reason: str = "requested") -> None:
        """Recycle the socket now (e.g. an operator's request)."""
        self._call(lambda now, f: f.request_reconnect(reason, now))

    def status(self) -> FeedStatus:
        """A frozen snapshot: mode, last block, time per mode, counters, endpoint health."""
        follower = self._follower
        now_wall = time.time()
        last = self._last_block
        subscribers = len(self._iter_subs) + len(self._callback_subs)
        if follower is None:
            return FeedStatus(
                mode=Mode.STARTING, finality_stalled=False, endpoint=None, last_block=last,
                last_block_age_s=None if last is None else max(0.0, now_wall - last.received_at),
                started_at=self._started_wall,
                mode_seconds={"starting": max(0.0, now_wall - self._started_wall)},
                reconnects=0, blocks_by_source={}, transitions={}, probes={},
                malformed_frames=0,
                block_interval_s=self._core_config.block_time_s,
                endpoints=[{"endpoint": ep.label} for ep in self._endpoints],
                subscribers=subscribers, recent_events=list(self._recent_events),
                error=None if self._error is None else str(self._error),
            )
        now = self._now()
        return FeedStatus(
            mode=follower.mode,
            finality_stalled=follower.finality_stalled,
            endpoint=follower.socket_endpoint,
            last_block=last,
            last_block_age_s=None if last is None else max(0.0, now_wall - last.received_at),
            started_at=self._started_wall,
            mode_seconds=follower.mode_seconds(now),
            reconnects=follower.reconnects,
            blocks_by_source=dict(follower.blocks_by_source),
            transitions=follower.transitions(),
            probes=dict(follower.probes),
            malformed_frames=follower.malformed_frames,
            block_interval_s=follower.block_interval_s,
            endpoints=follower.ranking.snapshot(now),
            subscribers=subscribers,
            recent_events=list(self._recent_events),
            requests=dict(follower.requests),
            request_budget=self._budget.snapshot(),
            block_time_prior_s=follower.block_time_prior_s,
            error=str(self._error) if self._error is not None else follower.blocked,
        )

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> BlockFeed:
        if self._runner is not None:
            raise RuntimeError("this BlockFeed was already started; create a new one")
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._save_wake = asyncio.Event()
        self._started_wall = time.time()
        self._http = {
            ep.label: self._connector.http(ep.http_url, timeout_s=DEFAULT_HTTP_CLIENT_TIMEOUT_S)
            for ep in self._endpoints
        }
        self._log.starting(self.endpoints)
        self._runner = asyncio.create_task(self._run(), name="blockfeed-feed")
        ready = asyncio.create_task(self._ready.wait())
        try:
            await asyncio.wait({ready, self._runner}, timeout=self._config.startup_timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if self._runner.done():
            await self._runner
            if self._error is not None:
                raise self._error
        elif not self._ready.is_set():
            logger.warning("feed not started within %.1fs (still fetching the chain's genesis); "
                           "continuing in the background", self._config.startup_timeout_s)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
        if exc_type is None and self._error is not None:
            raise self._error

    async def aclose(self) -> None:
        """Stop every task, close every connection, write the final checkpoint."""
        runner = self._runner
        if runner is None or self._stop is None:
            return
        self._stop.set()
        try:
            await asyncio.shield(runner)
        except asyncio.CancelledError:
            if not runner.done():
                await asyncio.wait({runner})  # finish cleanup, then let the cancel through
            raise

    async def _run(self) -> None:
        assert self._stop is not None
        try:
            try:
                async with asyncio.TaskGroup() as tg:
                    self._tg = tg
                    tg.create_task(self._main(), name="blockfeed-main")
                    await self._stop.wait()
                    raise _Stop
            except* _Stop:
                pass
        except BaseException as exc:  # the feed failed (e.g. StoreError); record and report
            self._error = _first_leaf(exc)
            if isinstance(self._error, asyncio.CancelledError):
                self._error = None
            else:
                logger.error("block feed failed: %s", self._error)
        finally:
            self._tg = None
            await asyncio.shield(self._final_checkpoint())
            for http in self._http.values():
                try:
                    await http.aclose()
                except Exception:  # closing must not hide the real outcome
                    logger.debug("closing an HTTP client failed", exc_info=True)
            for subscription in [*self._iter_subs, *self._callback_subs]:
                subscription.close(self._error)
            self._log.stopped(self._last_block)

    async def _main(self) -> None:
        """Bind the store, build the follower, then run the timer and the checkpoint writer."""
        anchor: tuple[int, str] | None = None
        start_number = self._start_at
        if self._store is not None:
            genesis = self._genesis = await self._fetch_genesis()
            store = self._store
            await asyncio.to_thread(store.bind_chain, genesis)
            checkpoint = await asyncio.to_thread(store.checkpoint)
            if start_number is None and checkpoint is not None:
                anchor = checkpoint
                self._saved_through = checkpoint[0]
                logger.info("resuming after checkpoint #%d", checkpoint[0])
        loop = asyncio.get_running_loop()
        self._wall_offset_s = time.time() - loop.time()
        follower = self._new_follower(start_number=start_number, anchor=anchor)
        assert self._tg is not None and self._ready is not None
        tg = self._tg
        for subscription in self._callback_tasks_pending:
            callback = self._callback_subs.get(subscription)
            if callback is not None:
                tg.create_task(self._run_callback(subscription, callback),
                               name=f"blockfeed-subscriber {subscription.name}")
        self._callback_tasks_pending.clear()
        follower.start(self._now())
        self._pump()
        self._ready.set()
        tg.create_task(self._timer_loop(), name="blockfeed-timer")
        tg.create_task(self._checkpoint_loop(), name="blockfeed-checkpoint")
        tg.create_task(self._learn_chain_facts(), name="blockfeed-chain-facts")
        if self._contents is not None:
            tg.create_task(self._contents.run(), name="blockfeed-contents")

    def _new_follower(self, *, start_number: int | None, anchor: tuple[int, str] | None,
                      ) -> Follower:
        previous = self._follower
        follower = Follower(
            [ep.label for ep in self._endpoints],
            config=self._core_config,
            start_number=start_number,
            anchor=anchor,
            wall_offset_s=self._wall_offset_s,
            http_labels={ep.label: redact_url(ep.http_url) for ep in self._endpoints},
            genesis_hash=self._genesis,
            numbering_from=0 if previous is None else previous.numbering,
        )
        self._follower = follower
        return follower

    def _on_diverged(self, event: FeedEvent) -> None:
        """Every endpoint serves another chain: stop with ``ChainDiverged`` (policy "exit"),
        or start over on the new chain (policy "follow")."""
        error = ChainDiverged(event.reason, endpoint=event.endpoint, details=event.details)
        if self._config.on_divergence == "exit" or self._tg is None:
            self._error = error
            if self._stop is not None:
                self._stop.set()
            return
        self._tg.create_task(self._follow_new_chain(event), name="blockfeed-follow-new-chain")

    async def _follow_new_chain(self, event: FeedEvent) -> None:
        """Policy "follow": save what subscribers acknowledged, record the reset in the store,
        then a new follower starts at the new chain's finalized head."""
        for run in list(self._sockets.values()):
            if run.task is not None:
                run.task.cancel()
        self._sockets.clear()
        await self._save_unsaved(retry=False)
        self._unsaved.clear()
        self._genesis = None
        genesis = await self._fetch_genesis()
        self._genesis = genesis
        if self._store is not None:
            await asyncio.to_thread(self._store.reset_chain, genesis, event.reason)
            self._saved_through = None
        logger.warning("following the new chain (genesis %s) from its finalized head", genesis)
        follower = self._new_follower(start_number=None, anchor=None)
        self._diverged_handled = False
        follower.start(self._now())
        self._pump()
        if self._tg is not None:
            self._tg.create_task(self._learn_chain_facts(), name="blockfeed-chain-facts")

    async def _learn_chain_facts(self) -> None:
        """In the background: the chain's identity (the hashes of blocks 0 and 1, to tell
        another chain from a lagging node) and the runtime's declared slot duration (a better
        prior than a hint). Endpoints are asked in order until one answers; each is asked
        once, so a node that cannot answer costs nothing more."""
        identified = False
        for ep in self._endpoints:
            rpc = self._http_channel(ep.label)
            await self._budget.acquire(ep.label)
            if not identified:
                try:
                    genesis, first = await methods.get_block_hashes(rpc, [0, 1])
                except (RpcError, MalformedFrame, ValueError) as exc:
                    logger.debug("chain identity from %s: %s", ep.label, exc)
                else:
                    identified = genesis is not None
                    self._genesis = self._genesis or genesis
                    if self._follower is not None:
                        self._follower.set_chain_identity(self._genesis, first)
            for api, engine in SLOT_DURATION_APIS:
                try:
                    raw = await methods.state_call(rpc, api, "0x")
                except (RpcError, MalformedFrame) as exc:
                    logger.debug("%s from %s: %s", api, ep.label, exc)
                    continue
                if len(raw) >= 8 and (slot_ms := int.from_bytes(raw[:8], "little")) > 0:
                    self._call(functools.partial(
                        _set_prior, slot_ms / 1000, f"the runtime's {engine} slot duration"))
                    return
            if identified:
                return

    async def _fetch_genesis(self) -> str:
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

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def _timer_loop(self) -> None:
        assert self._wake is not None
        wake = self._wake
        while True:
            follower = self._follower
            assert follower is not None
            deadline = follower.next_deadline()
            delay = None if deadline is None else deadline - self._now()
            wake.clear()
            if delay is None or delay > 0:
                try:
                    async with asyncio.timeout(delay):
                        await wake.wait()
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(0)
            self._call(lambda now, f: f.on_timer(now))

    def _call(self, fn: Callable[[float, Follower], None]) -> None:
        """Run one follower input now, then act on its outputs."""
        follower = self._follower
        if follower is None:
            return
        fn(self._now(), follower)
        self._pump()

    def _pump(self) -> None:
        follower = self._follower
        if follower is None:
            return
        for event in follower.events():
            # The core runs on the loop's monotonic clock; people and alerts get Unix time.
            self._emit_event(dataclasses.replace(event, at=event.at + self._wall_offset_s))
        if follower.diverged is not None and not self._diverged_handled:
            self._diverged_handled = True
            self._on_diverged(follower.diverged)
            return
        blocks = follower.deliverable()
        if blocks:
            (self._contents.push if self._contents else self._deliver)(blocks)
        for action in follower.actions():
            self._execute(action)
        if self._wake is not None:
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
        """``chain_getBlockHash([0, 1, number])`` over HTTP: which chain the endpoint serves."""
        numbers = sorted({0, 1} | ({action.number} if action.number >= 0 else set()))
        try:
            rpc = self._http_channel(action.endpoint)
            await self._budget.acquire(action.endpoint)
            hashes = await methods.get_block_hashes(rpc, numbers)
        except Exception as exc:
            self._request_failed(action, exc, "chain check")
            return
        listed = dict(zip(numbers, hashes, strict=True))
        self._call(lambda now, f: f.on_chain_check(action, listed, now))

    def _fail(self, action: Action, exc: BaseException, *, lied: bool = False) -> None:
        status = getattr(exc, "status", None)
        reason = str(exc) or type(exc).__name__
        pause = getattr(exc, "retry_after_s", None)
        if isinstance(exc, RpcServerError) and exc.is_rate_limit:
            pause = RATE_LIMIT_PAUSE_BLOCKS * self._block_interval_s
        if isinstance(exc, MalformedFrame):
            self._call(lambda now, f: f.on_malformed(getattr(action, "endpoint", ""), now))
        self._call(lambda now, f: f.on_failure(action, reason, now, status=status, lied=lied,
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
                    on_malformed=lambda _reason: self._call(
                        lambda now, f: f.on_malformed(label, now)),
                ))
            except (BlockfeedError, OSError) as exc:
                self._fail(action, exc)
                return
            run.ws = ws
            self._call(lambda now, f: f.on_ws_connected(label, now, attempt=attempt))
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
            self._call(lambda now, f: f.on_ws_subscribed(label, now, attempt=attempt))
            try:
                async for raw in subscription:
                    try:
                        header = header_from_json(raw)
                    except MalformedFrame:
                        self._call(lambda now, f: f.on_malformed(label, now))
                        continue
                    self._call(functools.partial(_ws_header, header, label, attempt))
            except RpcError as exc:
                reason = str(exc)
            self._call(lambda now, f: f.on_ws_closed(label, reason, now, attempt=attempt))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not take the feed down: report a closed socket
            logger.exception("socket session on %s failed unexpectedly", label)
            detail = f"driver error: {type(exc).__name__}"
            self._call(lambda now, f: f.on_ws_closed(label, detail, now, attempt=attempt))
        finally:
            if self._sockets.get(attempt) is run:
                del self._sockets[attempt]
            if ws is not None:
                await asyncio.shield(_close_quietly(ws))

    async def _head_read(self, action: Poll | Probe) -> None:
        """``chain_getFinalizedHead`` (+ ``chain_getHeader`` unless the head is the known one),
        over HTTP, or over the open socket while HTTP backs off."""
        started = self._now()
        try:
            rpc = self._channel(action)
            await self._budget.acquire(action.endpoint)
            head = await methods.get_finalized_head(rpc)
            header = None
            if head != action.known_hash:
                await self._budget.acquire(action.endpoint)
                header = await methods.get_header(rpc, head)
        except Exception as exc:  # never let a poll take the feed down
            self._request_failed(action, exc, "head read")
            return
        latency = self._now() - started
        if isinstance(action, Poll):
            self._call(lambda now, f: f.on_poll_result(action, head, header, now,
                                                       latency_s=latency))
        else:
            self._call(lambda now, f: f.on_probe_result(action, head, header, now,
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
        started = self._now()
        try:
            rpc = self._channel(action)
            await self._budget.acquire(action.endpoint)
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
                await self._budget.acquire(action.endpoint)
                headers += await methods.get_headers(rpc, known)
        except Exception as exc:
            self._request_failed(action, exc, "backfill")
            return
        headers += [None] * (len(hashes) - len(headers))
        latency = self._now() - started
        self._call(lambda now, f: f.on_range_result(action, hashes, headers, now,
                                                    latency_s=latency))

    # ------------------------------------------------------------------ delivery

    def _new_subscription(self, name: str, maxsize: int | None) -> FeedSubscription:
        size = self._config.subscriber_maxsize if maxsize is None else maxsize
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"maxsize must be a positive integer, got {size!r}")
        subscription = FeedSubscription(
            name=name,
            maxsize=size,
            catch_up=self._catch_up,
            last_delivered=lambda: None if self._last_block is None else self._last_block.number,
            on_cancel=self._forget,
            on_progress=self._wake_saver,
        )
        if self._runner is not None and self._runner.done():
            subscription.close(self._error)
        return subscription

    def _wake_saver(self) -> None:
        if self._save_wake is not None:
            self._save_wake.set()

    def _save_frontier(self) -> int | None:
        """Highest number every live subscriber has acknowledged: the checkpoint may move up to
        it. A subscriber that is behind by more than the lag limit is cut off instead (it gets
        ``SubscriberLagged``), so one stuck consumer cannot pin the checkpoint and memory."""
        last = None if self._last_block is None else self._last_block.number
        owed: list[int] = []
        for sub in [*self._iter_subs, *self._callback_subs]:
            number = sub.owed_from()
            if number is None:
                continue
            limit = max(self._lag_limit_blocks, sub.maxsize + 1)
            if last is not None and last - number >= limit:
                if sub.closed:
                    logger.info("closed subscriber %s released the checkpoint (%d blocks "
                                "behind)", sub.name, last - number)
                else:
                    logger.error(
                        "subscriber %s is %d blocks behind (limit %d): cut off, it gets "
                        "SubscriberLagged and no longer holds the checkpoint",
                        sub.name, last - number, limit,
                    )
                sub.cut_off()
                continue
            owed.append(number)
        if owed:
            return min(owed) - 1
        return last

    def _forget(self, subscription: FeedSubscription) -> None:
        self._iter_subs.discard(subscription)
        self._callback_subs.pop(subscription, None)

    def _deliver(self, blocks: list[Block]) -> None:
        """Queue each block for every subscriber (never waiting); the checkpoint follows once
        each subscriber has acknowledged it (see :meth:`_save_frontier`)."""
        subscribers = [*self._iter_subs, *self._callback_subs]
        delivered_at = time.time()
        blocks = [dataclasses.replace(block, delivered_at=delivered_at) for block in blocks]
        for block in blocks:
            if self._config.log_blocks:
                self._log.block(block)
            self._last_block = block
            self._recent_blocks.append(block)
            for subscription in subscribers:
                was_behind = subscription.behind
                subscription.push(block)
                if subscription.behind and not was_behind:
                    logger.warning(
                        "subscriber %s fell %d blocks behind at #%d; it catches up from the "
                        "store, or gets SubscriberLagged without one",
                        subscription.name, subscription.queued, block.number,
                    )
        self._unsaved.extend(blocks)
        if self._save_wake is not None:
            self._save_wake.set()

    async def _catch_up(self, start: int, limit: int) -> list[Block]:
        """Consecutive, parent-linked blocks from ``start`` for a subscriber that fell behind:
        the store's window for saved ones, then memory (blocks not saved yet are all still
        held, since the checkpoint waits for this subscriber). The replay stops at the first
        block that does not link to the one before it: like every delivery path, it never
        hands out a block it could not verify (the subscriber's own link to the first block is
        checked by the subscription)."""
        store = self._store
        if store is None:
            return []
        out: list[Block] = []
        if self._saved_through is not None and start <= self._saved_through:
            try:
                stored = await asyncio.to_thread(store.get_range, start, limit)
            except StoreError as exc:
                logger.error("cannot replay blocks for a lagging subscriber: %s", exc)
                return []
            for block in stored:
                if block.number != start + len(out):
                    break
                out.append(block)
        for held in (self._unsaved, self._recent_blocks):
            if len(out) >= limit:
                break
            out.extend(_consecutive_from(held, start + len(out), limit - len(out)))
        for index in range(1, len(out)):
            if out[index].parent_hash != out[index - 1].hash:
                logger.error("replay for a lagging subscriber stops at #%d: it does not link to "
                             "#%d (damaged state file?)", out[index].number, out[index - 1].number)
                return out[:index]
        return out

    async def _run_callback(self, subscription: FeedSubscription, callback: BlockCallback) -> None:
        """Call ``callback`` for each block; asking for the next block acknowledges this one,
        so a block counts as handled once the callback returned (or raised)."""
        name = subscription.name
        try:
            async for block in subscription:
                try:
                    result = callback(block)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    logger.exception("subscriber %s raised on block #%d; it keeps receiving",
                                     name, block.number)
        except asyncio.CancelledError:
            # The feed is stopping: stay registered, so the final checkpoint does not pass the
            # block this callback still held (it is delivered again after a restart).
            raise
        except BlockfeedError as exc:
            logger.error("subscriber %s stopped: %s", name, exc)
        self._callback_subs.pop(subscription, None)
        self._wake_saver()

    async def _checkpoint_loop(self) -> None:
        assert self._save_wake is not None
        while True:
            await self._save_wake.wait()
            self._save_wake.clear()
            await self._save_unsaved(retry=True)

    async def _save_unsaved(self, *, retry: bool, raise_errors: bool = False) -> None:
        """Save what every subscriber acknowledged; one writer at a time, so the checkpoint
        only moves forward."""
        store = self._store
        if store is None:
            self._unsaved.clear()
            return
        async with self._save_lock:
            delay = 0.5
            while self._unsaved:
                frontier = self._save_frontier()
                if frontier is None:
                    return
                batch = [b for b in self._unsaved if b.number <= frontier]
                if not batch:
                    return
                future = asyncio.ensure_future(asyncio.to_thread(store.save_blocks, batch))
                self._save_inflight = future
                try:
                    await asyncio.shield(future)
                except StoreError as exc:
                    if raise_errors:
                        raise
                    logger.error("checkpoint write failed (will retry): %s", exc)
                    if not retry:
                        return
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    continue
                del self._unsaved[: len(batch)]
                self._saved_through = batch[-1].number

    async def save_checkpoint(self) -> int | None:
        """Write the checkpoint now, up to what every subscriber has acknowledged.

        The feed also does this by itself after every acknowledgement; awaiting it bounds how
        many handled blocks a crash can repeat (``blockfeed watch`` calls it every
        ``SAVE_BATCH_BLOCKS`` lines). Returns the checkpoint's block number (None: no store, or
        nothing saved yet). A failed write raises :class:`StoreError`.
        """
        await self._save_unsaved(retry=False, raise_errors=True)
        return self._saved_through

    async def _final_checkpoint(self) -> None:
        """Wait for a write in flight, then save what is left (never moves backwards)."""
        inflight = self._save_inflight
        if inflight is not None and not inflight.done():
            # Its waiter was cancelled but the thread still writes; saving after it keeps the
            # checkpoint moving forward only (the batch is saved again below, harmlessly).
            await asyncio.wait({inflight})
        try:
            await self._save_unsaved(retry=False)
        except Exception:
            logger.exception("final checkpoint write failed")

    # ------------------------------------------------------------------ events

    def _emit_event(self, event: FeedEvent) -> None:
        self._recent_events.append(event)
        self._log.event(event)
        for hook in list(self._hooks):
            try:
                result = hook(event)
                if inspect.isawaitable(result) and self._tg is not None:
                    self._tg.create_task(_await_hook(result), name="blockfeed-event-hook")
            except Exception:
                logger.exception("event hook raised on %s", event.kind)


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


def _consecutive_from(held: Sequence[Block] | deque[Block], start: int, limit: int) -> list[Block]:
    """Up to ``limit`` blocks from ``start`` out of ``held`` (consecutive numbers, ascending)."""
    if not held or limit <= 0:
        return []
    first = held[0].number
    if not first <= start <= held[-1].number:
        return []
    offset = start - first
    if isinstance(held, deque):
        return list(itertools.islice(held, offset, offset + limit))
    return list(held[offset : offset + limit])


def _set_prior(seconds: float, source: str, now: float, follower: Follower) -> None:
    follower.set_block_time_prior(seconds, source, now)


def _ws_header(header: Header, label: str, attempt: int, now: float, follower: Follower) -> None:
    follower.on_ws_header(header, label, now, attempt=attempt)


async def _await_hook(result: Awaitable[Any]) -> None:
    try:
        await result
    except Exception:
        logger.exception("async event hook raised")


async def _close_quietly(ws: SocketClient) -> None:
    try:
        await ws.close()
    except Exception:  # closing must never raise out of a finally
        logger.debug("socket close failed", exc_info=True)


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
