"""Build the real feed and store from :class:`Settings` (what ``blockfeed serve`` runs).

Kept apart from the app so the app itself depends only on the feed/store Protocols, and imports of
the feed, the store and the sinks happen only when a service actually starts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from blockfeed.config import MEMORY_STATE, Settings


def open_state_store(settings: Settings) -> Any:
    """Open the SQLite store at the configured path.

    The store owns its path: it creates a missing directory (0700) and the file (0600) itself,
    exactly as for ``watch``.
    """
    from blockfeed.store import open_store

    return open_store(settings.resolved_state())


def build_feed(settings: Settings, *, store: Any, **options: Any) -> Any:
    """A :class:`BlockFeed` for the configured endpoints, tuned by
    :meth:`Settings.feed_config`; ``options`` (``connector=``, FeedConfig fields) pass through."""
    from blockfeed.feed import BlockFeed

    if settings.http_endpoints:
        options.setdefault("http_endpoints", list(settings.http_endpoints))
    return BlockFeed(settings.resolved_endpoints(), settings.feed_config(), store=store,
                     **options)


def check_sinks(settings: Settings) -> None:
    """Build every configured sink once (no I/O) so bad sink settings fail before anything runs.

    Raises :class:`ConfigError` (a missing webhook secret, a bad stream name, ...).
    """
    from blockfeed.sinks import open_sink

    for url in settings.sink_urls():
        open_sink(url, redis_stream=settings.redis_stream, redis_maxlen=settings.redis_maxlen)


@asynccontextmanager
async def running_sinks(settings: Settings, feed: Any, store: Any) -> AsyncIterator[list[Any]]:
    """Run every configured sink (``--sink``, ``--redis``) on ``feed`` while the block runs.

    Each sink subscribes to the feed before it starts, so none misses a block; closing one
    unsubscribes it and gives its outbox a moment to drain (the rest is caught up next start).
    """
    from blockfeed.sinks import open_sink

    path = settings.resolved_state()
    state_dir = None if path == MEMORY_STATE else Path(path).parent
    sinks = [
        open_sink(
            url,
            store=store,
            state_dir=state_dir,
            redis_stream=settings.redis_stream,
            redis_maxlen=settings.redis_maxlen,
        )
        for url in settings.sink_urls()
    ]
    # A sink's own events (a Redis stream of another chain) join the feed's, so they reach the
    # log, /status, the SSE stream and the alert hooks like every other event.
    emit = getattr(feed, "emit_event", None)
    async with AsyncExitStack() as stack:
        for sink in sinks:
            if emit is not None and hasattr(sink, "add_event_hook"):
                sink.add_event_hook(emit)
            sink.attach(feed)
            await sink.start()
            stack.push_async_callback(sink.aclose)
        yield sinks
