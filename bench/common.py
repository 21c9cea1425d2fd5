"""Shared measuring tools for the benchmarks: who delivered which block when, and what that costs.

Times are ``time.monotonic()`` seconds in this process. The devnode runs in the same event loop,
so the moment a block is finalized (:class:`FinalityClock`) and the moment a client hands it to
its user (:class:`Recorder`) are on one clock, and a block's *delivery delay* is simply the
difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from websockets.asyncio.client import connect as ws_connect

from blockfeed.codec import block_hash, header_from_json

WAIT_S = 30.0
"""Bound on any wait for a real event in the benchmarks (they must never hang)."""


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
    clock: FinalityClock,
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
