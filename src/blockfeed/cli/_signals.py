"""Clean shutdown on Ctrl-C / SIGTERM for every long-running command."""

from __future__ import annotations

import asyncio
import contextlib
import signal


def install_stop_signals(stop: asyncio.Event) -> None:
    """The first Ctrl-C or SIGTERM sets ``stop`` (so the command can write its final checkpoint
    and exit 0); the handler is then removed, so a second Ctrl-C interrupts at once."""
    loop = asyncio.get_running_loop()

    def request_stop(signum: int) -> None:
        stop.set()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, request_stop, signum)
