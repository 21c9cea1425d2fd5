"""Small pieces the socket devnode and the in-memory ``blockfeed.testing`` node both use."""

from __future__ import annotations

import asyncio
import hashlib
import random
from importlib import metadata
from typing import Any, Protocol

from blockfeed.devnode.api import FINALIZED, SubscriptionHost
from blockfeed.devnode.chain import Chain
from blockfeed.devnode.faults import ActiveFault, FaultInjector
from blockfeed.devnode.jsonrpc import handle_payload, request_methods


def package_version() -> str:
    """blockfeed's installed version (what ``system_version`` answers), or 0.0.0 from a tree."""
    try:
        return metadata.version("blockfeed")
    except metadata.PackageNotFoundError:
        return "0.0.0"


class Pulse:
    """An event that can fire many times: waiters take the current one, ``fire`` swaps it."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout_s: float | None) -> None:
        # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation that
        # arrives as the event fires, which kept stop() waiting out a whole restart fault.
        event = self._event
        try:
            async with asyncio.timeout(timeout_s):
                await event.wait()
        except TimeoutError:
            pass


class HoldsNotification(Protocol):
    held: str | None


def disordered(action: str | None, text: str, subscription: HoldsNotification) -> list[str]:
    """The frames to send for one notification under the ``disorder`` fault (F9): none for
    ``skip``; none yet for ``reorder`` (held, then sent right after the next one); twice for
    ``duplicate``; a frame held earlier follows this one."""
    if action == "skip":
        return []
    if action == "reorder" and subscription.held is None:
        subscription.held = text
        return []
    frames = [text, text] if action == "duplicate" else [text]
    if subscription.held is not None:
        frames.append(subscription.held)
        subscription.held = None
    return frames


DOWN_KINDS = ("restart", "reset")
"""Faults during which the node serves nothing on any connection."""


class FaultReadings:
    """What the active faults mean for the next message, for any node holding a
    :class:`FaultInjector` as ``faults`` and a seeded ``fault_rng`` (devnode's socket node and
    the in-memory one read them the same way, so a fault plays the same in both)."""

    faults: FaultInjector
    fault_rng: random.Random

    def is_down(self) -> bool:
        """True while a ``restart`` or ``reset`` fault holds: nothing is served on any socket."""
        return any(self.faults.is_active(kind) for kind in DOWN_KINDS)

    def refusing(self) -> bool:
        """True while down without ``flap``: connections are refused."""
        return any(
            not fault.options["flap"] for kind in DOWN_KINDS for fault in self.faults.active(kind)
        )

    def flapping(self) -> bool:
        """True while down behind a ``flap`` "proxy": WebSockets close at once, HTTP gets 502."""
        return self.is_down() and not self.refusing()

    def latency_s(self, transport: str) -> float:
        """The delay the ``latency`` faults put on ``transport`` now (the largest wins)."""
        return max((fault.options["delay_s"] for fault in self.faults.active("latency")
                    if fault.options["on"] in (transport, "both")), default=0.0)

    def malformed_choice(self, transport: str) -> tuple[str, ActiveFault] | None:
        """Roll the (seeded) dice for one message: None, or (malformation kind, its fault)."""
        for fault in reversed(self.faults.active("malformed")):
            if fault.options["on"] not in (transport, "both"):
                continue
            if self.fault_rng.random() < fault.options["rate"]:
                return self.fault_rng.choice(fault.options["kinds"]), fault
        return None

    def disorder_action(self) -> str | None:
        """Roll the dice for one notification: None or duplicate / reorder / skip."""
        for fault in reversed(self.faults.active("disorder")):
            if self.fault_rng.random() < fault.options["rate"]:
                return str(self.fault_rng.choice(fault.options["kinds"]))
        return None


def reset_seed(config_seed: int, generation: int) -> int:
    """The seed of the chain a ``reset`` fault (F13) starts: new for every reset, the same for
    two nodes with the same config (so a pair of nodes resets into the same chain)."""
    material = f"reset-{config_seed}-{generation + 1}".encode()
    return int.from_bytes(hashlib.blake2b(material, digest_size=8).digest(), "little")


def answer_ws_message(node: Any, host: SubscriptionHost, message: str | bytes) -> str | None:
    """Count one WebSocket message's requests and answer them as the node's API does, with
    ``host`` owning the socket's subscriptions (None: nothing to send back)."""
    for method in request_methods(message):
        node.stats.count_request("ws", method)
    view = node.views["ws"]
    return handle_payload(
        message, lambda method, params: node.api.call(method, params, view=view, host=host)
    )


def head_number(chain: Chain, kind: str) -> int:
    """The head a new subscription of ``kind`` is first told about (finalized, or best)."""
    return chain.finalized_number if kind == FINALIZED else chain.best_number
