"""Small pieces the socket devnode and the in-memory ``blockfeed.testing`` node both use."""

from __future__ import annotations

import asyncio
from importlib import metadata
from typing import Protocol


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
