"""Repeated warnings and errors are logged once a minute, with a count (the CLI's handler).

An endpoint that answers every request with an error would otherwise write the same line
thousands of times (a provider's rate limit, a node on another chain). Lines count as the same
when they differ only in numbers and hex strings (block numbers, hashes, attempt counters), so
"VERIFICATION FAILED ... block #1001" and "... block #1002" are one line repeated. The first one
passes; the rest are counted for ``window_s`` seconds; the next one after that says how many
were held back. INFO and below always pass (block lines, mode changes people want to see).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

DEFAULT_WINDOW_S = 60.0
MAX_KEYS = 1024
"""Distinct lines remembered; the oldest are forgotten beyond this (bounded memory)."""
_VARYING = re.compile(r"0x[0-9a-fA-F]+|\d+(?:\.\d+)?")


class RepeatLimiter(logging.Filter):
    """A logging filter: identical WARNING+ lines pass once per ``window_s`` with a count."""

    def __init__(self, *, window_s: float = DEFAULT_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._window_s = window_s
        self._clock = clock
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a bad format string is the formatter's problem, not ours
            return True
        key = (record.name, record.levelno, _VARYING.sub("#", text))
        now = self._clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self._window_s:
            self._seen[key] = (seen[0], seen[1] + 1)
            return False
        held = 0 if seen is None else seen[1]
        self._seen.pop(key, None)
        self._seen[key] = (now, 0)
        if len(self._seen) > MAX_KEYS:
            del self._seen[next(iter(self._seen))]
        if held:
            record.msg = f"{text} ({held} similar line(s) held back in the last " \
                         f"{self._window_s:g}s)"
            record.args = None
        return True
