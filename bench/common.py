"""Shared measuring tools for the benchmarks: who delivered which block when, and what that costs.

Times are ``time.monotonic()`` seconds (``CLOCK_MONOTONIC``: one clock for every process on the
machine). The moment a block is finalized (:class:`FinalityClock` for an in-process devnode,
:class:`NodeProcess` for one in its own process) and the moment a client hands it to its user
(:class:`Recorder`) are on that clock, and a block's *delivery delay* is simply the difference.

:class:`NodeProcess` runs the devnode in a child process, so the node's work (producing
blocks, serving every client's sockets and requests) does not compete with the clients being
measured for one event loop, and the finality time is stamped by the node at the moment it
finalizes, not when a task in a busy loop gets round to noticing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from websockets.asyncio.client import connect as ws_connect

from blockfeed.codec import block_hash, header_from_json

WAIT_S = 30.0
"""Bound on any wait for a real event in the benchmarks (they must never hang)."""
BENCH_DIR = str(Path(__file__).resolve().parent)


class FinalityTimes(Protocol):
    """When each block was finalized (:class:`FinalityClock`, :class:`NodeProcess`)."""

    @property
    def finalized_at(self) -> dict[int, float]: ...

    def numbers_between(self, start_s: float, end_s: float) -> list[int]: ...


class NodeLike(Protocol):
    """What the benchmarks need from a devnode (``blockfeed.devnode.DevNode`` fits)."""

    chain: Any

    async def wait_for_finalized(self, number: int, timeout_s: float = ...) -> Any: ...


@dataclass(frozen=True, slots=True)
class Delivery:
    """One block handed to a client's user."""

    number: int
    hash: str
    at: float
    source: str


@dataclass
class Recorder:
    """Every block a client delivered, in delivery order."""

    name: str
    deliveries: list[Delivery] = field(default_factory=list)
    new_block: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, number: int, hash_hex: str, source: str) -> None:
        """Note that the client delivered block ``number`` now."""
        self.deliveries.append(Delivery(number, hash_hex, time.monotonic(), source))
        self.new_block.set()

    @property
    def last_number(self) -> int | None:
        return self.deliveries[-1].number if self.deliveries else None

    async def wait_for(self, number: int, timeout_s: float = WAIT_S) -> bool:
        """Wait until a block >= ``number`` was delivered; False on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                while not self.deliveries or max_number(self.deliveries) < number:
                    self.new_block.clear()
                    await self.new_block.wait()
        except TimeoutError:
            return False
        return True


def max_number(deliveries: Sequence[Delivery]) -> int:
    return max(d.number for d in deliveries)


class FinalityClock:
    """Records when the node finalized each block number (the reference for delays).

    Uses only the documented ``wait_for_finalized``: a task waits for the next number; when a
    GRANDPA-like jump finalizes several at once they all get the same time, as on a real chain.
    """

    def __init__(self, node: NodeLike) -> None:
        self._node = node
        self.finalized_at: dict[int, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> FinalityClock:
        self._task = asyncio.create_task(self._run(), name="bench-finality-clock")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        last = self._node.chain.finalized_number
        while True:
            with contextlib.suppress(TimeoutError):
                await self._node.wait_for_finalized(last + 1, timeout_s=3600)
            now = time.monotonic()
            current = self._node.chain.finalized_number
            for number in range(last + 1, current + 1):
                self.finalized_at[number] = now
            last = max(last, current)

    def numbers_between(self, start_s: float, end_s: float) -> list[int]:
        """Block numbers finalized in ``[start_s, end_s)``."""
        return sorted(n for n, at in self.finalized_at.items() if start_s <= at < end_s)


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100); None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class WindowStats:
    """What one client did with the blocks finalized in a time window."""

    blocks: int
    """Blocks finalized in the window."""
    delivered: int
    lost: int
    duplicated: int
    out_of_order: int
    wrong: int
    """Delivered blocks whose hash is not canonical (a lie got through)."""
    delay_p50_s: float | None
    delay_p99_s: float | None
    delay_max_s: float | None

    def to_dict(self, block_time_s: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "blocks": self.blocks,
            "delivered": self.delivered,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "out_of_order": self.out_of_order,
            "wrong": self.wrong,
        }
        for key in ("delay_p50_s", "delay_p99_s", "delay_max_s"):
            value = getattr(self, key)
            out[key] = None if value is None else round(value, 4)
            out[key.replace("_s", "_T")] = None if value is None else round(value / block_time_s, 3)
        return out


def window_stats(
    recorder: Recorder,
    clock: FinalityTimes,
    canonical_hash: Any,
    *,
    start_s: float,
    end_s: float,
) -> WindowStats:
    """Delays, losses, repeats and disorder for blocks finalized in ``[start_s, end_s)``.

    Duplicates and disorder are counted over all deliveries of those numbers (a repeat is a
    second delivery of a number; out of order is a first delivery below a number already
    delivered). ``canonical_hash(n)`` is the truthful chain's hash.
    """
    numbers = clock.numbers_between(start_s, end_s)
    wanted = set(numbers)
    first_at: dict[int, float] = {}
    duplicated = out_of_order = wrong = 0
    highest = -1
    for delivery in recorder.deliveries:
        n = delivery.number
        if n in wanted:
            if n in first_at:
                duplicated += 1
            else:
                first_at[n] = delivery.at
                if n < highest:
                    out_of_order += 1
                if delivery.hash != canonical_hash(n):
                    wrong += 1
        highest = max(highest, n)
    delays = [first_at[n] - clock.finalized_at[n] for n in numbers if n in first_at]
    return WindowStats(
        blocks=len(numbers),
        delivered=len(first_at),
        lost=len(numbers) - len(first_at),
        duplicated=duplicated,
        out_of_order=out_of_order,
        wrong=wrong,
        delay_p50_s=percentile(delays, 50),
        delay_p99_s=percentile(delays, 99),
        delay_max_s=max(delays) if delays else None,
    )


class BareSubscriber:
    """The baseline: a bare ``websockets`` finalized-heads subscription, JSON decode only.

    It is what a minimal client costs per block, so blockfeed's steady-state overhead is the
    difference in arrival time for the same block number.
    """

    def __init__(self, ws_url: str, recorder: Recorder, *, hash_headers: bool = False) -> None:
        self._url = ws_url
        self._recorder = recorder
        self._hash_headers = hash_headers
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    async def __aenter__(self) -> BareSubscriber:
        self._task = asyncio.create_task(self._run(), name="bench-bare-subscriber")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        async with ws_connect(self._url, max_size=2**20) as socket:
            await socket.send(
                json.dumps({"jsonrpc": "2.0", "id": 1, "method": "chain_subscribeFinalizedHeads"})
            )
            async for frame in socket:
                message = json.loads(frame)
                if message.get("id") == 1:
                    self.subscribed.set()
                    continue
                header_json = message["params"]["result"]
                number = int(header_json["number"], 16)
                digest = block_hash(header_from_json(header_json)) if self._hash_headers else ""
                self._recorder.record(number, digest, "ws")


def round_or_none(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def fmt(value: Any, digits: int = 2) -> str:
    """Table cell text: numbers rounded, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# -- the devnode in its own process ---------------------------------------------------------------


class NodeProcess:
    """A devnode in a child process, driven over its stdin/stdout with JSON lines.

    The child produces blocks on its own timer (``DevNode.advance`` on a fixed schedule) and
    reports every finality step as ``{"fin": [[number, hash], ...], "at": monotonic}``, so
    :attr:`finalized_at` is the node's own time of finalization. Faults are injected with
    :meth:`inject` (the child's ``node.faults.inject``), counters read with :meth:`stats`.
    It offers what the benchmarks need from a node and a finality clock: ``ws_url``,
    ``http_url``, ``finalized_number``, ``hash_of``, ``wait_for_finalized``,
    ``finalized_at`` and ``numbers_between``.
    """

    def __init__(self, **config: Any) -> None:
        self._config = config
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._changed = asyncio.Event()
        self.ws_url = ""
        self.http_url = ""
        self.finalized_number = -1
        self.finalized_at: dict[int, float] = {}
        self._hashes: dict[int, str] = {}

    async def __aenter__(self) -> NodeProcess:
        boot = (
            "import sys; sys.path.insert(0, sys.argv[1]); import common; "
            "common.devnode_child(sys.argv[2])"
        )
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", boot, BENCH_DIR, json.dumps(self._config),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=2**24,
        )
        assert self._process.stdout is not None
        line = await asyncio.wait_for(self._process.stdout.readline(), WAIT_S)
        if not line:
            raise RuntimeError("the devnode process ended before it was ready")
        ready = json.loads(line)["ready"]
        self.ws_url, self.http_url = ready["ws_url"], ready["http_url"]
        self._absorb(ready["fin"], ready["at"])
        self._reader = asyncio.create_task(self._read(), name="bench-node-reader")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        process = self._process
        if process is None:
            return
        if process.stdin is not None and not process.stdin.is_closing():
            process.stdin.close()  # the child stops on end of input
        try:
            await asyncio.wait_for(process.wait(), WAIT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    def hash_of(self, number: int) -> str:
        """The canonical hash of finalized block ``number``."""
        return self._hashes[number]

    def numbers_between(self, start_s: float, end_s: float) -> list[int]:
        """Block numbers finalized in ``[start_s, end_s)``."""
        return sorted(n for n, at in self.finalized_at.items() if start_s <= at < end_s)

    async def wait_for_finalized(self, number: int, timeout_s: float = WAIT_S) -> int:
        """Wait (bounded) until block ``number`` is finalized."""
        async with asyncio.timeout(timeout_s):
            while self.finalized_number < number:
                self._changed.clear()
                await self._changed.wait()
        return self.finalized_number

    async def inject(self, kind: str, *, seconds: float, **options: Any) -> None:
        """Start fault ``kind`` in the node now."""
        await self._ask({"cmd": "inject", "kind": kind, "seconds": seconds, "options": options})

    async def clear(self) -> None:
        """End every fault now."""
        await self._ask({"cmd": "clear"})

    async def stats(self) -> dict[str, Any]:
        """The node's counters (``http_requests``, ``requests`` by method, ...)."""
        result: dict[str, Any] = await self._ask({"cmd": "stats"})
        return result

    async def _ask(self, command: dict[str, Any]) -> Any:
        process = self._process
        assert process is not None and process.stdin is not None
        self._next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[self._next_id] = future
        process.stdin.write((json.dumps({"id": self._next_id, **command}) + "\n").encode())
        await process.stdin.drain()
        return await asyncio.wait_for(future, WAIT_S)

    def _absorb(self, finalized: list[list[Any]], at: float) -> None:
        for number, hash_hex in finalized:
            self._hashes[number] = hash_hex
            self.finalized_at.setdefault(number, at)
            self.finalized_number = max(self.finalized_number, number)
        self._changed.set()

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        async for line in self._process.stdout:
            message = json.loads(line)
            if "fin" in message:
                self._absorb(message["fin"], message["at"])
            elif "reply" in message:
                future = self._replies.pop(message["reply"], None)
                if future is not None and not future.done():
                    if message.get("error"):
                        future.set_exception(RuntimeError(message["error"]))
                    else:
                        future.set_result(message.get("result"))


def devnode_child(config_json: str) -> None:
    """Entry point of the :class:`NodeProcess` child (runs until its stdin closes)."""
    asyncio.run(_serve_devnode(json.loads(config_json)))


async def _serve_devnode(config: dict[str, Any]) -> None:
    from blockfeed.devnode import DevNode, DevNodeConfig

    block_time_s = float(config["block_time_s"])
    node_config = DevNodeConfig(host="127.0.0.1", port=0, auto_produce=False, **config)
    loop = asyncio.get_running_loop()
    out = sys.stdout

    def say(message: dict[str, Any]) -> None:
        out.write(json.dumps(message, separators=(",", ":")) + "\n")
        out.flush()

    async with DevNode(node_config) as node:
        chain = node.chain
        last = chain.finalized_number
        say({"ready": {"ws_url": node.ws_url, "http_url": node.http_url,
                       "fin": [[last, chain.hash_of(last)]], "at": time.monotonic()}})

        async def produce() -> None:
            nonlocal last
            next_at = loop.time() + block_time_s
            while True:
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                node.advance(1)
                now = time.monotonic()
                current = chain.finalized_number
                if current > last:
                    say({"fin": [[n, chain.hash_of(n)] for n in range(last + 1, current + 1)],
                         "at": now})
                    last = current
                next_at += block_time_s
                if loop.time() - next_at > block_time_s:  # fell far behind: do not burst
                    next_at = loop.time() + block_time_s

        def answer(command: dict[str, Any]) -> Any:
            if command["cmd"] == "inject":
                node.faults.inject(command["kind"], seconds=command["seconds"],
                                   **command["options"])
                return None
            if command["cmd"] == "clear":
                node.faults.clear()
                return None
            if command["cmd"] == "stats":
                stats = node.stats
                return {"http_requests": stats.http_requests, "requests": dict(stats.requests),
                        "connections": stats.connections, "restarts": stats.restarts}
            raise ValueError(f"unknown command {command['cmd']!r}")

        producer = asyncio.create_task(produce())
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        try:
            async for raw in reader:
                command = json.loads(raw)
                try:
                    say({"reply": command["id"], "result": answer(command)})
                except Exception as exc:  # report, keep serving
                    say({"reply": command["id"], "error": f"{type(exc).__name__}: {exc}"})
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer


class InProcessNode:
    """A devnode in this process, with the same interface as :class:`NodeProcess`.

    Only for comparison (``recovery.py --in-process-node``): the node then shares the event
    loop with the clients it serves, and finality is stamped by a task of that loop.
    """

    def __init__(self, **config: Any) -> None:
        from blockfeed.devnode import DevNode, DevNodeConfig

        self._node = DevNode(DevNodeConfig(host="127.0.0.1", port=0, **config))
        self._clock = FinalityClock(self._node)

    async def __aenter__(self) -> InProcessNode:
        await self._node.__aenter__()
        await self._clock.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._clock.__aexit__(*exc_info)
        await self._node.__aexit__(None, None, None)

    @property
    def ws_url(self) -> str:
        return self._node.ws_url

    @property
    def http_url(self) -> str:
        return self._node.http_url

    @property
    def finalized_number(self) -> int:
        return int(self._node.chain.finalized_number)

    @property
    def finalized_at(self) -> dict[int, float]:
        return self._clock.finalized_at

    def hash_of(self, number: int) -> str:
        return str(self._node.chain.hash_of(number))

    def numbers_between(self, start_s: float, end_s: float) -> list[int]:
        return self._clock.numbers_between(start_s, end_s)

    async def wait_for_finalized(self, number: int, timeout_s: float = WAIT_S) -> int:
        return int(await self._node.wait_for_finalized(number, timeout_s=timeout_s))

    async def inject(self, kind: str, *, seconds: float, **options: Any) -> None:
        self._node.faults.inject(kind, seconds=seconds, **options)

    async def clear(self) -> None:
        self._node.faults.clear()

    async def stats(self) -> dict[str, Any]:
        stats = self._node.stats
        return {"http_requests": stats.http_requests, "requests": dict(stats.requests),
                "connections": stats.connections, "restarts": stats.restarts}


Node = NodeProcess | InProcessNode
"""What the benchmarks drive: a devnode plus its finality clock."""
