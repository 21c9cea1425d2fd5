"""What masking costs: the log filter per record, redact_url and redact_text per call.

Every record of blockfeed and of the libraries under it now passes ``RedactFilter`` (it formats
the message once and masks it), so the per-block INFO line pays for it. DESIGN.md allows
<= 1 ms of steady-state overhead per block; this shows the filter's share of it.

Usage::

    .venv/bin/python bench/redaction.py          # ~5 s
    .venv/bin/python bench/redaction.py --quick

Results go to ``bench/results/redaction.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from blockfeed.util.logmask import RedactFilter
from blockfeed.util.redact import redact_text, redact_url

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "redaction.json"
SECRET_URL = (
    "wss://alice:PW9zq@node.example:443/v1/sk_live.KEY7;apikey=VALUE4?key=Qz8"
    "&token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlYnl0ZXM"
)
BLOCK_LINE = ("%s", ("Block #6940429 | Epoch 19278 | Block 349/360 | 19:30:15 UTC | ws",))
HANDSHAKE_LINE = ("> GET %s HTTP/1.1", ("/v1/sk_live.KEY7;apikey=VALUE4?key=Qz8",))
HTTPX_LINE = ('HTTP Request: %s %s "%s %d %s"', ("POST", SECRET_URL, "HTTP/1.1", 200, "OK"))


def per_call_us(action: Callable[[], object], calls: int, repeats: int) -> dict[str, float]:
    """Median and best of ``repeats`` timings of ``calls`` calls, in microseconds per call."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            action()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return {"median_us": statistics.median(samples), "best_us": min(samples)}


def filter_action(name: str, line: tuple[str, tuple[Any, ...]]) -> Callable[[], object]:
    redactor = RedactFilter()
    msg, args = line

    def run() -> object:
        record = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)
        return redactor.filter(record)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls")
    options = parser.parse_args()
    calls, repeats = (2_000, 3) if options.quick else (20_000, 5)
    cases: dict[str, Callable[[], object]] = {
        "filter: block INFO line": filter_action("blockfeed", BLOCK_LINE),
        "filter: websockets handshake line": filter_action("websockets.client", HANDSHAKE_LINE),
        "filter: httpx request line": filter_action("httpx", HTTPX_LINE),
        "record without filter (baseline)": lambda: logging.LogRecord(
            "blockfeed", logging.INFO, __file__, 1, BLOCK_LINE[0], BLOCK_LINE[1], None
        ).getMessage(),
        "redact_url(secret URL)": lambda: redact_url(SECRET_URL),
        "redact_text(sentence with URL)": lambda: redact_text(f"socket to {SECRET_URL} closed"),
    }
    figures = {name: per_call_us(action, calls, repeats) for name, action in cases.items()}
    width = max(len(name) for name in figures)
    print(f"{'case':<{width}}  median us/call  best us/call")
    for name, figure in figures.items():
        print(f"{name:<{width}}  {figure['median_us']:14.2f}  {figure['best_us']:12.2f}")
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(
        json.dumps(
            {
                "calls": calls,
                "repeats": repeats,
                "python": platform.python_version(),
                "machine": platform.machine(),
                "figures": figures,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"saved {RESULTS_PATH}")


if __name__ == "__main__":
    main()
