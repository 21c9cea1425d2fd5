"""One exception tree for blockfeed.

::

    BlockfeedError
    ├── ConfigError              bad endpoint, flag, env or TOML value (user input)
    ├── MalformedFrame           a node sent something that is not valid JSON-RPC / header data
    ├── RpcError                 a request failed
    │   ├── RpcTransportError    connection refused/reset/closed, timeout, HTTP 429/5xx
    │   └── RpcServerError       the node answered with a JSON-RPC error object (.code, .message)
    │       └── rpc.methods.UnknownBlock      the node answered null for a block hash
    ├── VerificationError        a header's hash or parent link does not check out
    │   └── redis.StreamGap      a Redis stream lacks entries the consumer needs (trimmed)
    ├── ChainDiverged            every endpoint serves another chain than the one delivered
    ├── StoreError               the state file is corrupt, locked, read-only, full, or foreign
    ├── SubscriberLagged         a subscriber fell further behind than the feed keeps blocks for
    └── redis.RedisUnavailable   Redis could not be reached (also a ConnectionError)

Errors raised by third-party libraries are translated once, at the layer boundary, with
``raise ... from exc``; messages never contain credentials (see ``blockfeed.util.redact``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from blockfeed.events import Diverged


class BlockfeedError(Exception):
    """Base class of every error blockfeed raises on purpose."""


class ConfigError(BlockfeedError, ValueError):
    """A configuration value (flag, env var, TOML, endpoint URL) is invalid."""


class MalformedFrame(BlockfeedError, ValueError):
    """A node sent a frame that is not valid JSON-RPC or not a valid header.

    Counted and dropped by the feed; never fatal.
    """


class RpcError(BlockfeedError):
    """A JSON-RPC request did not produce a result."""


class RpcTransportError(RpcError):
    """The transport failed: refused, reset, closed, timed out, or HTTP 429/5xx."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s
        """The pause the server asked for (``Retry-After`` on a 429/503), if any."""


class RpcServerError(RpcError):
    """The node answered with a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: object = None) -> None:
        super().__init__(f"JSON-RPC error {code}: {message}")
        self.code = code
        self.rpc_message = message
        self.data = data

    @property
    def is_rate_limit(self) -> bool:
        """True for a provider's rate-limit answer (code -32029, or a message that says so)."""
        text = str(self.rpc_message).lower()
        return self.code == RATE_LIMIT_CODE or "rate limit" in text or "too many" in text


RATE_LIMIT_CODE = -32029
"""The JSON-RPC error code providers use for "rate limit exceeded"."""


class VerificationError(BlockfeedError):
    """A header's computed hash or parent link does not match what the chain says."""


class ChainDiverged(BlockfeedError):
    """Every endpoint proved to serve another chain than the one delivered (F13).

    ``event`` is the :class:`~blockfeed.events.Diverged` event (``number``,
    ``delivered_hash``, ``their_hash``, ``what``); ``endpoint`` is the (redacted) endpoint that
    answered last. The message starts with ``CHAIN DIVERGED``.
    """

    def __init__(self, message: str, *, endpoint: str | None = None,
                 event: Diverged | None = None) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.event = event


class StoreError(BlockfeedError):
    """The checkpoint store cannot be used safely; never silently started over."""


class SubscriberLagged(BlockfeedError):
    """A subscriber fell behind further than the feed keeps blocks; resume from ``next_number``."""

    def __init__(self, next_number: int) -> None:
        super().__init__(
            f"subscriber fell behind; resume from block {next_number} (e.g. start_at={next_number})"
        )
        self.next_number = next_number
