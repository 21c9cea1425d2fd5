"""Build the real feed and store from :class:`Settings` (what ``blockfeed serve`` runs).

Kept apart from the app so the app itself depends only on the feed/store Protocols, and imports of
the feed, the store and Redis happen only when a service actually starts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from blockfeed.config import Settings
from blockfeed.errors import ConfigError


def open_state_store(settings: Settings) -> Any:
    """Open the SQLite store at the configured path.

    The store owns its path: it creates a missing directory (0700) and the file (0600) itself,
    exactly as for ``watch``.
    """
    from blockfeed.store import open_store

    return open_store(settings.resolved_state())


def build_feed(settings: Settings, *, store: Any, **options: Any) -> Any:
    """A :class:`BlockFeed` for the configured endpoints; ``options`` pass through."""
    from blockfeed.feed import BlockFeed

    if settings.http_endpoints:
        options.setdefault("http_endpoints", list(settings.http_endpoints))
    return BlockFeed(
        settings.resolved_endpoints(),
        store=store,
        block_time_s=settings.block_time_s,
        epoch_length=settings.epoch_length,
        **options,
    )


@asynccontextmanager
async def redis_publisher(settings: Settings, feed: Any, store: Any) -> AsyncIterator[None]:
    """Publish every feed block to the configured Redis stream while the block runs."""
    try:
        from blockfeed.sinks.redis import RedisPublisher
    except ImportError as exc:  # pragma: no cover - the sink ships with the package
        raise ConfigError("--redis needs blockfeed.sinks.redis, which is not available") from exc
    assert settings.redis_url is not None
    publisher = RedisPublisher(
        settings.redis_url, stream=settings.redis_stream, maxlen=settings.redis_maxlen, store=store
    )
    # The publisher's events (a stream of another chain) join the feed's, so they reach the
    # log, /status, the SSE stream and the alert hooks like every other event.
    emit = getattr(feed, "_emit_event", None)
    if emit is not None:
        publisher.add_event_hook(emit)
    async with publisher:  # closing it unsubscribes and drains what it can
        publisher.attach(feed)
        yield
