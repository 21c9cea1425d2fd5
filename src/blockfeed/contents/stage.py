"""The seam between the feed and contents: "before delivering verified blocks, enrich them".

The feed hands every batch of verified blocks to :meth:`ContentsStage.push` (never waiting)
instead of delivering it; one worker task takes everything queued so far (a backfill arrives as
one long run, so it is fetched ``batch_blocks`` at a time), fetches the contents and hands the
enriched blocks, in the same order, to ``deliver``. A block is never skipped and never delivered
without its contents: on a failure the worker tries the next endpoint, then waits (exponential
backoff with full jitter, capped) and tries again, for as long as it takes. A body or events
that fail verification are also reported as a ``verification_failed`` event naming the
endpoint (``details["contents"]`` is True).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence

from blockfeed.contents.fetch import ContentsFetcher
from blockfeed.contents.levels import ContentsLevel, parse_level
from blockfeed.contents.metadata import MetadataCache
from blockfeed.errors import BlockfeedError, VerificationError
from blockfeed.rpc.methods import RpcCaller
from blockfeed.types import Block, FeedEvent, VerificationFailed

logger = logging.getLogger("blockfeed.contents")

BATCH_BLOCKS = 100
"""Blocks per JSON-RPC batch (4 requests each at level ``full``)."""
RETRY_INITIAL_S = 0.2
RETRY_CAP_S = 10.0


class ContentsStage:
    """Ordered, batched enrichment between the follower's deliveries and the subscribers."""

    def __init__(
        self,
        fetcher: ContentsFetcher,
        rpcs: Callable[[], Sequence[tuple[str, RpcCaller]]],
        deliver: Callable[[list[Block]], None],
        *,
        batch_blocks: int = BATCH_BLOCKS,
        retry_initial_s: float = RETRY_INITIAL_S,
        retry_cap_s: float = RETRY_CAP_S,
        sleep: Callable[[float], object] = asyncio.sleep,
        on_event: Callable[[FeedEvent], None] | None = None,
    ) -> None:
        self.fetcher = fetcher
        self._on_event = on_event
        self._rpcs = rpcs
        self._deliver = deliver
        self._batch_blocks = max(1, batch_blocks)
        self._retry_initial_s = retry_initial_s
        self._retry_cap_s = retry_cap_s
        self._sleep = sleep
        self._queue: deque[Block] = deque()
        self._wake = asyncio.Event()
        self.failures = 0
        self.last_error: str | None = None

    @property
    def pending(self) -> int:
        """Blocks waiting for their contents."""
        return len(self._queue)

    def push(self, blocks: Sequence[Block]) -> None:
        """Queue verified blocks (in delivery order); returns at once."""
        self._queue.extend(blocks)
        self._wake.set()

    async def run(self) -> None:
        """The worker: runs until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = [self._queue[i] for i in range(min(self._batch_blocks, len(self._queue)))]
                enriched = await self._fetch_until_done(batch)
                for _ in batch:
                    self._queue.popleft()
                self._deliver(enriched)

    async def _fetch_until_done(self, batch: list[Block]) -> list[Block]:
        attempt = 0
        while True:
            for label, rpc in self._rpcs():
                try:
                    enriched = await self.fetcher.fetch(rpc, batch)
                except BlockfeedError as exc:
                    self.failures += 1
                    self.last_error = f"{label}: {exc}"
                    logger.warning(
                        "contents of #%d..#%d from %s failed: %s",
                        batch[0].number, batch[-1].number, label, exc,
                    )
                    if isinstance(exc, VerificationError) and self._on_event is not None:
                        self._on_event(VerificationFailed(
                            at=time.time(), endpoint=label,
                            reason=f"contents of #{batch[0].number}..#{batch[-1].number}: {exc}",
                            contents=True, first=batch[0].number, last=batch[-1].number))
                    continue
                if attempt:
                    logger.info("contents of #%d fetched after %d retries",
                                batch[0].number, attempt)
                self.last_error = None
                return enriched
            attempt += 1
            delay = random.uniform(0, min(self._retry_cap_s,
                                          self._retry_initial_s * 2**min(attempt, 30)))
            await self._sleep(delay)  # type: ignore[misc]


def contents_stage(
    level: str | ContentsLevel | None,
    *,
    store: object | None,
    rpcs: Callable[[], Sequence[tuple[str, RpcCaller]]],
    deliver: Callable[[list[Block]], None],
    on_event: Callable[[FeedEvent], None],
) -> ContentsStage | None:
    """The stage a feed needs for ``contents=level`` (None for headers only): metadata cached
    in ``store``'s file, upgrades reported through ``on_event``. Raises ConfigError on a bad
    level, so a feed fails at construction, not at the first block."""
    parsed = parse_level(level)
    if parsed is ContentsLevel.HEADER:
        return None
    fetcher = ContentsFetcher(parsed, MetadataCache.for_store(store), on_event=on_event)
    return ContentsStage(fetcher, rpcs, deliver, on_event=on_event)
