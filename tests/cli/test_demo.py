"""`blockfeed demo` as a user runs it: a subprocess that prints blocks, mode changes and its URL."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import httpx

WAIT_S = 60.0
DURATION_S = 6.0
URL_LINE = re.compile(r"Dashboard: (http://127\.0\.0\.1:\d+)/")


async def test_demo_runs_serves_and_stops() -> None:
    """The demo prints block lines and a fault-driven mode change, serves /health, exits 0."""
    env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "blockfeed", "demo",
        "--duration", str(DURATION_S), "--port", "0", "--block-time", "0.1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    health: httpx.Response | None = None
    latest: httpx.Response | None = None
    try:
        async with asyncio.timeout(WAIT_S):
            async for raw in proc.stdout:
                line = raw.decode().rstrip("\n")
                lines.append(line)
                match = URL_LINE.search(line)
                if match and health is None:
                    async with httpx.AsyncClient(base_url=match.group(1), timeout=10) as http:
                        health = await http.get("/health")
                        latest = await http.get("/blocks/latest")
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), WAIT_S)
    stderr = (await proc.stderr.read()).decode() if proc.stderr else ""
    output = "\n".join(lines)
    assert code == 0, stderr
    assert health is not None and health.status_code == 200
    assert latest is not None and latest.status_code == 200
    block_line = r"^Block #(\d+) \| Epoch \d+ \| Block \d+/360"
    blocks = [int(m) for m in re.findall(block_line, output, re.M)]
    assert len(blocks) >= 10
    assert blocks == list(range(blocks[0], blocks[0] + len(blocks)))  # in order, no gap, no repeat
    assert re.search(r"^(ENTERING POLLING FALLBACK MODE|DISCONNECTED)", output, re.M), output
    assert "devnode fault" in output
    assert output.rstrip().endswith("blockfeed demo: stopped")
    assert "Traceback" not in stderr
