"""Plain data types shared by every layer: headers, blocks, modes, events (from ``events``).

All are frozen dataclasses or enums so they can be handed to any subscriber or hook safely.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

# Events live in their own module (one class per kind); re-exported here, where they always were.
from blockfeed.events import (
    EVENT_TYPES,
    BlockTimeChanged,
    Diverged,
    EndpointQuarantined,
    FeedEvent,
    FinalityResumed,
    FinalityStalled,
    ModeChanged,
    Reconnect,
    RuntimeUpgraded,
    SinkWrongChain,
    TriggerFailed,
    Unavailable,
    VerificationFailed,
)

__all__ = [
    "EVENT_TYPES",
    "Block",
    "BlockTimeChanged",
    "Diverged",
    "EndpointQuarantined",
    "FeedEvent",
    "FinalityResumed",
    "FinalityStalled",
    "Header",
    "Mode",
    "ModeChanged",
    "Reconnect",
    "RuntimeUpgraded",
    "SinkWrongChain",
    "Source",
    "TriggerFailed",
    "Unavailable",
    "VerificationFailed",
]


class Source(enum.StrEnum):
    """Where a delivered block came from."""

    WS = "ws"
    """The WebSocket finalized-heads subscription (fast path)."""
    POLL = "poll"
    """The HTTP poller (``chain_getFinalizedHead`` + ``chain_getHeader``)."""
    BACKFILL = "backfill"
    """Fetched by number to fill a gap before a newer block."""


class Mode(enum.StrEnum):
    """How the feed is currently getting blocks."""

    STARTING = "starting"
    """Not yet connected to anything."""
    STREAMING = "streaming"
    """The socket subscription is confirmed and delivering."""
    POLLING = "polling"
    """The socket is down; HTTP delivers while the socket is retried in the background."""
    DISCONNECTED = "disconnected"
    """No source answers; everything is retried with backoff."""


@dataclass(frozen=True, slots=True)
class Header:
    """A Substrate header as it travels on the wire (no hash field on the wire)."""

    parent_hash: bytes
    number: int
    state_root: bytes
    extrinsics_root: bytes
    digest_logs: tuple[bytes, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The JSON-RPC wire shape, as a real node sends it."""
        return {
            "parentHash": "0x" + self.parent_hash.hex(),
            "number": hex(self.number),
            "stateRoot": "0x" + self.state_root.hex(),
            "extrinsicsRoot": "0x" + self.extrinsics_root.hex(),
            "digest": {"logs": ["0x" + log.hex() for log in self.digest_logs]},
        }


@dataclass(frozen=True, slots=True)
class Block:
    """A finalized block as delivered to subscribers."""

    number: int
    hash: str
    """0x-prefixed hex of blake2b-256(SCALE(header))."""
    parent_hash: str
    source: Source
    received_at: float
    """Unix time (seconds) when blockfeed first had this header."""
    header: Header | None = field(default=None, compare=False, repr=False)
    late: bool = False
    """True when delivered by backfill or replay rather than as the live head."""
    delivered_at: float | None = field(default=None, compare=False)
    """Unix time (seconds) when the feed handed it to subscribers (None before that). The
    gap from ``received_at`` is delay too: backfill, verification, a slow consumer."""
    # Contents (``BlockFeed(contents=...)``, see ``blockfeed.contents``); None when not fetched.
    timestamp: int | None = field(default=None, compare=False)
    """Unix time in ms from ``Timestamp.Now`` (level ``timestamp`` and up)."""
    spec_version: int | None = field(default=None, compare=False)
    """Spec version of the runtime that executed the block (level ``timestamp`` and up)."""
    events: list[dict[str, Any]] | None = field(default=None, compare=False, repr=False)
    """Decoded events (level ``events`` and up): index, phase, extrinsic_index, pallet, name,
    fields."""
    extrinsics: list[dict[str, Any]] | None = field(default=None, compare=False, repr=False)
    """Decoded extrinsics checked against ``extrinsics_root`` (level ``full``): index, pallet,
    call, args, signed, signer (signed ones), hash."""

    def to_dict(self, *, epoch_length: int | None = None) -> dict[str, Any]:
        """JSON-ready dict (the ``--json`` line format)."""
        out: dict[str, Any] = {
            "number": self.number,
            "hash": self.hash,
            "parent_hash": self.parent_hash,
            "source": str(self.source),
            "received_at": self.received_at,
            "delivered_at": self.delivered_at,
        }
        if epoch_length:
            out["epoch"] = self.number // epoch_length
            out["block_in_epoch"] = self.number % epoch_length
        if self.header is not None:
            out["state_root"] = "0x" + self.header.state_root.hex()
            out["extrinsics_root"] = "0x" + self.header.extrinsics_root.hex()
        if self.spec_version is not None:
            from blockfeed.contents.decode import json_safe  # no cost for header-only use

            out["timestamp"] = self.timestamp
            out["spec_version"] = self.spec_version
            if self.events is not None:
                out["events"] = json_safe(self.events)
            if self.extrinsics is not None:
                out["extrinsics"] = json_safe(self.extrinsics)
        return out
