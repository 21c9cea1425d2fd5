"""Issue 14's gateway done-criteria, against a real ``blockfeed serve`` and devnode on 127.0.0.1.

Four scenarios, each with its own devnode (a child process) and its own ``serve`` process:

- ``fds``: ``serve`` limited to 1,024 descriptors (``setrlimit`` in the child), 1,100 SSE clients
  that never read. Figures: ``/status`` latency while they are connected, log lines, how many
  streams were accepted and how many were refused (503). Target: ``/status`` within 1 s, fewer
  than 2,000 log lines.
- ``replay``: 2,000 never-reading clients ask ``/stream?from=<head-400>``. Figures: ``/health``
  latency (p50, p99, max) while they replay, time the feed spent DISCONNECTED. Target: max under
  0.5 s, no DISCONNECTED.
- ``webhook``: one webhook answers 200 with an endless body, one is healthy; the node restarts
  (an outage). Figures: ``serve``'s peak RSS growth, the alerts the healthy webhook got. Target:
  at most 100 MiB, and it gets both the outage (disconnected) and the recovery alert.
- ``heads``: four connections send unfinished 100 MB headers. Figures: the answers (431), RSS
  before, at the peak and after.

Usage::

    python bench/hardening_gateway.py                    # all four, saves bench/results/
    python bench/hardening_gateway.py --only replay --clients 500

Every wait is bounded; every child is stopped at the end (also on errors).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import NodeProcess

RESULTS = Path(__file__).resolve().parent / "results" / "hardening_gateway.json"
URL_LINE = re.compile(r"blockfeed serve: (http://127\.0\.0\.1:\d+)/ \(dashboard\)")
WAIT_S = 60.0
ADMIN_TOKEN = "bench-admin-token-1"


# --- processes ----------------------------------------------------------------------------------


def _limit_fds(limit: int | None) -> Any:
    if limit is None:
        return None

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


@contextlib.asynccontextmanager
async def serve_process(
    ws_url: str,
    *,
    block_time_s: float,
    workdir: Path,
    fd_limit: int | None = None,
    webhooks: tuple[str, ...] = (),
) -> AsyncIterator[tuple[str, int, Path]]:
    """A ``blockfeed serve`` child; yields (base URL, pid, path of its log)."""
    log_path = workdir / "serve.log"
    env = {**os.environ, "BLOCKFEED_BLOCK_TIME_S": str(block_time_s), "NO_COLOR": "1",
           "BLOCKFEED_ADMIN_TOKEN": ADMIN_TOKEN}
    args = [sys.executable, "-m", "blockfeed", "serve", ws_url, "--port", "0",
            "--network", "local", "--state", str(workdir / "state.sqlite")]
    for hook in webhooks:
        args += ["--alert-webhook", hook]
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.DEVNULL, stderr=log_file, env=env,
            preexec_fn=_limit_fds(fd_limit),
        )
    try:
        async with asyncio.timeout(WAIT_S):
            while not (match := URL_LINE.search(log_path.read_text(errors="replace"))):
                if proc.returncode is not None:
                    raise RuntimeError("serve exited early:\n" + log_path.read_text())
                await asyncio.sleep(0.1)
        yield match.group(1), proc.pid, log_path
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


_NODE_CHILD = """
import asyncio, sys
from blockfeed.devnode import DevNode, DevNodeConfig

async def main():
    config = DevNodeConfig(host="127.0.0.1", port=0, block_time_s=float(sys.argv[1]))
    async with DevNode(config) as node:
        node.advance(int(sys.argv[2]))  # history, so a state file can be filled at once
        print(node.ws_url, node.chain.finalized_number, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


@contextlib.asynccontextmanager
async def node_with_history(block_time_s: float, history: int) -> AsyncIterator[tuple[str, int]]:
    """A devnode child with ``history`` blocks already made; yields (ws URL, finalized head)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _NODE_CHILD, str(block_time_s), str(history),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), WAIT_S)).decode().split()
        yield line[0], int(line[1])
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def fill_state(ws_url: str, state: Path, start: int, count: int, block_time_s: float) -> None:
    """``blockfeed watch --from start --count count --state state``: the window has them."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "blockfeed", "watch", ws_url, "--from", str(start),
        "--count", str(count), "--state", str(state), "--block-time", str(block_time_s),
        "--json", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    if await asyncio.wait_for(proc.wait(), WAIT_S) != 0:
        raise RuntimeError("filling the state file with blockfeed watch failed")


def rss_mib(pid: int) -> dict[str, float]:
    """Current and peak resident memory of a process (MiB), from /proc."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return {"rss": round(values["VmRSS"], 1), "peak": round(values["VmHWM"], 1)}


def raise_own_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


async def open_streams(base: str, count: int, path: str) -> list[socket.socket]:
    """``count`` raw connections that send ``GET path`` and then never read."""
    host, port = base.removeprefix("http://").split(":")
    loop = asyncio.get_running_loop()
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode()
    socks: list[socket.socket] = []

    async def one() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills fast: "never reads"
        sock.setblocking(False)
        socks.append(sock)
        with contextlib.suppress(OSError):
            await asyncio.wait_for(loop.sock_connect(sock, (host, int(port))), 30)
            await asyncio.wait_for(loop.sock_sendall(sock, request), 30)

    for start in range(0, count, 100):  # 100 at a time: no SYN flood against the backlog
        await asyncio.gather(*(one() for _ in range(min(100, count - start))))
    return socks


def classify(socks: list[socket.socket]) -> dict[str, int]:
    """Peek (without consuming) at each connection's status line."""
    counts: dict[str, int] = {}
    for sock in socks:
        try:
            head = sock.recv(12, socket.MSG_PEEK)
            key = head.decode(errors="replace")[9:12] if head else "closed"
        except BlockingIOError:
            key = "no answer yet"
        except OSError:
            key = "reset"
        counts[key] = counts.get(key, 0) + 1
    return counts


async def probe(http: httpx.AsyncClient, path: str, seconds: float, every_s: float) -> list[Any]:
    """GET ``path`` every ``every_s`` for ``seconds``; (latency s, status) per request."""
    out: list[Any] = []
    begin = time.monotonic()
    end = begin + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        try:
            response = await http.get(path)
            out.append((time.monotonic() - started, response.status_code, started - begin))
        except httpx.HTTPError as exc:
            out.append((time.monotonic() - started, type(exc).__name__, started - begin))
        await asyncio.sleep(every_s)
    return out


def latency_figures(samples: list[Any]) -> dict[str, Any]:
    latencies = sorted(s[0] for s in samples)
    statuses: dict[str, int] = {}
    for _, status, _ in samples:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    if not latencies:
        return {"count": 0}
    return {
        "count": len(latencies),
        "p50_s": round(statistics.median(latencies), 4),
        "p99_s": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 4),
        "max_s": round(latencies[-1], 4),
        "statuses": statuses,
        "slowest_at_s": [  # when the three slowest requests started (s into the probe)
            [round(at, 2), round(took, 3)] for took, _, at in sorted(samples, reverse=True)[:3]
        ],
    }


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


# --- scenarios ----------------------------------------------------------------------------------


async def scenario_fds(clients: int) -> dict[str, Any]:
    """1,024 descriptors, ``clients`` idle SSE clients: /status keeps answering, log stays small."""
    block_time_s = 0.5
    with tempfile.TemporaryDirectory() as tmp:
        async with NodeProcess(block_time_s=block_time_s) as node, serve_process(
            node.ws_url, block_time_s=block_time_s, workdir=Path(tmp), fd_limit=1024
        ) as (base, pid, log_path):
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                before = (await http.get("/status")).json()
                socks = await open_streams(base, clients, "/stream")
                try:
                    samples = await probe(http, "/status", 10.0, 0.25)
                    status = (await http.get("/status")).json()
                    answers = classify(socks)
                    memory = rss_mib(pid)
                finally:
                    close_all(socks)
            log_text = log_path.read_text(errors="replace").splitlines()
    log_lines = len(log_text)
    by_logger: dict[str, int] = {}
    for line in log_text:
        parts = line.split(" ", 4)
        name = parts[3].rstrip(":") if len(parts) > 3 else "?"
        by_logger[name] = by_logger.get(name, 0) + 1
    figures = latency_figures(samples)
    return {
        "fd_limit": 1024,
        "clients": clients,
        "status_latency": figures,
        "sse_clients_served": status["sse_clients"],
        "answers_by_status": answers,
        "log_lines": log_lines,
        "log_lines_by_logger": by_logger,
        "mode_before": before["mode"],
        "mode_after": status["mode"],
        "serve_rss_mib": memory,
        "pass": bool(figures.get("max_s", 99) < 1.0 and log_lines < 2000
                     and figures.get("statuses", {}).get("200") == figures["count"]),
    }


async def scenario_replay(clients: int, blocks: int) -> dict[str, Any]:
    """``clients`` never-reading clients replay ``blocks`` blocks: /health stays fast.

    As after a restart: the node has history, ``watch`` fills the state file's window, then
    ``serve`` resumes from it (its memory ring is empty, so replay reads the store).
    """
    block_time_s = 0.5
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        async with node_with_history(block_time_s, blocks + 100) as (ws_url, head0):
            await fill_state(ws_url, workdir / "state.sqlite", head0 - blocks - 20, blocks + 10,
                             block_time_s)
            async with serve_process(
                ws_url, block_time_s=block_time_s, workdir=workdir
            ) as (base, pid, _log), httpx.AsyncClient(base_url=base, timeout=30) as http:
                async with asyncio.timeout(WAIT_S):
                    while (await http.get("/status")).json()["mode"] != "streaming":  # noqa: ASYNC110
                        await asyncio.sleep(0.2)
                before = (await http.get("/status")).json()
                head = before["last_block"]["number"]
                memory_before = rss_mib(pid)
                prober = asyncio.create_task(probe(http, "/health", 15.0, 0.05))
                started = time.monotonic()
                socks = await open_streams(base, clients, f"/stream?from={head - blocks}")
                connect_s = time.monotonic() - started
                try:
                    samples = await prober
                    after = (await http.get("/status")).json()
                    memory_after = rss_mib(pid)
                    answers = classify(socks)
                finally:
                    close_all(socks)
    disconnected_s = after["mode_seconds"].get("disconnected", 0.0) - before["mode_seconds"].get(
        "disconnected", 0.0
    )
    figures = latency_figures(samples)
    return {
        "clients": clients,
        "replayed_blocks_each": blocks,
        "block_time_s": block_time_s,
        "connect_all_s": round(connect_s, 2),
        "health_latency": figures,
        "answers_by_status": answers,
        "sse_clients_at_end": after["sse_clients"],
        "disconnected_s": round(disconnected_s, 3),
        "modes_during": sorted({s["mode"] for s in after["timeline"] if s["end"] is None
                                or s["end"] >= before["server_time"]}),
        "transitions_during": {
            k: v - before["transitions"].get(k, 0) for k, v in after["transitions"].items()
            if v != before["transitions"].get(k, 0)
        },
        "reconnects": after["reconnects"] - before["reconnects"],
        "serve_rss_mib_before": memory_before,
        "serve_rss_mib_after": memory_after,
        "pass": bool(figures.get("max_s", 99) < 0.5 and disconnected_s == 0),
    }


class _Receivers:
    """The two webhooks, on loopback in this process: an endless 200 body, and a healthy one."""

    def __init__(self) -> None:
        self.healthy: list[str] = []
        self.endless_bytes = 0
        self.endless_requests = 0

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response, StreamingResponse
        from starlette.routing import Route

        async def healthy(request: Request) -> Response:
            self.healthy.append((await request.json())["kind"])
            return Response(status_code=200)

        async def endless(request: Request) -> Response:
            await request.body()
            self.endless_requests += 1

            async def chunks() -> AsyncIterator[bytes]:
                chunk = b"x" * 65536
                while not await request.is_disconnected():
                    self.endless_bytes += len(chunk)
                    yield chunk
                    await asyncio.sleep(0)

            return StreamingResponse(chunks(), status_code=200)

        return Starlette(routes=[Route("/healthy", healthy, methods=["POST"]),
                                 Route("/endless", endless, methods=["POST"])])


@contextlib.asynccontextmanager
async def _receiver_server(app: Any) -> AsyncIterator[str]:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(WAIT_S):
            while not server.started:  # noqa: ASYNC110 - uvicorn sets a flag, no event
                await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        sock.close()


async def scenario_webhook() -> dict[str, Any]:
    """An endless-body webhook next to a healthy one, through an outage and its recovery."""
    block_time_s = 0.5
    receivers = _Receivers()
    with tempfile.TemporaryDirectory() as tmp:
        async with _receiver_server(receivers.app()) as hooks, NodeProcess(
            block_time_s=block_time_s
        ) as node, serve_process(
            node.ws_url, block_time_s=block_time_s, workdir=Path(tmp),
            webhooks=(f"{hooks}/endless", f"{hooks}/healthy"),
        ) as (base, pid, _log):
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                while (await http.get("/status")).json()["mode"] != "streaming":  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
                baseline = rss_mib(pid)
                await node.inject("restart", seconds=8 * block_time_s)  # F2: an outage
                got_both = False
                peak = baseline
                end = time.monotonic() + 25.0
                while time.monotonic() < end:
                    peak = rss_mib(pid)
                    if {"disconnected", "recovered"} <= set(receivers.healthy):
                        got_both = True
                        break
                    await asyncio.sleep(0.25)
                peak = rss_mib(pid)
    growth = peak["peak"] - baseline["rss"]
    return {
        "healthy_webhook_got": receivers.healthy,
        "endless_webhook_requests": receivers.endless_requests,
        "endless_body_bytes_produced": receivers.endless_bytes,
        "serve_rss_mib_baseline": baseline,
        "serve_rss_mib_end": peak,
        "peak_growth_mib": round(growth, 1),
        "pass": bool(got_both and growth <= 100),
    }


async def scenario_heads(connections: int, megabytes: int) -> dict[str, Any]:
    """``connections`` unfinished headers of up to ``megabytes`` MB each: 431, memory bounded."""
    block_time_s = 0.5
    with tempfile.TemporaryDirectory() as tmp:
        async with NodeProcess(block_time_s=block_time_s) as node, serve_process(
            node.ws_url, block_time_s=block_time_s, workdir=Path(tmp)
        ) as (base, pid, _log):
            before = rss_mib(pid)
            host, port = base.removeprefix("http://").split(":")

            async def one() -> tuple[str, int]:
                reader, writer = await asyncio.open_connection(host, int(port))
                answer = asyncio.create_task(reader.read(64))  # read while sending
                sent = 0
                writer.write(b"GET /health HTTP/1.1\r\nHost: bench\r\nX-Huge: ")
                chunk = b"a" * (64 << 10)
                try:
                    while sent < megabytes << 20 and not answer.done():
                        writer.write(chunk)
                        await asyncio.wait_for(writer.drain(), 10)
                        sent += len(chunk)
                except (OSError, TimeoutError):
                    pass
                try:
                    got = await asyncio.wait_for(answer, 10)
                except (OSError, TimeoutError):
                    got = b""
                writer.close()
                return got.decode(errors="replace")[:32], sent

            results = await asyncio.gather(*(one() for _ in range(connections)))
            await asyncio.sleep(1.0)
            after = rss_mib(pid)
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                healthy = (await http.get("/health")).status_code
    return {
        "connections": connections,
        "header_mb_attempted": megabytes,
        "answers": [answer for answer, _ in results],
        "bytes_sent_before_close": [sent for _, sent in results],
        "serve_rss_mib_before": before,
        "serve_rss_mib_after": after,
        "health_after": healthy,
        # A client still sending when the server closes may see a reset instead of the 431.
        "answered_431": sum(a.startswith("HTTP/1.1 431") for a, _ in results),
        "pass": bool(all(a == "" or a.startswith("HTTP/1.1 431") for a, _ in results)
                     and after["peak"] - before["rss"] < 50 and healthy == 200),
    }


# --- main ---------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> dict[str, Any]:
    raise_own_fd_limit()
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    wanted = args.only or ["fds", "replay", "webhook", "heads"]
    if "fds" in wanted:
        report["fds"] = await scenario_fds(args.fd_clients)
        print("fds:", json.dumps(report["fds"]), flush=True)
    if "replay" in wanted:
        report["replay"] = await scenario_replay(args.clients, args.blocks)
        print("replay:", json.dumps(report["replay"]), flush=True)
    if "webhook" in wanted:
        report["webhook"] = await scenario_webhook()
        print("webhook:", json.dumps(report["webhook"]), flush=True)
    if "heads" in wanted:
        report["heads"] = await scenario_heads(4, 100)
        print("heads:", json.dumps(report["heads"]), flush=True)
    return report


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append",
                        choices=["fds", "replay", "webhook", "heads"])
    parser.add_argument("--fd-clients", type=int, default=1100)
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--blocks", type=int, default=400)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    result = asyncio.run(main(arguments))
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    if arguments.out.exists() and arguments.only:
        merged = json.loads(arguments.out.read_text())
        merged.update(result)
        result = merged
    arguments.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {arguments.out}")
