"""Counters a test or benchmark reads to see what the node did (``DevNode.stats``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

MAX_COUNTED_METHODS = 200
"""Distinct method names counted per transport; more are counted under ``OTHER_METHOD`` (a
client sending random names must not grow the node's memory)."""
OTHER_METHOD = "(other)"
MAX_METHOD_CHARS = 100


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
    """JSON-RPC calls the node executed (not refused by ``rpc_errors``), by method, both
    transports."""
    requests_by_transport: dict[str, Counter[str]] = field(
        default_factory=lambda: {"ws": Counter(), "http": Counter()}
    )
    """Every JSON-RPC request received (each one of a batch), by transport then method, whatever
    was answered (errors, faults and unknown methods included): what a client sent."""
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
    rpc_errors_sent: int = 0
    """JSON-RPC errors sent instead of answers by the ``rpc_errors`` fault."""
    down_answers: int = 0
    """While down with ``flap``: WebSockets closed after their handshake plus HTTP 502s."""
    connections_dropped: int = 0
    """Sockets the node closed or reset because of a fault (close, restart, flap)."""
    restarts: int = 0
    """Times the listening socket was closed by a ``restart`` or ``reset`` fault."""
    resets: int = 0
    """Times the chain was replaced by a ``reset`` fault (F13)."""
    blocks_produced: int = 0

    def count_request(self, transport: str, method: str) -> None:
        """Count one request received on ``transport`` (``ws`` or ``http``)."""
        counter = self.requests_by_transport[transport]
        method = method[:MAX_METHOD_CHARS]
        if method not in counter and len(counter) >= MAX_COUNTED_METHODS:
            method = OTHER_METHOD
        counter[method] += 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (``requests_total``: requests received per transport)."""
        data = asdict(self)
        data["requests"] = dict(self.requests)
        data["requests_by_transport"] = {
            transport: dict(counter) for transport, counter in self.requests_by_transport.items()
        }
        data["requests_total"] = {
            transport: sum(counter.values())
            for transport, counter in self.requests_by_transport.items()
        }
        return data
