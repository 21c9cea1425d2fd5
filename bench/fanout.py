"""SSE fan-out benchmark: N clients on loopback, delay from block delivery to client receipt.

Three kinds of process, so the measured server is not sharing its event loop with its clients:

- the *server*: the real gateway app (hub, SSE response, uvicorn) around a scripted feed that
  publishes a block every ``--interval`` seconds, stamping ``received_at`` just before handing
  it to the hub (that stamp is "block delivery");
- *client* processes: each opens its share of the N connections (a bare epoll loop, as light as
  a client can be) and records, for every block event, ``time.time() - received_at``;
- this *coordinator*: starts them, waits until all clients are connected, reads the server's
  RSS before/after (memory per client), starts the blocks, gathers the delays, saves JSON.

Usage::

    python bench/fanout.py                       # 1,000 and 10,000 clients
    python bench/fanout.py --clients 2000 --blocks 10 --interval 1

Target (DESIGN.md, 2 cores): 1,000 clients p99 <= 100 ms; 10,000 clients p99 <= 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import json
import os
import platform
import re
import resource
import select
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "fanout.json"
DEFAULT_CLIENTS = (1_000, 10_000)
DEFAULT_BLOCKS = 20
DEFAULT_INTERVAL_S = 1.0
CLIENTS_PER_PROCESS = 5_000
CONNECT_BATCH = 250
STAMP = re.compile(rb'"received_at":([0-9.eE+-]+)')


def raise_nofile() -> int:
    """Allow as many open files as the hard limit permits (10,000 sockets need it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


# --- server process -----------------------------------------------------------------------------


class ScriptedFeed:
    """The slice of BlockFeed the gateway needs; blocks come when the coordinator says."""

    def __init__(self) -> None:
        from blockfeed.types import Mode

        self.callbacks: list[Any] = []
        self.mode = Mode.STREAMING
        self.last: Any = None
        self.started_at = time.time()

    def subscribe(self, callback: Any, *, name: str = "", maxsize: int = 0) -> Any:
        self.callbacks.append(callback)
        feed = self

        class _Sub:
            def cancel(self) -> None:
                feed.callbacks.remove(callback)

        return _Sub()

    def add_event_hook(self, hook: Any) -> None:
        pass

    def request_reconnect(self, reason: str = "") -> None:
        pass

    def status(self) -> Any:
        from types import SimpleNamespace

        age = None if self.last is None else time.time() - self.last.received_at
        return SimpleNamespace(
            mode=self.mode,
            finality_stalled=False,
            endpoint=None,
            last_block=self.last,
            last_block_age_s=age,
            started_at=self.started_at,
            mode_seconds={},
            reconnects=0,
            blocks_by_source={},
            transitions={},
            probes={},
            malformed_frames=0,
            block_interval_s=1.0,
            endpoints=[],
            subscribers=len(self.callbacks),
            recent_events=[],
        )

    async def __aenter__(self) -> ScriptedFeed:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def publish(self, number: int) -> None:
        from blockfeed.types import Block, Source

        block = Block(
            number=number,
            hash=f"0x{number:064x}",
            parent_hash=f"0x{number - 1:064x}",
            source=Source.WS,
            received_at=time.time(),
        )
        self.last = block
        for callback in list(self.callbacks):
            result = callback(block)
            if inspect.isawaitable(result):
                await result


async def run_server() -> None:
    from blockfeed.gateway import GatewayOptions, create_app
    from blockfeed.gateway.server import running_server, tune_gc_for_fanout

    raise_nofile()
    tune_gc_for_fanout()  # as `blockfeed serve` does
    feed = ScriptedFeed()
    app = create_app(feed=feed, options=GatewayOptions(max_sse_clients=50_000, keepalive_s=60.0))
    async with running_server(app, host="127.0.0.1", port=0) as server:
        print(f"PORT {server.port}", flush=True)
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).decode().split():
            if line[0] == "clients":
                # Settle the connection burst first (one full collection), so the figures are
                # steady-state delivery, not the one-off gen-2 GC pass that follows 10k connects.
                gc.collect()
                print(f"CLIENTS {app.state.gateway.hub.client_count}", flush=True)
            elif line[0] == "blocks":
                count, interval_s = int(line[1]), float(line[2])
                for i in range(count):
                    await feed.publish(6_940_000 + i)
                    await asyncio.sleep(interval_s)
                print("DONE", flush=True)
            elif line[0] == "quit":
                break


# --- client process -----------------------------------------------------------------------------


REQUEST = b"GET /stream HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n"


def run_clients(port: int, count: int, blocks: int) -> None:
    """Open ``count`` streams and time every block event on arrival.

    A bare epoll loop instead of asyncio: the load generator shares the machine's two cores with
    the server, so it must cost as little as possible, and each arrival is stamped with the time
    epoll reported it (not when Python got round to parsing it).
    """
    raise_nofile()
    poller = select.epoll()
    sockets: dict[int, socket.socket] = {}
    delays: dict[int, list[float]] = {}
    tails: dict[int, bytes] = {}
    for start in range(0, count, CONNECT_BATCH):
        for _ in range(min(CONNECT_BATCH, count - start)):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(REQUEST)
            sock.setblocking(False)
            sockets[sock.fileno()] = sock
            delays[sock.fileno()] = []
            tails[sock.fileno()] = b""
            poller.register(sock.fileno(), select.EPOLLIN)
    started = set()
    while len(started) < count:  # every stream has its headers: the server registered it
        for fd, _ in poller.poll(1.0):
            tails[fd] += sockets[fd].recv(65536)
            if b"\r\n\r\n" in tails[fd]:
                started.add(fd)
    tails = dict.fromkeys(tails, b"")
    print("READY", flush=True)
    deadline = time.monotonic() + blocks * 10 + 60
    done = 0
    while done < count and time.monotonic() < deadline:
        events = poller.poll(1.0)
        now = time.time()
        for fd, _ in events:
            chunk = tails[fd] + sockets[fd].recv(65536)
            end = chunk.rfind(b"\n\n") + 2  # complete events only; keep the rest
            mine = delays[fd]
            before = len(mine)
            mine.extend(now - float(m.group(1)) for m in STAMP.finditer(chunk, 0, end))
            tails[fd] = chunk[end:] if end >= 2 else chunk
            if before < blocks <= len(mine):
                done += 1
    flat = [value for per_client in delays.values() for value in per_client]
    print("RESULT " + json.dumps({"delays": flat, "complete_clients": done}), flush=True)
    for sock in sockets.values():
        sock.close()


# --- coordinator --------------------------------------------------------------------------------


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )


def _expect(proc: subprocess.Popen[str], prefix: str) -> str:
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"process exited while waiting for {prefix!r}")
        if line.startswith(prefix):
            return line[len(prefix) :].strip()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def measure(clients: int, blocks: int, interval_s: float) -> dict[str, Any]:
    load_before = os.getloadavg()[0]  # the machine is shared: say how busy it was
    server = _spawn("--role", "server")
    port = int(_expect(server, "PORT "))
    time.sleep(0.5)
    rss_before = rss_bytes(server.pid)
    workers = []
    left = clients
    while left > 0:
        share = min(CLIENTS_PER_PROCESS, left)
        workers.append(
            _spawn(
                "--role",
                "clients",
                "--port",
                str(port),
                "--count",
                str(share),
                "--blocks",
                str(blocks),
            )
        )
        left -= share
    for worker in workers:
        _expect(worker, "READY")
    assert server.stdin is not None
    server.stdin.write("clients\n")
    connected = int(_expect(server, "CLIENTS "))
    time.sleep(1.0)
    rss_after = rss_bytes(server.pid)
    started = time.time()
    server.stdin.write(f"blocks {blocks} {interval_s}\n")
    _expect(server, "DONE")
    delays: list[float] = []
    complete = 0
    for worker in workers:
        result = json.loads(_expect(worker, "RESULT "))
        delays += result["delays"]
        complete += result["complete_clients"]
        worker.wait(timeout=60)
    server.stdin.write("quit\n")
    server.wait(timeout=60)
    return {
        "clients": clients,
        "load_avg_1m_at_start": round(load_before, 2),
        "connected": connected,
        "clients_with_every_block": complete,
        "blocks": blocks,
        "interval_s": interval_s,
        "events_measured": len(delays),
        "delay_p50_ms": round(1000 * statistics.median(delays), 2),
        "delay_p99_ms": round(1000 * _percentile(delays, 99), 2),
        "delay_max_ms": round(1000 * max(delays), 2),
        "server_rss_before_mb": round(rss_before / 2**20, 1),
        "server_rss_after_mb": round(rss_after / 2**20, 1),
        "memory_per_client_kb": round((rss_after - rss_before) / max(1, connected) / 1024, 1),
        "wall_s": round(time.time() - started, 1),
    }


def _http_protocol() -> str:
    """Which uvicorn HTTP implementation 'auto' picks here (httptools is much cheaper than h11)."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--role", choices=["coordinator", "server", "clients"], default="coordinator"
    )
    parser.add_argument("--clients", type=int, nargs="*", default=list(DEFAULT_CLIENTS))
    parser.add_argument("--blocks", type=int, default=DEFAULT_BLOCKS)
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_S)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.role == "server":
        asyncio.run(run_server())
        return
    if args.role == "clients":
        run_clients(args.port, args.count, args.blocks)
        return
    raise_nofile()
    runs = []
    for clients in args.clients:
        result = measure(clients, args.blocks, args.interval)
        runs.append(result)
        print(
            f"{clients:>6} clients: p50 {result['delay_p50_ms']} ms, "
            f"p99 {result['delay_p99_ms']} ms, max {result['delay_max_ms']} ms, "
            f"{result['memory_per_client_kb']} KiB/client "
            f"({result['clients_with_every_block']}/{clients} got every block)",
            flush=True,
        )
    report = {
        "benchmark": "sse_fanout",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "http_protocol": _http_protocol(),
        },
        "targets": {"1000_clients_p99_ms": 100, "10000_clients_p99_ms": 1000},
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
