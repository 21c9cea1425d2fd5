"""Counters a test or benchmark reads to see what the node did (``DevNode.stats``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class DevNodeStats:
    """Live counters; read them, do not write them."""

    connections: int = 0
    """TCP connections accepted on the RPC port (WebSocket and HTTP)."""
    open_connections: int = 0
    ws_connections: int = 0
    """Successful WebSocket handshakes."""
    http_requests: int = 0
    """HTTP POST requests received (each may hold a batch)."""
    requests: Counter[str] = field(default_factory=Counter)
    """JSON-RPC calls by method, both transports."""
    subscriptions: int = 0
    """Subscriptions created."""
    active_subscriptions: int = 0
    notifications: int = 0
    """Subscription notifications actually sent."""
    notifications_dropped: int = 0
    """Notifications withheld by a fault (blackhole, sub_stall, disorder skip)."""
    malformed_sent: int = 0
    """Malformed frames or answers sent (F8)."""
    http_errors_sent: int = 0
    """HTTP error statuses sent by the ``http_errors`` fault (F6)."""
    connections_dropped: int = 0
    """Sockets the node closed or reset because of a fault (close, restart, flap)."""
    restarts: int = 0
    """Times the listening socket was closed by a ``restart`` fault."""
    blocks_produced: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        data = asdict(self)
        data["requests"] = dict(self.requests)
        return data
