"""A child process that prints JSON lines, read as they come, with bounded waits on them.

Used by the crash tests: start a program, wait (bounded) until its output says something, then
SIGKILL it at a chosen moment and keep every line it managed to print before dying.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WAIT_S = 30.0
"""Bound on every wait for a real event: generous, a loaded 2-core machine starts Python slowly."""


def child_env() -> dict[str, str]:
    """The environment for children: no colour, no user config file."""
    env = dict(os.environ)
    env["NO_COLOR"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("BLOCKFEED_CONFIG", None)
    return env


@dataclass
class LineProcess:
    """One run of a child: its JSON lines (in order), how it ended, where its stderr went."""

    index: int
    process: asyncio.subprocess.Process
    stderr_path: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: list[str] = field(default_factory=list)
    returncode: int | None = None
    killed: bool = False
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, index: int, argv: Sequence[str], stderr_path: Path) -> LineProcess:
        with stderr_path.open("ab") as stderr:
            process = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=stderr, env=child_env(),
                limit=2**20,
            )
        run = cls(index, process, stderr_path)
        run._reader = asyncio.create_task(run._read(), name=f"reader-{index}")
        return run

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while True:
            line = await self.process.stdout.readline()
            if not line:
                break
            text = line.decode("utf-8", "replace").strip()
            try:
                record = json.loads(text)
            except ValueError:
                # A SIGKILL can cut the last line short; keep it for the report.
                self.bad_lines.append(text)
            else:
                if isinstance(record, dict):
                    self.records.append(record)
                else:
                    self.bad_lines.append(text)
            self._changed.set()
        self._changed.set()

    @property
    def eof(self) -> bool:
        return self._reader is not None and self._reader.done()

    async def wait_until(self, predicate: Callable[[], bool], what: str,
                         timeout_s: float = WAIT_S) -> None:
        """Wait until ``predicate()`` holds, re-checked on every line; AssertionError on timeout
        or if the child's output ends first."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if self.eof:
                raise AssertionError(f"run {self.index} ended before {what}; "
                                     f"stderr tail: {self.stderr_tail()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"run {self.index}: timed out after {timeout_s}s waiting "
                                     f"for {what}; stderr tail: {self.stderr_tail()}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))

    async def kill(self) -> None:
        """SIGKILL now, then collect every line printed before death (bounded)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            self.killed = True
        await self.finish()

    async def terminate(self, timeout_s: float = WAIT_S) -> None:
        """SIGTERM (a clean stop), wait for the exit; SIGKILL if it does not come."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), timeout_s)
        except TimeoutError:
            self.process.kill()
        await self.finish()

    async def finish(self) -> None:
        self.returncode = await asyncio.wait_for(self.process.wait(), WAIT_S)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, WAIT_S)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("t") == kind]

    def stderr_tail(self, chars: int = 1500) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no stderr)"


def python_argv(*args: str) -> list[str]:
    return [sys.executable, *args]
