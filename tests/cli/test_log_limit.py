"""The CLI's repeat limiter: identical warnings once a minute, with a count (fake clock)."""

from __future__ import annotations

import logging

from blockfeed.cli._log_limit import RepeatLimiter


def _record(msg: str, level: int = logging.ERROR, *args: object) -> logging.LogRecord:
    return logging.LogRecord("blockfeed", level, __file__, 1, msg, args or None, None)


def test_identical_errors_pass_once_per_window_then_say_how_many_were_held() -> None:
    """1,000 errors differing only in block numbers in 30 s: one line, then one with a count."""
    now = [0.0]
    limiter = RepeatLimiter(window_s=60.0, clock=lambda: now[0])
    passed = []
    for i in range(1000):
        now[0] = i * 0.03
        record = _record("VERIFICATION FAILED | block #%d from 0x%s", logging.ERROR, 1000 + i,
                         f"{i:04x}")
        if limiter.filter(record):
            passed.append(record.getMessage())
    assert len(passed) == 1
    now[0] = 61.0
    record = _record("VERIFICATION FAILED | block #%d from 0x%s", logging.ERROR, 5000, "ff")
    assert limiter.filter(record)
    assert "999 similar line(s) held back" in record.getMessage()


def test_info_lines_and_different_errors_always_pass() -> None:
    """Block lines (INFO) are never limited; a different error text is a different line."""
    limiter = RepeatLimiter(clock=lambda: 0.0)
    assert all(limiter.filter(_record(f"Block #{n}", logging.INFO)) for n in range(100))
    assert limiter.filter(_record("HTTP failing on a"))
    assert limiter.filter(_record("socket closed on a"))
    assert not limiter.filter(_record("HTTP failing on a"))
