"""A faithful re-implementation of the FIRST FIX (DESIGN.md, "Why it exists"), for comparison.

What the production gateway ran before blockfeed:

1. One WebSocket ``chain_subscribeFinalizedHeads`` subscription; every notification is handed
   to the user as it comes (no ordering, no de-duplication, no gap filling).
2. A heartbeat checks every 10 s; no block for 60 s declares the socket dead. It is the *only*
   detector: the async client it wrapped could not recover from a closed socket ("Unable to
   reconnect because there are currently open subscriptions"), so a socket that died is
   noticed only when the heartbeat fires.
3. Then polling over HTTP every 12 s for 5 minutes, reporting only the current finalized head
   (so it skips a block whenever two are finalized between polls).
4. Then another WebSocket attempt (a failed one goes straight back to step 3), forever.

All constants are scaled by ``block_time_s / 12 s`` so the comparison holds on a fast devnode.
It reuses blockfeed's transports only to move bytes; none of blockfeed's logic is involved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from blockfeed import defaults
from blockfeed.codec import header_from_json
from blockfeed.errors import BlockfeedError, MalformedFrame
from blockfeed.rpc import HttpRpc, WsRpc
from blockfeed.types import Header

FINNEY_BLOCK_TIME_S = defaults.BLOCK_TIME_S
HEARTBEAT_TIMEOUT_S = 60.0
HEARTBEAT_CHECK_S = 10.0
POLL_INTERVAL_S = 12.0
POLLING_DURATION_S = 300.0

_log = logging.getLogger("bench.firstfix")

BlockHook = Callable[[Header, str], None]
"""Called with (header, source) for every block the first fix hands to its user."""


@dataclass(frozen=True, slots=True)
class FirstFixTimings:
    """The first fix's constants (seconds)."""

    heartbeat_timeout_s: float = HEARTBEAT_TIMEOUT_S
    heartbeat_check_s: float = HEARTBEAT_CHECK_S
    poll_interval_s: float = POLL_INTERVAL_S
    polling_duration_s: float = POLLING_DURATION_S

    @classmethod
    def scaled(cls, block_time_s: float) -> FirstFixTimings:
        """The production constants scaled from 12 s blocks to ``block_time_s``."""
        k = block_time_s / FINNEY_BLOCK_TIME_S
        return cls(
            heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S * k,
            heartbeat_check_s=HEARTBEAT_CHECK_S * k,
            poll_interval_s=POLL_INTERVAL_S * k,
            polling_duration_s=POLLING_DURATION_S * k,
        )


class FirstFix:
    """Run with ``async with FirstFix(...)``; counters are public attributes."""

    def __init__(
        self,
        ws_url: str,
        http_url: str,
        *,
        on_block: BlockHook,
        timings: FirstFixTimings | None = None,
    ) -> None:
        self._ws_url = ws_url
        self._http_url = http_url
        self._on_block = on_block
        self.timings = timings or FirstFixTimings()
        self.mode = "starting"
        self.ws_attempts = 0
        self.heartbeat_timeouts = 0
        self.polls = 0
        self.http_requests = 0
        self._highest: int | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def reconnects(self) -> int:
        """WebSocket attempts after the first one."""
        return max(0, self.ws_attempts - 1)

    async def __aenter__(self) -> FirstFix:
        self._task = asyncio.create_task(self._run(), name="bench-firstfix")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _deliver(self, header: Header, source: str) -> None:
        self._highest = (
            header.number if self._highest is None else max(self._highest, header.number)
        )
        self._on_block(header, source)

    async def _run(self) -> None:
        _log.info("🔔 STARTING CHAIN BLOCK SUBSCRIPTION (WITH AUTO-RECOVERY)")
        while True:
            await self._websocket_phase()
            await self._polling_phase()

    async def _websocket_phase(self) -> None:
        self.mode = "ws"
        self.ws_attempts += 1
        try:
            ws = await WsRpc.connect(
                self._ws_url, open_timeout_s=self.timings.heartbeat_timeout_s, ping_interval_s=None
            )
        except BlockfeedError as exc:
            _log.info("WebSocket attempt failed: %s", exc)
            return
        last_block_at = time.monotonic()

        async def read() -> None:
            nonlocal last_block_at
            try:
                subscription = await ws.subscribe(
                    "chain_subscribeFinalizedHeads",
                    [],
                    notification="chain_finalizedHead",
                    timeout_s=self.timings.heartbeat_timeout_s,
                )
                async for raw in subscription:
                    try:
                        header = header_from_json(raw)
                    except MalformedFrame:
                        continue
                    last_block_at = time.monotonic()
                    self._deliver(header, "ws")
            except BlockfeedError as exc:
                # The wrapped client got stuck here; only the heartbeat will notice.
                _log.info("subscription ended silently: %s", exc)

        reader = asyncio.create_task(read(), name="bench-firstfix-reader")
        _log.info("💓 Heartbeat monitor started (%gs timeout)", self.timings.heartbeat_timeout_s)
        try:
            while True:
                await asyncio.sleep(self.timings.heartbeat_check_s)
                silent_s = time.monotonic() - last_block_at
                if silent_s > self.timings.heartbeat_timeout_s:
                    self.heartbeat_timeouts += 1
                    _log.info("💔 HEARTBEAT TIMEOUT: No blocks for %.0fs", silent_s)
                    return
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await ws.close()

    async def _polling_phase(self) -> None:
        self.mode = "polling"
        _log.info("⚠️  ENTERING POLLING FALLBACK MODE")
        deadline = time.monotonic() + self.timings.polling_duration_s
        async with HttpRpc(self._http_url, timeout_s=self.timings.poll_interval_s) as http:
            while time.monotonic() < deadline:
                await self._poll_once(http)
                await asyncio.sleep(self.timings.poll_interval_s)
        _log.info("🔄 EXITING POLLING FALLBACK MODE")

    async def _poll_once(self, http: HttpRpc) -> None:
        """Read the current finalized head; hand it over if it is newer than the last block."""
        self.polls += 1
        try:
            self.http_requests += 1
            head = await http.call("chain_getFinalizedHead")
            self.http_requests += 1
            header = header_from_json(await http.call("chain_getHeader", [head]))
        except BlockfeedError as exc:
            _log.info("poll failed: %s", exc)
            return
        if self._highest is None or header.number > self._highest:
            self._deliver(header, "poll")
