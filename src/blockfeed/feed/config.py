"""FeedConfig: every tuning value of a :class:`~blockfeed.BlockFeed`, in one frozen object.

One source of truth: the feed reads its own settings from here and builds the core's
:class:`~blockfeed.core.FollowerConfig` from it (:meth:`FeedConfig.follower_config`), so the
two can never disagree. Defaults are defined once: the chain's in :mod:`blockfeed.defaults`,
the core's tuning in ``FollowerConfig``, the feed's own as the module constants below.

Timeouts left as None follow the *learned* block time T, within absolute bounds (see
:meth:`FeedConfig.open_timeout_s_for` and its siblings); :meth:`FeedConfig.for_block_time`
is the profile where every timing is a fixed multiple of a known T (fast test chains).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from blockfeed import defaults
from blockfeed.contents import ContentsLevel
from blockfeed.contents.levels import parse_level
from blockfeed.core import FollowerConfig
from blockfeed.errors import ConfigError
from blockfeed.feed.subscribers import DEFAULT_MAXSIZE

_CORE = FollowerConfig()
"""The core's defaults (the feed passes them on unchanged unless told otherwise)."""

DIVERGENCE_POLICIES = ("exit", "follow")
DEFAULT_STARTUP_TIMEOUT_S = 10.0
DEFAULT_MAX_FRAME_BYTES = 2**20
DEFAULT_LAG_LIMIT_BLOCKS = 10_000
"""A subscriber that fell behind (or was closed) holds the checkpoint, and so the unsaved
blocks in memory, until it is this many blocks behind (or the store's window, or its own queue
size, if larger); then it is cut off."""
HTTP_RETRY_INITIAL_CAP_S = 0.2
"""The first HTTP retry waits this long, or one block time if that is shorter."""


def _scaled(block_time_s: float, *, low: float, high: float, factor: float) -> float:
    return min(high, max(low, factor * block_time_s))


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


@dataclass(frozen=True, slots=True)
class FeedConfig:
    """How a feed behaves; every field has a default, so ``FeedConfig()`` is the finney setup.

    Build variations with keyword arguments, :meth:`replace`, or :meth:`for_block_time`.
    Every value is checked on construction; a bad one raises :class:`ConfigError` naming it.
    """

    block_time_s: float | None = None
    """A hint of the block time in seconds (None: auto). The feed starts from the runtime's
    declared slot duration when the node answers, else this hint (else 12 s), then follows
    the block time it observes, with no clamp relative to either."""
    epoch_length: int = defaults.EPOCH_LENGTH
    """Blocks per epoch (only for the log lines' ``Epoch E | Block k/L``)."""
    hedge: bool = _CORE.hedge
    """While streaming, also ask HTTP when the socket is late with a block."""
    subscriber_maxsize: int = DEFAULT_MAXSIZE
    """Queue size of each subscriber unless it asks for its own."""
    reconnect_initial_s: float = _CORE.reconnect_initial_s
    """First socket reconnect delay (full-jitter exponential backoff)."""
    reconnect_cap_s: float = _CORE.reconnect_cap_s
    """Longest socket reconnect delay; any sign that an endpoint is back ends the backoff."""
    http_retry_initial_s: float | None = None
    """First delay after a failed HTTP request (None: 0.2 s, or T if shorter)."""
    http_retry_cap_s: float | None = _CORE.http_retry_cap_s
    """Longest delay between failed HTTP requests (None: 1 T within 0.25-15 s)."""
    open_timeout_s: float | None = None
    """Socket open timeout (None: 0.5 T within 1-10 s)."""
    http_timeout_s: float | None = None
    """Timeout of each request, HTTP or over the socket (None: 0.5 T within 0.5-10 s)."""
    ping_interval_s: float | None = None
    """Socket keepalive ping interval (None: 1 T within 0.5-20 s)."""
    ping_timeout_s: float | None = None
    """How long a ping may go unanswered before the socket counts as dead (None: as above)."""
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    """Largest WebSocket frame accepted."""
    range_chunk: int = _CORE.range_chunk
    """Most block numbers asked for in one backfill request."""
    quarantine_s: float = _CORE.quarantine_s
    """How long an endpoint that lied or lagged is benched (several endpoints only)."""
    lag_quarantine_blocks: int = _CORE.lag_quarantine_blocks
    """An endpoint whose head is this many blocks behind the verified chain is benched."""
    health_check_interval_s: float | None = _CORE.health_check_interval_s
    """How often idle endpoints are probed (None: 3 T within 0.5-30 s)."""
    startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S
    """``async with feed`` waits this long for the chain's genesis, then goes on in the
    background."""
    lag_limit_blocks: int | None = None
    """A subscriber this many blocks behind is cut off with ``SubscriberLagged`` (None:
    10,000 or the store's window, whichever is larger)."""
    emoji: bool | None = None
    """Emoji in log lines (None: only on a terminal without ``NO_COLOR``)."""
    log_blocks: bool = True
    """One INFO line per delivered block."""
    on_divergence: str = "exit"
    """When every endpoint serves another chain: ``"exit"`` stops the feed with
    ``ChainDiverged``; ``"follow"`` records the reset in the store and goes on from the new
    chain's finalized head."""
    contents: ContentsLevel | str | None = None
    """What each block carries besides its header: ``"timestamp"``, ``"events"``, ``"full"``
    (None: the header only). Stored as a :class:`~blockfeed.contents.ContentsLevel`."""

    def __post_init__(self) -> None:
        if self.block_time_s is not None and not (
            _is_number(self.block_time_s) and self.block_time_s > 0
        ):
            raise ConfigError(f"block_time_s must be a positive number or None (auto), got "
                              f"{self.block_time_s!r}")
        for name in ("epoch_length", "subscriber_maxsize", "max_frame_bytes", "range_chunk",
                     "lag_quarantine_blocks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.lag_limit_blocks is not None and (
            isinstance(self.lag_limit_blocks, bool) or not isinstance(self.lag_limit_blocks, int)
            or self.lag_limit_blocks < 1
        ):
            raise ConfigError(f"lag_limit_blocks must be a positive integer or None, got "
                              f"{self.lag_limit_blocks!r}")
        for name in ("reconnect_cap_s", "startup_timeout_s"):
            value = getattr(self, name)
            if not (_is_number(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
        for name in ("reconnect_initial_s", "quarantine_s"):
            value = getattr(self, name)
            if not (_is_number(value) and value >= 0):
                raise ConfigError(f"{name} must be a number of seconds >= 0, got {value!r}")
        for name in ("http_retry_initial_s", "http_retry_cap_s", "open_timeout_s",
                     "http_timeout_s", "ping_interval_s", "ping_timeout_s",
                     "health_check_interval_s"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number of seconds or None "
                                  f"(follows the block time), got {value!r}")
        for name in ("hedge", "log_blocks"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.emoji is not None and not isinstance(self.emoji, bool):
            raise ConfigError(f"emoji must be true, false or None (auto), got {self.emoji!r}")
        if self.on_divergence not in DIVERGENCE_POLICIES:
            raise ConfigError(f"on_divergence must be one of {', '.join(DIVERGENCE_POLICIES)}, "
                              f"got {self.on_divergence!r}")
        object.__setattr__(self, "contents", parse_level(self.contents))
        if self.block_time_s is not None:
            object.__setattr__(self, "block_time_s", float(self.block_time_s))

    # ------------------------------------------------------------------ building variations

    @classmethod
    def for_block_time(cls, block_time_s: float, /, **overrides: Any) -> FeedConfig:
        """The profile for a chain whose block time T is known: every timing a multiple of T.

        Reconnects from T/2 up to 10 T, request and socket-open timeouts 5 T, pings every 3 T
        (3 T to answer), idle endpoints probed every 5 T. The defaults suit finney's 12 s
        blocks; this is what a fast test chain (devnode at T = 0.1 s) needs instead.
        ``overrides`` are field names, applied last.
        """
        if not (_is_number(block_time_s) and block_time_s > 0):
            raise ConfigError(f"block_time_s must be a positive number, got {block_time_s!r}")
        t = float(block_time_s)
        profile: dict[str, Any] = {
            "block_time_s": t,
            "reconnect_initial_s": 0.5 * t,
            "reconnect_cap_s": 10 * t,
            "http_timeout_s": 5 * t,
            "open_timeout_s": 5 * t,
            "ping_interval_s": 3 * t,
            "ping_timeout_s": 3 * t,
            "health_check_interval_s": 5 * t,
        }
        return cls().replace(**{**profile, **overrides})

    def replace(self, **changes: Any) -> FeedConfig:
        """A copy with ``changes`` (field names) applied and checked; an unknown name raises
        :class:`ConfigError` listing the valid ones."""
        names = self.field_names()
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise ConfigError(f"unknown feed setting{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(unknown)}; valid settings: {', '.join(names)}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def field_names(cls) -> list[str]:
        """Every setting's name, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]

    # ------------------------------------------------------------------ derived values

    @property
    def block_time_prior_s(self) -> float:
        """What the core assumes until it learns better: the hint, else 12 s."""
        return self.block_time_s or defaults.BLOCK_TIME_S

    def follower_config(self) -> FollowerConfig:
        """The core's tuning, built from these settings (the only place it is built)."""
        prior_s = self.block_time_prior_s
        initial_s = self.http_retry_initial_s
        try:
            return FollowerConfig(
                block_time_s=prior_s,
                hedge=self.hedge,
                reconnect_initial_s=self.reconnect_initial_s,
                reconnect_cap_s=self.reconnect_cap_s,
                http_retry_initial_s=(min(HTTP_RETRY_INITIAL_CAP_S, prior_s)
                                      if initial_s is None else initial_s),
                http_retry_cap_s=self.http_retry_cap_s,
                range_chunk=self.range_chunk,
                quarantine_s=self.quarantine_s,
                lag_quarantine_blocks=self.lag_quarantine_blocks,
                health_check_interval_s=self.health_check_interval_s,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def open_timeout_s_for(self, block_time_s: float) -> float:
        """Socket open timeout at block time T: the given one, else 0.5 T within 1-10 s."""
        return self.open_timeout_s or _scaled(block_time_s, low=1.0, high=10.0, factor=0.5)

    def http_timeout_s_for(self, block_time_s: float) -> float:
        """Request timeout at block time T: the given one, else 0.5 T within 0.5-10 s."""
        return self.http_timeout_s or _scaled(block_time_s, low=0.5, high=10.0, factor=0.5)

    def ping_interval_s_for(self, block_time_s: float) -> float:
        """Ping interval at block time T: the given one, else 1 T within 0.5-20 s."""
        return self.ping_interval_s or _scaled(block_time_s, low=0.5, high=20.0, factor=1.0)

    def ping_timeout_s_for(self, block_time_s: float) -> float:
        """Ping timeout at block time T: the given one, else 1 T within 0.5-20 s."""
        return self.ping_timeout_s or _scaled(block_time_s, low=0.5, high=20.0, factor=1.0)


__all__ = ["DIVERGENCE_POLICIES", "FeedConfig"]
