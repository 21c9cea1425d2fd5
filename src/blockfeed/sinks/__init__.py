"""Where blocks go besides in-process subscribers: one :class:`Sink` per target.

Every sink implements :class:`blockfeed.sinks.base.Sink`: idempotent by block number, in order,
from its own cursor, with its own outbox and catch-up, never blocking the feed or the others.
:func:`open_sink` picks the implementation from the URL's scheme:

* ``redis://``, ``rediss://``, ``unix://``: :class:`blockfeed.sinks.redis.RedisPublisher`
  (public alias :mod:`blockfeed.redis`)
* ``postgresql://``, ``postgres://``: :class:`blockfeed.sinks.postgres.PostgresSink`
* ``nats://``, ``tls://``: :class:`blockfeed.sinks.nats.NatsSink`
* ``http://``, ``https://``: :class:`blockfeed.sinks.webhook.WebhookSink` (signed per block)

Library use: ``sink = open_sink(url, store=store); sink.attach(feed); async with sink: ...``
(attach before the feed starts so no block is missed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from blockfeed.errors import ConfigError
from blockfeed.sinks.base import Sink, SinkError, SinkRefused
from blockfeed.util.redact import redact_url

__all__ = ["SINK_SCHEMES", "Sink", "SinkError", "SinkRefused", "open_sink", "sink_kind"]

SINK_SCHEMES: dict[str, str] = {
    "redis": "redis",
    "rediss": "redis",
    "unix": "redis",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "nats": "nats",
    "tls": "nats",
    "http": "webhook",
    "https": "webhook",
}
"""URL scheme -> sink kind."""


def sink_kind(url: str) -> str:
    """The kind of sink ``url`` names, or a :class:`ConfigError` (secrets masked)."""
    try:
        scheme = urlsplit(url).scheme.lower() if isinstance(url, str) else ""
    except ValueError:
        scheme = ""
    kind = SINK_SCHEMES.get(scheme)
    if kind is None:
        known = ", ".join(f"{s}://" for s in SINK_SCHEMES)
        raise ConfigError(f"not a sink URL: {redact_url(str(url))} (expected one of {known})")
    return kind


def open_sink(
    url: str,
    *,
    store: Any = None,
    state_dir: str | Path | None = None,
    redis_stream: str | None = None,
    redis_maxlen: int | None = None,
    **options: Any,
) -> Sink:
    """A sink for ``url`` (not started). ``store`` is the feed's store (catch-up source).

    ``state_dir``: where a webhook keeps its cursor file (``None``: in memory only).
    ``options`` go to the sink's constructor.
    """
    kind = sink_kind(url)
    if kind == "redis":
        from blockfeed.sinks.redis import DEFAULT_MAXLEN, DEFAULT_STREAM, RedisPublisher

        return RedisPublisher(
            url,
            stream=redis_stream or DEFAULT_STREAM,
            maxlen=redis_maxlen or DEFAULT_MAXLEN,
            store=store,
            **options,
        )
    if kind == "postgresql":
        from blockfeed.sinks.postgres import PostgresSink

        return PostgresSink(url, store=store, **options)
    if kind == "nats":
        from blockfeed.sinks.nats import NatsSink

        return NatsSink(url, store=store, **options)
    from blockfeed.sinks.webhook import WebhookSink, cursor_file_for

    if state_dir is not None:
        options.setdefault("cursor_path", cursor_file_for(state_dir, url))
    return WebhookSink(url, store=store, **options)
