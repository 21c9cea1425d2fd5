"""A discrete-event simulator for the follower: a chain, scripted nodes and a fake clock.

It plays the asyncio driver's part with no sockets and no sleeping: actions from the follower
become future events on a heap, node misbehaviour is a flag flipped at a given time, and the
clock jumps from event to event. A run of minutes of chain time takes milliseconds, so tests
can measure detection delays and polling latency in units of T deterministically.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from blockfeed.codec import block_hash
from blockfeed.core import (
    CloseSocket,
    Connect,
    FetchRange,
    Follower,
    Poll,
    Probe,
    Subscribe,
)
from blockfeed.core.actions import Action
from blockfeed.types import Block, FeedEvent, Header


def make_chain(start: int, count: int, *, seed: int = 7) -> dict[int, Header]:
    """``count`` parent-linked headers from ``start`` (the parent of ``start`` is made up)."""
    headers: dict[int, Header] = {}
    seed_bytes = seed.to_bytes(4, "little")
    parent = hashlib.blake2b(b"parent-of-start" + seed_bytes, digest_size=32).digest()
    for number in range(start, start + count):
        header = Header(
            parent_hash=parent,
            number=number,
            state_root=hashlib.blake2b(b"s%d-%d" % (seed, number), digest_size=32).digest(),
            extrinsics_root=bytes(32),
        )
        headers[number] = header
        parent = bytes.fromhex(block_hash(header)[2:])
    return headers


def liar_header(header: Header) -> Header:
    """The same header with a wrong parent hash (so its own hash changes too)."""
    return Header(
        parent_hash=hashlib.blake2b(b"lie" + header.parent_hash, digest_size=32).digest(),
        number=header.number,
        state_root=header.state_root,
        extrinsics_root=header.extrinsics_root,
    )


@dataclass
class SimChain:
    """Block ``start + k`` is finalized at about ``k x T``; announcements may jump or halt."""

    start: int = 1000
    block_time_s: float = 1.0
    count: int = 2000
    jitter_s: float = 0.0
    jump_rate: float = 0.0
    halts: list[tuple[float, float]] = field(default_factory=list)
    seed: int = 7

    def __post_init__(self) -> None:
        self.headers = make_chain(self.start, self.count, seed=self.seed)
        self.hashes = {n: block_hash(h) for n, h in self.headers.items()}
        rng = random.Random(self.seed)
        # (time, head number) of each finality announcement, strictly increasing in both.
        self.announcements: list[tuple[float, int]] = []
        self.finalized_time: dict[int, float] = {}
        last_t = -1.0
        pending: list[int] = []
        hold = 0
        for k in range(self.count):
            number = self.start + k
            t = k * self.block_time_s + rng.uniform(0, self.jitter_s)
            t = max(t, last_t + 1e-6)
            pending.append(number)
            if hold > 0:
                hold -= 1
                continue
            if k > 0 and len(pending) == 1 and rng.random() < self.jump_rate:
                hold = rng.randint(1, 3) - 1  # like GRANDPA (and devnode): wait 1-3 slots
                continue
            halted = next((end for begin, end in self.halts if begin <= t < end), None)
            if halted is not None:
                continue  # finality halted: announced (with the rest) when the halt ends
            for n in pending:
                self.finalized_time[n] = t
            pending = []
            self.announcements.append((t, number))
            last_t = t
        self._times = [t for t, _ in self.announcements]

    def head_at(self, t: float) -> int | None:
        """Finalized head number at time ``t`` (None before the first block)."""
        import bisect

        index = bisect.bisect_right(self._times, t) - 1
        return None if index < 0 else self.announcements[index][1]


@dataclass
class SimNode:
    """One endpoint's behaviour; tests flip these fields at chosen times."""

    label: str
    latency_s: float = 0.005
    ws_refuse: bool = False
    ws_close_after_subscribe: bool = False
    ws_sub_error: bool = False
    ws_silent: bool = False
    """Subscription sends nothing (F4); requests still answered."""
    http_fail: bool = False
    lie_ws: bool = False
    lag_blocks: int = 0


@dataclass
class Delivery:
    """A block as the subscriber saw it, with the simulated time it was handed out."""

    block: Block
    at: float


class Sim:
    """Runs a :class:`Follower` against a :class:`SimChain` and :class:`SimNode` s."""

    def __init__(self, follower: Follower, chain: SimChain, nodes: list[SimNode]) -> None:
        self.follower = follower
        self.chain = chain
        self.nodes = {node.label: node for node in nodes}
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self.deliveries: list[Delivery] = []
        self.events: list[FeedEvent] = []
        self.actions: list[tuple[float, Action]] = []
        self._socket: tuple[str, int] | None = None
        self._subscribed = False
        self.requests = 0
        for t, number in chain.announcements:
            self.at(t, lambda n=number: self._announce(n))

    # ---------------------------------------------------------------- scripting

    def at(self, t: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` at simulated time ``t``."""
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, fn))

    def close_socket_at(self, t: float, reason: str = "close frame 1001") -> None:
        """The node closes whatever socket is open at ``t`` (F1)."""

        def close() -> None:
            if self._socket is not None:
                label, attempt = self._socket
                self._socket = None
                self._subscribed = False
                self.follower.on_ws_closed(label, reason, self.now, attempt=attempt)

        self.at(t, close)

    def set_at(self, t: float, label: str, **flags: object) -> None:
        """Change node ``label``'s behaviour at ``t``."""

        def apply() -> None:
            for key, value in flags.items():
                setattr(self.nodes[label], key, value)

        self.at(t, apply)

    # ---------------------------------------------------------------- running

    def start(self) -> None:
        """Start the follower at the current time."""
        self.follower.start(self.now)
        self._collect()

    def run_until(self, t_end: float, *, max_timer_spins: int = 10_000) -> None:
        """Advance simulated time to ``t_end``, feeding events and timers to the follower."""
        spins = 0
        while True:
            event_t = self._heap[0][0] if self._heap else float("inf")
            deadline = self.follower.next_deadline()
            deadline_t = float("inf") if deadline is None else deadline
            t = min(event_t, deadline_t)
            if t > t_end:
                self.now = t_end
                return
            if event_t <= deadline_t:
                self.now = max(self.now, event_t)
                _, _, fn = heapq.heappop(self._heap)
                fn()
                spins = 0
            else:
                if deadline_t <= self.now:
                    spins += 1
                    assert spins < max_timer_spins, "follower busy-loops on next_deadline()"
                self.now = max(self.now, deadline_t)
                self.follower.on_timer(self.now)
            self._collect()

    def _collect(self) -> None:
        for block in self.follower.deliverable():
            self.deliveries.append(Delivery(block, self.now))
        self.events.extend(self.follower.events())
        for action in self.follower.actions():
            self.actions.append((self.now, action))
            self._perform(action)

    # ---------------------------------------------------------------- the fake nodes

    def _head(self, node: SimNode, t: float) -> int | None:
        head = self.chain.head_at(t)
        if head is None:
            return None
        return max(self.chain.start, head - node.lag_blocks)

    def _perform(self, action: Action) -> None:
        f = self.follower
        if isinstance(action, Connect):
            node = self.nodes[action.endpoint]
            done = self.now + node.latency_s
            if node.ws_refuse:
                self.at(done, lambda: f.on_failure(action, "connection refused", self.now))
            else:
                def connected() -> None:
                    self._socket = (action.endpoint, action.attempt)
                    self._subscribed = False
                    f.on_ws_connected(action.endpoint, self.now, attempt=action.attempt)

                self.at(done, connected)
        elif isinstance(action, Subscribe):
            node = self.nodes[action.endpoint]
            done = self.now + node.latency_s
            if node.ws_sub_error:
                self.at(done, lambda: f.on_failure(action, "JSON-RPC error -32009", self.now))
                return

            def subscribed() -> None:
                if self._socket != (action.endpoint, action.attempt):
                    return
                self._subscribed = True
                f.on_ws_subscribed(action.endpoint, self.now, attempt=action.attempt)
                if node.ws_close_after_subscribe:
                    self.close_socket_at(self.now + node.latency_s, "closed right after opening")
                    return
                head = self._head(node, self.now)
                if head is not None and not node.ws_silent:
                    self._send_ws(action.endpoint, action.attempt, head)

            self.at(done, subscribed)
        elif isinstance(action, CloseSocket):
            if self._socket == (action.endpoint, action.attempt):
                self._socket = None
                self._subscribed = False
        elif isinstance(action, Poll | Probe):
            self.requests += 1
            node = self.nodes[action.endpoint]
            asked_at = self.now + node.latency_s / 2
            done = self.now + node.latency_s
            on_result = f.on_poll_result if isinstance(action, Poll) else f.on_probe_result
            if action.transport == "ws":  # a request on the socket: answered while it is open
                if self._socket is None or self._socket[0] != action.endpoint:
                    self.at(done, lambda: f.on_failure(action, "socket closed", self.now))
                    return
            elif node.http_fail:
                self.at(done, lambda: f.on_failure(action, "HTTP 503", self.now, status=503))
                return
            head = self._head(node, asked_at)
            assert head is not None
            head_hash = self.chain.hashes[head]
            if head_hash == action.known_hash:
                self.at(done, lambda: on_result(action, head_hash, None, self.now))  # type: ignore[arg-type]
            else:
                self.requests += 1
                header = self.chain.headers[head]
                self.at(done, lambda: on_result(action, head_hash, header, self.now))  # type: ignore[arg-type]
        elif isinstance(action, FetchRange):
            self.requests += 2
            node = self.nodes[action.endpoint]
            done = self.now + node.latency_s
            over_ws = action.transport == "ws"
            if over_ws and (self._socket is None or self._socket[0] != action.endpoint):
                self.at(done, lambda: f.on_failure(action, "socket closed", self.now))
                return
            if node.http_fail and not over_ws:
                self.at(done, lambda: f.on_failure(action, "HTTP 503", self.now, status=503))
                return
            head = self._head(node, self.now) or 0
            numbers = range(action.start, action.end + 1)
            hashes = [self.chain.hashes.get(n) if n <= head else None for n in numbers]
            headers = [
                self.chain.headers[n] if h is not None else None
                for n, h in zip(numbers, hashes, strict=True)
            ]
            self.at(done, lambda: f.on_range_result(action, hashes, headers, self.now))

    def _announce(self, number: int) -> None:
        if self._socket is None or not self._subscribed:
            return
        label, attempt = self._socket
        node = self.nodes[label]
        if node.ws_silent:
            return
        head = self._head(node, self.now)
        if head is not None:
            self._send_ws(label, attempt, head)

    def _send_ws(self, label: str, attempt: int, number: int) -> None:
        node = self.nodes[label]
        header = self.chain.headers[number]
        if node.lie_ws:
            header = liar_header(header)

        def deliver() -> None:
            if self._socket == (label, attempt) and self._subscribed:
                self.follower.on_ws_header(header, label, self.now, attempt=attempt)

        self.at(self.now + node.latency_s, deliver)

    # ---------------------------------------------------------------- checks

    def numbers(self) -> list[int]:
        """Delivered block numbers in order."""
        return [d.block.number for d in self.deliveries]

    def assert_perfect(self) -> None:
        """Consecutive, unique, parent-linked, and every block is the true chain's block."""
        blocks = [d.block for d in self.deliveries]
        assert blocks, "nothing delivered"
        for prev, block in itertools.pairwise(blocks):
            assert block.number == prev.number + 1, (prev.number, block.number)
            assert block.parent_hash == prev.hash, block.number
        for block in blocks:
            assert block.hash == self.chain.hashes[block.number], block.number

    def delays(self, *, since: float = 0.0, until: float = float("inf")) -> list[float]:
        """Delivery delay of each block finalized in [since, until), in seconds."""
        out = []
        for d in self.deliveries:
            t = self.chain.finalized_time.get(d.block.number)
            if t is not None and since <= t < until:
                out.append(d.at - t)
        return out

    def event_kinds(self) -> list[str]:
        """Kinds of all events so far."""
        return [e.kind for e in self.events]

    def mode_changes(self) -> list[tuple[str, str]]:
        """(new mode, reason) of every mode change."""
        return [(str(e.new_mode), e.reason) for e in self.events if e.kind == "mode_changed"]
