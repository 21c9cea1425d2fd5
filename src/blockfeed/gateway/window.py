"""The blocks the gateway can serve by number: the hub's memory ring, then the store's window.

Both hold consecutive finalized blocks. The ring is newest and already SSE-encoded; the store
(SQLite) reaches further back. Reads here are short synchronous queries on the event loop
thread, the same thread the feed writes from.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from blockfeed.errors import StoreError
from blockfeed.gateway.hub import SseHub, encode_block
from blockfeed.gateway.protocols import StoreLike
from blockfeed.types import Block

logger = logging.getLogger("blockfeed.gateway")

REPLAY_PAGE = 500
"""Blocks read from the store per query while replaying."""
STORE_CACHE_SIZE = 4096
"""Store blocks (with their SSE frames) kept once read: after a restart the ring is empty, and
2,000 clients replaying the same 400 blocks would otherwise read and decode each block from
SQLite 2,000 times, on the event loop (bench/hardening_gateway.py: /health 18 s -> see there)."""


STORE_BOUNDS_TTL_S = 1.0
"""The store's (first, last) is reused this long: every stream request and replay asks for it,
and 2,000 of them in a second made this SQLite query a tenth of the gateway's CPU. The newest
number comes from the hub anyway; a stale first number at worst ends a replay with a gap
message, and the client resumes from its last id."""


class WindowUnavailable(Exception):
    """The store could not be read (locked, corrupt, closed); the request should get 503."""


class BlockWindow:
    """Look up recent finalized blocks without caring where they are kept."""

    def __init__(
        self,
        hub: SseHub,
        store: StoreLike | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hub = hub
        self._store = store
        self._clock = clock
        self._bounds_at = float("-inf")
        self._bounds: tuple[int, int] | None = None
        self._cached: dict[int, tuple[Block, bytes]] = {}
        """number -> (block, frame) read from the store; finalized blocks of the store's one
        chain never change, so entries never go stale."""

    def _store_bounds(self) -> tuple[int, int] | None:
        if self._store is None:
            return None
        now = self._clock()
        if now - self._bounds_at < STORE_BOUNDS_TTL_S:
            return self._bounds
        try:
            self._bounds = self._store.window_bounds()
        except StoreError as exc:
            raise WindowUnavailable(str(exc)) from exc
        self._bounds_at = now
        return self._bounds

    def bounds(self) -> tuple[int, int] | None:
        """(first, last) block number servable, or ``None`` when nothing is kept yet."""
        spans = [b for b in (self._hub.ring_bounds(), self._store_bounds()) if b is not None]
        if not spans:
            return None
        return min(lo for lo, _ in spans), max(hi for _, hi in spans)

    def get(self, number: int) -> Block | None:
        """One block by number, or ``None`` outside the window."""
        ring = self._hub.ring_slice(number, 1)
        if ring:
            return ring[0][0]
        if self._store is None:
            return None
        try:
            return self._store.get_block(number)
        except StoreError as exc:
            raise WindowUnavailable(str(exc)) from exc

    def blocks(self, start: int, limit: int) -> list[Block]:
        """Up to ``limit`` consecutive blocks from ``start`` (fewer at the window's end)."""
        return [block for block, _ in self.frames(start, limit)]

    def frames(self, start: int, limit: int) -> list[tuple[Block, bytes]]:
        """Like :meth:`blocks`, with each block's SSE frame (from the ring when possible)."""
        out: list[tuple[Block, bytes]] = []
        number = start
        while len(out) < limit:
            ring = self._hub.ring_slice(number, limit - len(out))
            if ring:
                out.extend(ring)
                number = ring[-1][0].number + 1
                continue
            cached = self._cached.get(number)
            if cached is not None:  # take the cached run up to the ring's first block
                span = self._hub.ring_bounds()
                stop = span[0] if span is not None and span[0] > number else None
                while cached is not None and len(out) < limit and (stop is None or number < stop):
                    out.append(cached)
                    number += 1
                    cached = self._cached.get(number)
                continue
            page = min(REPLAY_PAGE, limit - len(out))
            span = self._hub.ring_bounds()
            if span is not None and span[0] > number:
                page = min(page, span[0] - number)  # newer blocks come pre-encoded from the ring
            stored = self._from_store(number, page)
            if not stored:
                break
            out.extend(stored)
            number = stored[-1][0].number + 1
        return _linked_prefix(out)

    def _from_store(self, start: int, limit: int) -> list[tuple[Block, bytes]]:
        if self._store is None:
            return []
        try:
            rows = self._store.get_range(start, limit)
        except StoreError as exc:
            raise WindowUnavailable(str(exc)) from exc
        out: list[tuple[Block, bytes]] = []
        expected = start
        for block in rows:
            if block.number != expected:
                break  # never hand out a gap as if it were consecutive
            entry = (block, encode_block(block, self._hub.epoch_length))
            out.append(entry)
            if len(self._cached) >= STORE_CACHE_SIZE:
                del self._cached[next(iter(self._cached))]  # oldest insertion first
            self._cached[block.number] = entry
            expected += 1
        return out


def _linked_prefix(frames: list[tuple[Block, bytes]]) -> list[tuple[Block, bytes]]:
    """The run up to the first block that does not link to the one before it. Like every
    delivery path, a replay never hands out a block it could not verify (a damaged or edited
    state file); the client's resume then stops there, and the log says why."""
    for index in range(1, len(frames)):
        block, previous = frames[index][0], frames[index - 1][0]
        if block.parent_hash != previous.hash:
            logger.error("replay stops at #%d: it does not link to #%d (damaged state file?)",
                         block.number, previous.number)
            return frames[:index]
    return frames
