"""What the Redis publisher and consumer share: errors, defaults, the client, redaction.

The client is built with redis-py's own retries switched off: reconnecting is this package's job
(backoff with full jitter, outbox, resume from the last stream ID), and a client that silently
retries for seconds would hide outages from ``status()``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterable
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from blockfeed.core.backoff import backoff
from blockfeed.errors import BlockfeedError, ConfigError, VerificationError
from blockfeed.util.redact import redact_url

DEFAULT_STREAM = "blockfeed:finalized"
DEFAULT_CONNECT_TIMEOUT_S = 2.0
DEFAULT_COMMAND_TIMEOUT_S = 5.0
DEFAULT_BACKOFF_INITIAL_S = 0.2
DEFAULT_BACKOFF_CAP_S = 5.0
"""Redis is usually local and cheap to probe; a short cap gets the outbox moving soon after."""

_SCHEMES = ("redis", "rediss", "unix")
_MIN_SECRET_CHARS = 4
"""A password shorter than this is not searched for in error text (it would mangle words)."""

ReconnectDelays = Callable[[], Iterable[float]]
"""A factory for one outage's retry delays in seconds; called again after each recovery."""


def default_reconnect_delays() -> Iterable[float]:
    """Exponential backoff with full jitter: ``rng() * min(5 s, 0.2 s * 2**(k-1))``."""
    return backoff(initial_s=DEFAULT_BACKOFF_INITIAL_S, cap_s=DEFAULT_BACKOFF_CAP_S)


class RedisUnavailable(BlockfeedError, ConnectionError):
    """Redis could not be reached (first connection, or an outage longer than allowed)."""


class StreamGap(VerificationError):
    """The stream has no entries for ``expected .. found - 1``: trimmed, or never published.

    Raised by the consumer instead of silently skipping blocks; pass ``allow_gaps=True`` (CLI
    ``--allow-gaps``) to accept the gap and go on from ``found``.
    """

    def __init__(self, stream: str, expected: int, found: int) -> None:
        missing = (
            f"block {expected}" if found == expected + 1 else f"blocks {expected}..{found - 1}"
        )
        super().__init__(
            f"stream {stream!r} has no {missing} (trimmed by MAXLEN, or never published); "
            f"the next block there is {found}. To accept the gap resume after block {found - 1} "
            f"(after={found - 1}, CLI --from {found}) or allow gaps"
        )
        self.stream = stream
        self.expected = expected
        self.found = found


def check_redis_url(url: str) -> str:
    """Return ``url`` if it looks like a Redis URL, else raise a redacted :class:`ConfigError`."""
    if not isinstance(url, str) or not url:
        raise ConfigError("a Redis URL is required, e.g. redis://localhost:6379/0")
    try:
        scheme = urlsplit(url).scheme
    except ValueError as exc:
        raise ConfigError(f"not a valid Redis URL: {redact_url(url)}") from exc
    if scheme not in _SCHEMES:
        raise ConfigError(
            f"not a Redis URL: {redact_url(url)} (expected redis://, rediss:// or unix://)"
        )
    return url


def check_stream_name(stream: str) -> str:
    """Return ``stream`` if it is a usable key name, else raise :class:`ConfigError`."""
    if not isinstance(stream, str) or not stream.strip():
        raise ConfigError("the stream name must be a non-empty string")
    return stream


def make_client(
    url: str, *, connect_timeout_s: float, command_timeout_s: float | None
) -> aioredis.Redis:
    """A redis-py asyncio client with RESP2 replies, decoded strings and no hidden retries."""
    try:
        return aioredis.Redis.from_url(
            url,
            decode_responses=True,
            protocol=2,
            socket_connect_timeout=connect_timeout_s,
            socket_timeout=command_timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"bad Redis URL {redact_url(url)}: {scrub(str(exc), url)}") from exc


def scrub(text: str, url: str) -> str:
    """Remove ``url`` and its password from ``text`` (error messages, logs, status)."""
    if url and url in text:
        text = text.replace(url, redact_url(url))
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    for secret in (password, unquote(password) if password else None):
        if secret and len(secret) >= _MIN_SECRET_CHARS and secret in text:
            text = text.replace(secret, "***")
    return text


def describe_error(exc: BaseException, url: str) -> str:
    """A one-line, secret-free description of ``exc`` for logs and ``status()``."""
    message = str(exc).strip() or type(exc).__name__
    return scrub(f"{type(exc).__name__}: {message}", url)


def raise_if_cancel_was_swallowed() -> None:
    """Re-raise a cancellation that redis-py lost; call after each command in a loop.

    On Python 3.11, ``asyncio.wait_for`` (which redis-py wraps around socket writes) returns
    normally when a cancellation arrives just as the write completes (fixed in 3.12). A reader
    loop would then go on forever in a task that was asked to stop; the task still counts the
    request, so it can be honoured here.
    """
    if sys.version_info >= (3, 12):
        return
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
