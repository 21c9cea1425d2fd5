"""What the gateway needs from a feed and a store, as Protocols.

The app depends on these, not on :class:`blockfeed.BlockFeed` or the SQLite store, so tests drive
it with small fakes (a few lines each) and the real classes fit without adapters. The shapes
follow ``docs/internals.md`` ("Feed" and "Store").
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol

from blockfeed.types import Block, FeedEvent, Mode


class StatusLike(Protocol):
    """The fields of ``FeedStatus`` the gateway reads (a frozen snapshot)."""

    @property
    def mode(self) -> Mode: ...
    @property
    def finality_stalled(self) -> bool: ...
    @property
    def endpoint(self) -> str | None: ...
    @property
    def last_block(self) -> Block | None: ...
    @property
    def last_block_age_s(self) -> float | None: ...
    @property
    def started_at(self) -> float: ...
    @property
    def mode_seconds(self) -> dict[str, float]: ...
    @property
    def reconnects(self) -> int: ...
    @property
    def blocks_by_source(self) -> dict[str, int]: ...
    @property
    def transitions(self) -> dict[str, int]: ...
    @property
    def probes(self) -> dict[str, int]: ...
    @property
    def malformed_frames(self) -> int: ...
    @property
    def block_interval_s(self) -> float: ...
    @property
    def endpoints(self) -> list[dict[str, Any]]: ...
    @property
    def subscribers(self) -> int: ...
    @property
    def recent_events(self) -> list[FeedEvent]: ...


class SubscriptionLike(Protocol):
    """A live subscription handle; ``cancel()`` stops deliveries."""

    def cancel(self) -> None: ...


class FeedLike(Protocol):
    """The slice of ``BlockFeed`` the gateway uses."""

    def subscribe(
        self, callback: Callable[[Block], Any], *, name: str = ..., maxsize: int = ...
    ) -> SubscriptionLike: ...

    def add_event_hook(self, hook: Callable[[FeedEvent], Any]) -> None: ...

    def status(self) -> StatusLike: ...

    def request_reconnect(self, reason: str = ...) -> None: ...

    async def __aenter__(self) -> Any: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any: ...


class StoreLike(Protocol):
    """Read access to the recent-header window of the checkpoint store."""

    def get_block(self, number: int) -> Block | None: ...

    def get_range(self, start: int, limit: int) -> list[Block]: ...

    def window_bounds(self) -> tuple[int, int] | None: ...
