"""The FastAPI app: ``create_app(settings)`` for the service, ``create_app(feed=...)`` for tests.

(This module is not called ``app``: a submodule of that name would shadow the package attribute
``blockfeed.gateway.app``, the object ``uvicorn blockfeed.gateway:app`` must find.)

The app never talks to a node. It holds one feed subscription (the :class:`SseHub`), three event
hooks (SSE ``mode`` events, the mode timeline, alerts) and read access to the block window; every
route answers from those. Bad input gets a 4xx whose ``detail`` says what to change; a store that
cannot be read gets 503; nothing a client sends produces a 5xx.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hmac
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from blockfeed.codec.header import MAX_BLOCK_NUMBER
from blockfeed.config import DEFAULT_EPOCH_LENGTH, DEFAULT_NETWORK, Settings
from blockfeed.contents.filters import EventFilter
from blockfeed.errors import ConfigError
from blockfeed.gateway import models
from blockfeed.gateway.alerts import AlertDispatcher
from blockfeed.gateway.event_filter import SseEventFilter
from blockfeed.gateway.hub import (
    DEFAULT_CLIENT_QUEUE_SIZE,
    DEFAULT_KEEPALIVE_S,
    DEFAULT_RING_SIZE,
    DEFAULT_WRITE_TIMEOUT_S,
    HubFull,
    SseHub,
    block_payload,
    encode_frame,
)
from blockfeed.gateway.limits import default_max_sse_clients
from blockfeed.gateway.metrics import CONTENT_TYPE, GatewayCollector, new_registry, render
from blockfeed.gateway.protocols import FeedLike, StoreLike, SubscriptionLike
from blockfeed.gateway.sse import EventStreamResponse
from blockfeed.gateway.status import (
    RECENT_EVENTS_SHOWN,
    ModeTimeline,
    readiness,
    status_payload,
)
from blockfeed.gateway.window import BlockWindow, WindowUnavailable
from blockfeed.sinks.metrics import SinkCollector, sink_rows
from blockfeed.types import Block, FeedEvent
from blockfeed.util.redact import redact_url

log = logging.getLogger(__name__)

DEFAULT_PAGE = 100
MAX_PAGE = 1000
"""``/blocks?limit=`` is capped here (a larger value is accepted and clamped)."""
DEFAULT_READY_MAX_BLOCK_AGE_S = 60.0
FEED_SUBSCRIPTION_QUEUE = 10_000
"""The hub's own queue inside the feed; it drains in microseconds per block."""
BURST_YIELD_EVERY = 64
"""Blocks fanned out back to back before the hub lets the SSE writers run."""
NO_EVENT_ID = -1
"""``Last-Event-ID`` not sent (the header itself must be a block number >= 0)."""
HUB_FULL_RETRY_AFTER_S = 5
"""``Retry-After`` of the 503 a stream client gets at the client cap."""
DOCS_ASSETS = "/docs-assets"
"""Where the Swagger UI and ReDoc scripts are served from (no CDN: /docs works offline)."""
API_DESCRIPTION = (
    "Finalized Substrate block headers, exactly once and in order, with a resumable "
    "Server-Sent Events stream, Prometheus metrics and a live dashboard at `/`."
)


@dataclass(frozen=True, kw_only=True)
class GatewayOptions:
    """Knobs of the app itself; :meth:`from_settings` maps the service settings onto them."""

    network: str = DEFAULT_NETWORK
    epoch_length: int = DEFAULT_EPOCH_LENGTH
    admin_token: str | None = None
    ready_max_block_age_s: float = DEFAULT_READY_MAX_BLOCK_AGE_S
    keepalive_s: float = DEFAULT_KEEPALIVE_S
    client_queue_size: int = DEFAULT_CLIENT_QUEUE_SIZE
    ring_size: int = DEFAULT_RING_SIZE
    max_sse_clients: int = field(default_factory=default_max_sse_clients)
    """Default: the open-file limit minus a reserve (one descriptor per stream)."""
    write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S
    secrets: tuple[str, ...] = ()
    contents: str = "header"
    """The feed's contents level; ``/stream?events=`` needs ``events`` or ``full``."""
    clock: Callable[[], float] = field(default=time.time)

    def __post_init__(self) -> None:
        if self.admin_token is not None and (
            not self.admin_token.strip() or self.admin_token != self.admin_token.strip()
        ):
            raise ConfigError("admin token must not be blank or start or end with whitespace")
        if self.max_sse_clients < 1 or self.write_timeout_s <= 0:
            raise ConfigError("max_sse_clients must be >= 1 and write_timeout_s > 0")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> GatewayOptions:
        token = settings.admin_token.get_secret_value() if settings.admin_token else None
        values: dict[str, Any] = {
            "network": settings.network,
            "epoch_length": settings.epoch_length,
            "admin_token": token,
            "ready_max_block_age_s": settings.ready_age_limit_s(),
            "secrets": tuple(settings.secret_urls()),
            "contents": settings.contents,
        }
        values.update(overrides)
        return cls(**values)


class Gateway:
    """Per-app state the routes read: the feed, the hub, the window, the timeline, alerts."""

    def __init__(self, options: GatewayOptions, alerts: AlertDispatcher | None) -> None:
        self.options = options
        self.alerts = alerts
        self.hub = SseHub(
            epoch_length=options.epoch_length,
            ring_size=options.ring_size,
            client_queue_size=options.client_queue_size,
            max_clients=options.max_sse_clients,
            write_timeout_s=options.write_timeout_s,
        )
        self.feed: FeedLike | None = None
        self.store: StoreLike | None = None
        self.window = BlockWindow(self.hub, None)
        self.timeline: ModeTimeline | None = None
        self.events: deque[FeedEvent] = deque(maxlen=RECENT_EVENTS_SHOWN)
        """Recent feed events, wall-clock stamped (what /status shows)."""
        self._hooks: list[Callable[[FeedEvent], Any]] = []
        self._subscription: SubscriptionLike | None = None
        self._since_yield = 0
        self.collector = GatewayCollector(
            status=lambda: self.require_feed().status(),
            hub=self.hub,
            alert_counts=(lambda: dict(alerts.counts)) if alerts is not None else None,
            clock=options.clock,
        )
        self.registry = new_registry(self.collector)
        self.sinks: list[Any] = []
        """Running sinks (``--sink``): a row each in /status, the dashboard and /metrics."""
        self.registry.register(SinkCollector(lambda: self.sinks))

    def attach(self, feed: FeedLike, store: StoreLike | None) -> None:
        """Subscribe the hub and the hooks; called before the feed starts so nothing is missed."""
        self.feed = feed
        self.store = store
        self.window = BlockWindow(self.hub, store)
        status = feed.status()
        self.timeline = ModeTimeline(initial_mode=status.mode, started_at=self.options.clock())
        self._hooks = [self.events.append, self.timeline.observe, self.hub.publish_event,
                       self.collector.observe_event]
        if self.alerts is not None:
            self._hooks.append(self.alerts.on_event)
        feed.add_event_hook(self._on_event)
        self._subscription = feed.subscribe(
            self._publish, name="gateway-sse", maxsize=FEED_SUBSCRIPTION_QUEUE
        )

    async def _publish(self, block: Block) -> None:
        """Feed subscriber: fan the block out; during a backfill burst, let writers drain.

        A burst (thousands of backfilled blocks after an outage) would otherwise fill every
        client's queue before any writer runs, and drop them all.
        """
        self.collector.observe_block(block)
        try:
            self.hub.publish_block(block)
        except Exception:
            log.exception("publishing block #%d to SSE clients failed", block.number)
        self._since_yield += 1
        if self._since_yield >= BURST_YIELD_EVERY:
            self._since_yield = 0
            await asyncio.sleep(0)

    def _on_event(self, event: FeedEvent) -> None:
        """Feed event hook: stamp the event with wall-clock time, then hand it on.

        The feed stamps events with its loop's monotonic clock; people, browsers and webhooks
        need Unix time. Hooks run synchronously when the event happens, so "now" is its time.
        """
        event = dataclasses.replace(event, at=self.options.clock())
        for hook in self._hooks:
            try:
                hook(event)
            except Exception:
                log.exception("gateway event hook %s failed", getattr(hook, "__qualname__", hook))

    def detach(self) -> None:
        if self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None

    def require_feed(self) -> FeedLike:
        if self.feed is None:
            raise HTTPException(503, detail="the feed is not running yet; retry in a moment")
        return self.feed

    def latest_block(self) -> Block | None:
        last = self.require_feed().status().last_block
        if last is not None:
            return last
        bounds = self.window.bounds()
        return self.window.get(bounds[1]) if bounds is not None else None


@functools.cache
def _dashboard_html() -> str:
    return resources.files("blockfeed.gateway").joinpath("static/index.html").read_text("utf-8")


def create_app(
    settings: Settings | None = None,
    *,
    feed: FeedLike | None = None,
    store: StoreLike | None = None,
    options: GatewayOptions | None = None,
    alerts: AlertDispatcher | None = None,
    manage_feed: bool = True,
) -> FastAPI:
    """Build the gateway.

    - ``create_app(settings)``: the service; the lifespan opens the store, builds the feed from
      ``settings`` and runs both (``blockfeed serve``, ``uvicorn blockfeed.gateway:app``).
    - ``create_app(feed=..., store=...)``: around an existing feed (tests, embedding). The
      lifespan enters ``async with feed`` unless ``manage_feed=False``.
    """
    if settings is None and feed is None:
        raise ValueError("create_app needs settings or a feed")
    if options is None:
        options = (
            GatewayOptions.from_settings(settings) if settings is not None else GatewayOptions()
        )
    if alerts is None and settings is not None and settings.alert_webhooks:
        alerts = AlertDispatcher(
            settings.alert_webhooks, network=settings.network, secrets=options.secrets
        )
    gateway = Gateway(options, alerts)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from blockfeed.gateway import runtime

        async with AsyncExitStack() as stack:
            run_feed, run_store = feed, store
            if run_feed is None:
                assert settings is not None
                run_store = runtime.open_state_store(settings)
                stack.callback(run_store.close)
                run_feed = runtime.build_feed(settings, store=run_store)
            if settings is not None and settings.sink_urls():
                gateway.sinks = await stack.enter_async_context(
                    runtime.running_sinks(settings, run_feed, run_store)
                )
                stack.callback(gateway.sinks.clear)
            if gateway.feed is None:
                gateway.attach(run_feed, run_store)
            stack.callback(gateway.detach)
            keep_alive = asyncio.create_task(gateway.hub.keep_alive(gateway.options.keepalive_s))
            stack.callback(keep_alive.cancel)
            watchdog = asyncio.create_task(gateway.hub.drop_stalled_writers())
            stack.callback(watchdog.cancel)
            if alerts is not None:
                await alerts.start()
                stack.push_async_callback(alerts.stop)
            if manage_feed or feed is None:
                await stack.enter_async_context(run_feed)
            yield

    app = FastAPI(
        title="blockfeed gateway",
        version=_version(),
        description=API_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.gateway = gateway
    _add_offline_docs(app)
    if not manage_feed and feed is not None:
        gateway.attach(feed, store)  # usable without a lifespan (ASGI test transports)
    _add_routes(app, gateway)
    return app


def _add_offline_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` with their scripts served by the gateway itself.

    FastAPI's pages load Swagger UI from a CDN, which leaves them blank in an air-gapped
    deployment. The ``fastapi-offline`` package ships the same assets (Swagger UI 5, which reads
    OpenAPI 3.1, and ReDoc); we serve its files and render the pages with FastAPI's helpers.
    """
    assets = resources.files("fastapi_offline").joinpath("static")  # the package's asset folder
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")
    title = f"{app.title} - API"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=title,
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=title,
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("blockfeed")
    except Exception:  # pragma: no cover - running from a source tree without metadata
        return "0"


JSON_ERROR: dict[str, Any] = {
    "description": "Error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
}
SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One Server-Sent Event (OpenAPI < 3.2: the schema of each event)",
    "properties": {
        "event": {"type": "string", "enum": ["block", "mode", "feed"]},
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "block number"},
        "data": {"type": "string", "description": "JSON: a block, or a feed event"},
        "retry": {"type": "integer"},
    },
    "required": ["data"],
}
_EVENT_NAME = r"[A-Za-z_][A-Za-z0-9_]*(\.([A-Za-z_][A-Za-z0-9_]*|\*))?"
_EVENTS_PATTERN = rf"^{_EVENT_NAME}(,{_EVENT_NAME})*$"
"""``/stream?events=``: comma-separated ``Pallet.Name``, ``Pallet`` or ``Pallet.*``."""
BlockNumber = Annotated[int, Path(ge=0, le=MAX_BLOCK_NUMBER, description="block number")]
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": models.ErrorOut},
    503: {"model": models.ErrorOut},
}


def _add_routes(app: FastAPI, gw: Gateway) -> None:
    @app.exception_handler(WindowUnavailable)
    async def _store_down(request: Request, exc: WindowUnavailable) -> JSONResponse:
        log.warning("block window unavailable: %s", exc)
        return JSONResponse({"detail": "the block store cannot be read right now"}, status_code=503)

    @app.get("/", include_in_schema=False)
    async def dashboard() -> HTMLResponse:
        return HTMLResponse(_dashboard_html())

    @app.get("/health", response_model=models.HealthOut, summary="Liveness: the process answers")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/ready",
        response_model=models.ReadyOut,
        responses={503: {"model": models.ReadyOut}},
        summary="Readiness: connected and the last block is recent",
    )
    async def ready() -> Any:
        ok, reason = _readiness(gw)
        body = {"ready": ok, "reason": reason}
        return body if ok else JSONResponse(body, status_code=503)

    @app.get("/status", summary="Mode, last block, epoch, time per mode, timeline, events")
    async def status() -> dict[str, Any]:
        feed = gw.require_feed()
        assert gw.timeline is not None
        payload = status_payload(
            feed.status(),
            now=gw.options.clock(),
            network=gw.options.network,
            epoch_length=gw.options.epoch_length,
            timeline=gw.timeline,
            events=list(gw.events),
            sse_clients=gw.hub.client_count,
            ready=_readiness(gw),
        )
        payload["sinks"] = sink_rows(gw.sinks)
        return payload

    @app.get(
        "/blocks/latest", response_model=models.BlockOut, responses=ERRORS,
        summary="The last delivered finalized block",
    )
    async def latest() -> dict[str, Any]:
        block = gw.latest_block()
        if block is None:
            raise HTTPException(404, detail="no block has been delivered yet")
        return block_payload(block, gw.options.epoch_length)

    @app.get(
        "/blocks/{number}", response_model=models.BlockOut, responses=ERRORS,
        summary="One finalized block from the kept window",
    )
    async def block(number: BlockNumber) -> dict[str, Any]:
        found = gw.window.get(number)
        if found is None:
            raise HTTPException(404, detail=_outside(number, gw.window.bounds()))
        return block_payload(found, gw.options.epoch_length)

    @app.get(
        "/blocks", response_model=models.BlocksPageOut, responses=ERRORS,
        summary="Consecutive blocks from the kept window",
    )
    async def blocks(
        from_: Annotated[
            int | None,
            Query(alias="from", ge=0, le=MAX_BLOCK_NUMBER,
                  description="first block number (default: the newest page)"),
        ] = None,
        limit: Annotated[
            int, Query(ge=1, le=MAX_BLOCK_NUMBER, description=f"at most {MAX_PAGE} (clamped)")
        ] = DEFAULT_PAGE,
    ) -> dict[str, Any]:
        limit = min(limit, MAX_PAGE)
        bounds = gw.window.bounds()
        if bounds is None:
            raise HTTPException(404, detail="no blocks are kept yet; retry once the feed delivers")
        first, last = bounds
        start = max(first, last - limit + 1) if from_ is None else from_
        if not first <= start <= last:
            raise HTTPException(404, detail=_outside(start, bounds))
        found = gw.window.blocks(start, limit)
        end = found[-1].number if found else start - 1
        return {
            "from": start,
            "count": len(found),
            "limit": limit,
            "first_available": first,
            "last_available": last,
            "next": end + 1 if end < last else None,
            "blocks": [block_payload(b, gw.options.epoch_length) for b in found],
        }

    @app.get(
        "/stream",
        status_code=200,
        response_class=EventStreamResponse,
        responses={
            200: {
                "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}},
                "description": "`event: block` (id = number, JSON data), `event: mode` and "
                "`event: feed` frames; `: keep-alive` comments while idle",
            },
            # Errors are JSON although the route's media type is text/event-stream.
            **{code: JSON_ERROR for code in (400, 404, 409, 503)},
        },
        summary="Server-Sent Events: blocks (resumable with Last-Event-ID or ?from=) and modes",
    )
    async def stream(
        from_: Annotated[
            int | None,
            Query(alias="from", ge=0, le=MAX_BLOCK_NUMBER,
                  description="replay from this block number, then continue live"),
        ] = None,
        # ``int`` with a sentinel, not ``int | None``: the schema then says "an integer, or
        # leave it out", not "or null", which generated clients send as the string "null".
        last_event_id: Annotated[
            int,
            Header(
                ge=0,
                le=MAX_BLOCK_NUMBER - 1,  # the next block must be a block number, as for ?from=
                description="resume after this block number (sent by EventSource)",
            ),
        ] = NO_EVENT_ID,
        events: Annotated[
            str | None,
            Query(max_length=2000, pattern=_EVENTS_PATTERN, description="only these events, "
                  "e.g. SubtensorModule.WeightsSet,Balances.Transfer (a bare pallet keeps all "
                  "of its events; needs a gateway started with --contents events or full)"),
        ] = None,
        skip_empty: Annotated[
            bool, Query(description="with events=: leave out blocks with none of them")
        ] = False,
    ) -> Response:
        frame_filter = _event_filter(gw, events, skip_empty)
        start = _resume_point(from_, last_event_id)
        await gw.hub.admission.take(1)  # a reconnect storm is set up over several iterations
        if start is not None:
            _check_replayable(gw, start)
        try:
            client = gw.hub.register()  # live first, then replay (see sse.py)
        except HubFull as exc:
            raise HTTPException(
                503,
                detail=f"{exc}; retry later",
                headers={"Retry-After": str(HUB_FULL_RETRY_AFTER_S), "Connection": "close"},
            ) from None
        return EventStreamResponse(
            hub=gw.hub,
            client=client,
            window=gw.window,
            start_number=start,
            first_frames=_mode_snapshot(gw),
            frame_filter=frame_filter,
        )

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}},
        summary="Prometheus metrics",
    )
    async def metrics() -> Response:
        gw.require_feed()
        return Response(render(gw.registry), media_type=CONTENT_TYPE)

    @app.post(
        "/admin/reconnect",
        status_code=202,
        response_model=models.AcceptedOut,
        responses={
            401: {"model": models.ErrorOut},
            403: {"model": models.ErrorOut},
            404: {"model": models.ErrorOut},
        },
        summary="Recycle the WebSocket (needs Authorization: Bearer <BLOCKFEED_ADMIN_TOKEN>)",
    )
    async def admin_reconnect(
        authorization: Annotated[str | None, Header(description="Bearer <token>")] = None,
    ) -> dict[str, str]:
        _authorize(gw.options.admin_token, authorization)
        gw.require_feed().request_reconnect("admin")
        log.warning("admin requested a socket reconnect")
        return {"status": "accepted", "action": "reconnect"}


def _event_filter(gw: Gateway, events: str | None, skip_empty: bool) -> SseEventFilter | None:
    """The ``?events=`` filter of one stream (None without one); 400 for a bad request."""
    if events is None:
        return None
    if gw.options.contents not in ("events", "full"):
        raise HTTPException(409, detail="events= needs a gateway started with --contents events "
                            f"or full (this one fetches {gw.options.contents})")
    try:
        return SseEventFilter(EventFilter.parse(events), skip_empty=skip_empty)
    except ConfigError as exc:
        raise HTTPException(400, detail=str(exc)) from None


def _readiness(gw: Gateway) -> tuple[bool, str]:
    if gw.feed is None:
        return False, "starting: the feed is not running yet"
    return readiness(gw.feed.status(), max_block_age_s=gw.options.ready_max_block_age_s)


def _outside(number: int, bounds: tuple[int, int] | None) -> str:
    if bounds is None:
        return f"block {number} is not available: no blocks are kept yet"
    first, last = bounds
    if number < first:
        return f"block {number} is older than the kept window ({first}..{last})"
    return f"block {number} is not finalized yet or not seen (latest is {last})"


def _resume_point(from_: int | None, last_event_id: int) -> int | None:
    """Where a stream starts: after ``Last-Event-ID`` (it wins over ``?from=``, which
    EventSource repeats), else at ``?from=``. Both are validated alike (a value past the last
    block number is the same 422, not a stream that never delivers).
    """
    return from_ if last_event_id == NO_EVENT_ID else last_event_id + 1


def _check_replayable(gw: Gateway, start: int) -> None:
    """Refuse a resume point the gateway can no longer replay (before the stream starts)."""
    bounds = gw.window.bounds()
    head = max(bounds[1] if bounds else -1, gw.hub.head if gw.hub.head is not None else -1)
    if start > head:
        return  # the future: it arrives live
    if bounds is None or start < bounds[0]:
        first = f" (first available: {bounds[0]})" if bounds else ""
        raise HTTPException(
            404, detail=f"cannot resume at block {start}: it is older than the kept window{first}"
        )


_redacted = functools.lru_cache(maxsize=64)(redact_url)
"""Every new stream shows the endpoint; redacting it costs about 0.2 ms, the URL rarely changes."""


def _mode_snapshot(gw: Gateway) -> bytes:
    """The ``event: mode`` frame every new stream starts with, so a page knows the mode at once."""
    status = gw.require_feed().status()
    return encode_frame(
        "mode",
        {
            "kind": "snapshot",
            "at": gw.options.clock(),
            "reason": "current mode",
            "old_mode": None,
            "new_mode": str(status.mode),
            "endpoint": _redacted(status.endpoint) if status.endpoint else None,
            "details": {"finality_stalled": status.finality_stalled},
        },
    )


def _authorize(token: str | None, header: str | None) -> None:
    """Admin routes: off (404) without a token, 401 without credentials, 403 if wrong."""
    if not token:
        raise HTTPException(404, detail="admin routes are off: set BLOCKFEED_ADMIN_TOKEN to enable")
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise HTTPException(
            401,
            detail="missing credentials: send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise HTTPException(403, detail="wrong admin token")
