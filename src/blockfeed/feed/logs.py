"""Log lines for people, in the shape operators of the original gateway already know.

::

    🔔 STARTING CHAIN BLOCK SUBSCRIPTION (WITH AUTO-RECOVERY) | 1 endpoint(s): wss://host:443
    📦 Block #6940429 | Epoch 19278 | Block 349/360 | 19:30:15 UTC | ws
    ⚠️  ENTERING POLLING FALLBACK MODE | socket closed: closed by the node (code 1001)
    🔄 EXITING POLLING FALLBACK MODE | polling for 3.2s
    ✅ WebSocket subscription restored | subscription confirmed and delivering
    ⏱️  BLOCK TIME 0.5s | was 12s; learned from 3 intervals
    ❌ CHAIN DIVERGED: ws://host:9944 serves another genesis (0x...) where ...

Emoji are dropped when the output is not a terminal or ``NO_COLOR`` is set. Endpoints only
ever appear as labels (redacted URLs).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

from blockfeed.types import (
    Block,
    BlockTimeChanged,
    Diverged,
    EndpointQuarantined,
    FeedEvent,
    FinalityResumed,
    FinalityStalled,
    Mode,
    ModeChanged,
    Reconnect,
    Unavailable,
    VerificationFailed,
)

logger = logging.getLogger("blockfeed")

_EMOJI = {
    "start": "🔔 ",
    "block": "📦 ",
    "polling": "⚠️  ",
    "exit_polling": "🔄 ",
    "restored": "✅ ",
    "disconnected": "💔 ",
    "stalled": "⏸️  ",
    "resumed": "▶️  ",
    "quarantine": "🚫 ",
    "verification": "❗ ",
    "reconnect": "🔁 ",
    "stop": "🛑 ",
    "block_time": "⏱️  ",
    "diverged": "❌ ",
}


def emoji_wanted(stream: TextIO | None = None) -> bool:
    """Emoji only when ``stream`` (default stderr) is a terminal and ``NO_COLOR`` is not set."""
    if os.environ.get("NO_COLOR"):
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class FeedLog:
    """Formats and emits the feed's human log lines through the ``blockfeed`` logger."""

    def __init__(
        self, *, epoch_length: int, emoji: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` measures time spent per mode (the feed passes its loop's clock); it is
        first read by :meth:`starting` or the first mode change, never here."""
        self._epoch_length = epoch_length
        self._emoji = emoji_wanted() if emoji is None else emoji
        self._clock = clock
        self._mode_since: float | None = None

    def _mark(self, key: str) -> str:
        return _EMOJI[key] if self._emoji else ""

    def block_line(self, block: Block) -> str:
        """``Block #N | Epoch E | Block k/L | HH:MM:SS UTC | source``."""
        clock = time.strftime("%H:%M:%S", time.gmtime(block.received_at))
        epoch, index = divmod(block.number, self._epoch_length)
        return (
            f"{self._mark('block')}Block #{block.number} | Epoch {epoch} | "
            f"Block {index}/{self._epoch_length} | {clock} UTC | {block.source}"
        )

    def starting(self, labels: list[str]) -> None:
        """The first line of a feed's life."""
        self._mode_since = self._clock()
        logger.info(
            "%sSTARTING CHAIN BLOCK SUBSCRIPTION (WITH AUTO-RECOVERY) | %d endpoint(s): %s",
            self._mark("start"), len(labels), ", ".join(labels),
        )

    def stopped(self, last: Block | None) -> None:
        """The last line of a feed's life."""
        where = f"last block #{last.number}" if last is not None else "no block delivered"
        logger.info("%sblock feed stopped | %s", self._mark("stop"), where)

    def block(self, block: Block) -> None:
        """One line per delivered block."""
        if logger.isEnabledFor(logging.INFO):
            logger.info("%s", self.block_line(block))

    def event(self, event: FeedEvent) -> None:
        """One line per mode change, stall, quarantine, verification failure or reconnect."""
        mark = self._mark
        where = f" {event.endpoint}" if event.endpoint else ""
        if isinstance(event, ModeChanged):
            now = self._clock()
            spent = now - (now if self._mode_since is None else self._mode_since)
            self._mode_since = now
            if event.new_mode is Mode.POLLING:
                logger.warning("%sENTERING POLLING FALLBACK MODE | %s", mark("polling"),
                               event.reason)
            elif event.new_mode is Mode.DISCONNECTED:
                logger.warning("%sDISCONNECTED: no source answers | %s", mark("disconnected"),
                               event.reason)
            elif event.new_mode is Mode.STREAMING:
                if event.old_mode in (Mode.POLLING, Mode.DISCONNECTED):
                    logger.info("%sEXITING POLLING FALLBACK MODE | %s for %.1fs",
                                mark("exit_polling"), event.old_mode, spent)
                logger.info("%sWebSocket subscription restored | %s", mark("restored"),
                            event.reason)
            else:
                logger.info("mode %s -> %s | %s", event.old_mode, event.new_mode, event.reason)
        elif isinstance(event, FinalityStalled):
            logger.warning("%sFINALITY STALLED (connections healthy, no reconnects) | %s",
                           mark("stalled"), event.reason)
        elif isinstance(event, FinalityResumed):
            logger.info("%sFINALITY RESUMED | %s", mark("resumed"), event.reason)
        elif isinstance(event, EndpointQuarantined):
            logger.error("%sENDPOINT QUARANTINED%s | %s", mark("quarantine"), where, event.reason)
        elif isinstance(event, VerificationFailed):
            logger.error("%sVERIFICATION FAILED%s | %s", mark("verification"), where,
                         event.reason)
        elif isinstance(event, Unavailable):
            logger.error("%sBLOCK UNAVAILABLE%s | %s", mark("verification"), where, event.reason)
        elif isinstance(event, Reconnect):
            logger.info("%sreconnecting%s | %s", mark("reconnect"), where, event.reason)
        elif isinstance(event, BlockTimeChanged):
            logger.info("%sBLOCK TIME %ss | %s", mark("block_time"), f"{event.block_time_s:.3g}",
                        event.reason.split("(", 1)[-1].rstrip(")"))
        elif isinstance(event, Diverged):
            logger.error("%s%s", mark("diverged"), event.reason)
        else:
            logger.info("%s%s | %s", event.kind, where, event.reason)
