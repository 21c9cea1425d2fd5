"""BlockFeed: the public face of the feed, and its lifecycle.

A feed is three parts, each in its own module:

* :mod:`blockfeed.feed.driver` runs the sans-I/O :class:`~blockfeed.core.Follower`'s actions
  over the clients an injectable :class:`~blockfeed.rpc.connector.Connector` builds, and its
  timer;
* :mod:`blockfeed.feed.delivery` hands verified blocks to subscribers, tracks what they
  acknowledged and moves the checkpoint (its docstring says what repeats across a crash);
* this module's :class:`BlockFeed` holds both: settings (one frozen
  :class:`~blockfeed.feed.config.FeedConfig`), the lifecycle, the public API, status, events
  and hooks, and the policy when every endpoint serves another chain.

One ``asyncio.TaskGroup`` owns the socket sessions, the HTTP requests, the timer, the checkpoint
writer and the callback subscribers, so nothing is left running when ``async with feed`` exits;
the final checkpoint write is shielded from cancellation.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any

from blockfeed.contents import contents_stage, filtered_callback
from blockfeed.errors import ChainDiverged, ConfigError
from blockfeed.feed.config import DEFAULT_LAG_LIMIT_BLOCKS, FeedConfig
from blockfeed.feed.delivery import BlockCallback, Delivery
from blockfeed.feed.driver import Driver
from blockfeed.feed.endpoints import build_endpoints, network_url
from blockfeed.feed.logs import FeedLog
from blockfeed.feed.status import FeedStatus
from blockfeed.feed.subscribers import FeedSubscription
from blockfeed.rpc.connector import Connector, NetworkConnector
from blockfeed.store import CheckpointStore
from blockfeed.types import FeedEvent, Mode

logger = logging.getLogger("blockfeed")

RECENT_EVENTS_KEPT = 50

EventHook = Callable[[FeedEvent], Any]


class _Stop(Exception):
    """Raised inside the task group to cancel every child on a normal stop."""


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
    block (see :mod:`blockfeed.feed.delivery`: at least once across crashes, and exactly what
    repeats).
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
        self._start_at = start_at
        self._store = store
        self._log = FeedLog(epoch_length=cfg.epoch_length, emoji=cfg.emoji, clock=_loop_time)
        self._delivery = Delivery(
            store=store,
            subscriber_maxsize=cfg.subscriber_maxsize,
            lag_limit_blocks=cfg.lag_limit_blocks or max(
                DEFAULT_LAG_LIMIT_BLOCKS, 0 if store is None else int(store.window)),
            log=self._log,
            log_blocks=cfg.log_blocks,
        )
        # contents="timestamp"|"events"|"full": verified blocks are enriched before delivery.
        self._contents = contents_stage(
            cfg.contents, store=store, deliver=self._delivery.deliver,
            on_event=self._emit_event, rpcs=lambda: self._driver.http_clients())
        self._driver = Driver(
            self._endpoints, cfg, NetworkConnector() if connector is None else connector,
            deliver=self._contents.push if self._contents else self._delivery.deliver,
            emit=self._emit_event,
            on_diverged=self._on_diverged,
        )

        # runtime state (created in __aenter__)
        self._runner: asyncio.Task[None] | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._stop: asyncio.Event | None = None
        self._ready: asyncio.Event | None = None
        self._hooks: list[EventHook] = []
        self._recent_events: deque[FeedEvent] = deque(maxlen=RECENT_EVENTS_KEPT)
        self._started_wall = time.time()
        self._error: BaseException | None = None

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
        follower = self._driver.follower
        return Mode.STARTING if follower is None else follower.mode

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
        return self._delivery.add_callback(label, maxsize, callback)

    def blocks(self, *, name: str | None = None, maxsize: int | None = None) -> FeedSubscription:
        """A new async iterator over blocks delivered from now on (what ``async for`` uses).

        Asking for the next block acknowledges the previous one; ``await it.aclose()`` after
        the last block you handled acknowledges it too (otherwise a restart repeats it).
        """
        return self._delivery.add_iterator(name, maxsize)

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
        self._driver.call(lambda now, f: f.request_reconnect(reason, now))

    async def save_checkpoint(self) -> int | None:
        """Write the checkpoint now, up to what every subscriber has acknowledged.

        The feed also does this by itself after every acknowledgement; awaiting it bounds how
        many handled blocks a crash can repeat (``blockfeed watch`` calls it every
        ``SAVE_BATCH_BLOCKS`` lines). Returns the checkpoint's block number (None: no store, or
        nothing saved yet). A failed write raises :class:`StoreError`.
        """
        return await self._delivery.save_checkpoint()

    def status(self) -> FeedStatus:
        """A frozen snapshot: mode, last block, time per mode, counters, endpoint health."""
        follower = self._driver.follower
        now_wall = time.time()
        last = self._delivery.last_block
        subscribers = self._delivery.subscriber_count
        if follower is None:
            return FeedStatus(
                mode=Mode.STARTING, finality_stalled=False, endpoint=None, last_block=last,
                last_block_age_s=None if last is None else max(0.0, now_wall - last.received_at),
                started_at=self._started_wall,
                mode_seconds={"starting": max(0.0, now_wall - self._started_wall)},
                reconnects=0, blocks_by_source={}, transitions={}, probes={},
                malformed_frames=0,
                block_interval_s=self._driver.core_config.block_time_s,
                endpoints=[{"endpoint": ep.label} for ep in self._endpoints],
                subscribers=subscribers, recent_events=list(self._recent_events),
                error=None if self._error is None else str(self._error),
            )
        now = self._driver.now()
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
            request_budget=self._driver.budget.snapshot(),
            block_time_prior_s=follower.block_time_prior_s,
            error=str(self._error) if self._error is not None else follower.blocked,
        )

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> BlockFeed:
        if self._runner is not None:
            raise RuntimeError("this BlockFeed was already started; create a new one")
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._started_wall = time.time()
        self._driver.open_clients()
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
            self._driver.detach()
            self._delivery.detach()
            await asyncio.shield(self._delivery.final_checkpoint())
            await self._driver.close_clients()
            self._delivery.close_all(self._error)
            self._log.stopped(self._delivery.last_block)

    async def _main(self) -> None:
        """Bind the store, start the follower, then run the checkpoint writer (and contents)."""
        anchor: tuple[int, str] | None = None
        start_number = self._start_at
        if self._store is not None:
            genesis = self._driver.genesis = await self._driver.fetch_genesis()
            store = self._store
            await asyncio.to_thread(store.bind_chain, genesis)
            checkpoint = await asyncio.to_thread(store.checkpoint)
            if start_number is None and checkpoint is not None:
                anchor = checkpoint
                self._delivery.saved_through = checkpoint[0]
                logger.info("resuming after checkpoint #%d", checkpoint[0])
        assert self._tg is not None and self._ready is not None
        tg = self._tg
        self._delivery.start(tg)
        self._driver.start(tg, start_number=start_number, anchor=anchor)
        self._ready.set()
        tg.create_task(self._delivery.checkpoint_loop(), name="blockfeed-checkpoint")
        if self._contents is not None:
            tg.create_task(self._contents.run(), name="blockfeed-contents")

    # ------------------------------------------------------------------ another chain

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
        self._driver.drop_sockets()
        await self._delivery.save_unsaved(retry=False)
        self._delivery.unsaved.clear()
        self._driver.genesis = None
        genesis = await self._driver.fetch_genesis()
        self._driver.genesis = genesis
        if self._store is not None:
            await asyncio.to_thread(self._store.reset_chain, genesis, event.reason)
            self._delivery.saved_through = None
        logger.warning("following the new chain (genesis %s) from its finalized head", genesis)
        self._driver.restart()

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


def _loop_time() -> float:
    """The running loop's clock (the feed measures every duration on it)."""
    return asyncio.get_running_loop().time()


async def _await_hook(result: Awaitable[Any]) -> None:
    try:
        await result
    except Exception:
        logger.exception("async event hook raised")


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
