"""Property tests: any interleaving of inputs yields exactly-once, in-order, linked output.

The merge is fed random offers (duplicates, reorders, skips, lies, truncated or corrupt
ranges); the follower is fed random interleavings of socket notifications, poll/probe/range
answers, failures, socket closes and timer ticks. Whatever happens, the delivered sequence is
consecutive from the start, each block's parent is the previous block, every block is the true
chain's, and (liveness) once honest data is supplied everything up to the head is delivered.
"""

from __future__ import annotations

from chainsim import liar_header, make_chain
from hypothesis import given, settings
from hypothesis import strategies as st

from blockfeed.codec import block_hash
from blockfeed.core import (
    Candidate,
    CloseSocket,
    Connect,
    FetchRange,
    Follower,
    FollowerConfig,
    Merge,
    Poll,
    Probe,
    Subscribe,
)
from blockfeed.core.actions import Action
from blockfeed.types import Block, Source

START = 1000
CHAIN = make_chain(START, 120)
HASH = {n: block_hash(h) for n, h in CHAIN.items()}
TOP = START + 119


def assert_sound(blocks: list[Block], first: int) -> None:
    """Consecutive from ``first``, parent-linked, and the true chain's blocks."""
    for offset, block in enumerate(blocks):
        assert block.number == first + offset
        assert block.hash == HASH[block.number]
        if offset:
            assert block.parent_hash == blocks[offset - 1].hash


merge_ops = st.lists(
    st.one_of(
        st.tuples(st.just("ws"), st.integers(0, 60), st.booleans(), st.sampled_from("ab")),
        st.tuples(st.just("poll"), st.integers(0, 60), st.booleans(), st.sampled_from("ab")),
        st.tuples(st.just("range"), st.integers(0, 60), st.integers(1, 8),
                  st.sampled_from(["ok", "short", "corrupt", "unlinked"])),
        st.tuples(st.just("fill")),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops=merge_ops, head=st.integers(1, 60))
def test_merge_any_offers_exactly_once(ops: list[tuple], head: int) -> None:  # type: ignore[type-arg]
    """Random offers never break order, uniqueness or linkage; honest data then completes it."""
    anchor = START + 10
    merge = Merge(anchor=(anchor, HASH[anchor]))
    out: list[Block] = []
    for op in ops:
        kind = op[0]
        if kind in ("ws", "poll"):
            n = anchor + 1 + op[1]
            header = liar_header(CHAIN[n]) if op[2] else CHAIN[n]
            merge.offer(Candidate.of(header, source=Source.WS if kind == "ws" else Source.POLL,
                                     endpoint=op[3], received_at=0.0, confirmed=kind == "poll"))
        elif kind == "range":
            start = anchor + 1 + op[1]
            numbers = list(range(start, start + op[2]))
            hashes: list[str | None] = [HASH[n] for n in numbers]
            headers = [CHAIN[n] for n in numbers]
            if op[3] == "short":
                hashes[-1] = None
            elif op[3] == "corrupt":
                headers[-1] = liar_header(headers[-1])
            elif op[3] == "unlinked":  # self-consistent but a different chain
                headers = [liar_header(h) for h in headers]
                hashes = [block_hash(h) for h in headers]
            merge.offer_range(start, hashes, headers, endpoint="c", received_at=0.0)
        else:
            gap = merge.gap(chunk=5)
            if gap is not None:
                nums = range(gap[0], gap[1] + 1)
                merge.offer_range(gap[0], [HASH[n] for n in nums], [CHAIN[n] for n in nums],
                                  endpoint="c", received_at=0.0)
        out += merge.drain()
        assert_sound(out, anchor + 1)
    # Liveness: an honest head and honest backfills deliver everything up to it.
    target = anchor + 1 + head
    merge.offer(Candidate.of(CHAIN[target], source=Source.POLL, endpoint="a", received_at=0.0,
                             confirmed=True))
    out += merge.drain()
    for _ in range(100):
        gap = merge.gap(chunk=5)
        if gap is None:
            break
        nums = range(gap[0], gap[1] + 1)
        merge.offer_range(gap[0], [HASH[n] for n in nums], [CHAIN[n] for n in nums],
                          endpoint="c", received_at=0.0)
        out += merge.drain()
    assert_sound(out, anchor + 1)
    assert out[-1].number >= target


follower_ops = st.lists(
    st.one_of(
        st.tuples(st.just("ws"), st.integers(-3, 6), st.booleans()),
        st.tuples(st.just("answer"), st.integers(0, 9),
                  st.sampled_from(["ok", "ok", "ok", "fail", "short", "lie"])),
        st.tuples(st.just("tick"), st.floats(0.0, 3.0)),
        st.tuples(st.just("close")),
        st.tuples(st.just("advance")),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(ops=follower_ops, two_endpoints=st.booleans())
def test_follower_any_interleaving_exactly_once(ops: list[tuple], two_endpoints: bool) -> None:  # type: ignore[type-arg]
    """Random socket/poll/probe/backfill events and failures keep the output sound."""
    labels = ["a", "b"] if two_endpoints else ["a"]
    anchor = START + 5
    f = Follower(labels, anchor=(anchor, HASH[anchor]),
                 config=FollowerConfig(block_time_s=1.0, range_chunk=4), rng=lambda: 0.5)
    now = 0.0
    head = anchor + 2  # the chain's finalized head, grows with "advance"
    outstanding: list[Action] = []
    socket: tuple[str, int] | None = None
    out: list[Block] = []

    def collect() -> None:
        nonlocal socket
        out.extend(f.deliverable())
        f.events()
        for action in f.actions():
            if isinstance(action, CloseSocket):
                if socket == (action.endpoint, action.attempt):
                    socket = None
            else:
                outstanding.append(action)

    def answer(action: Action, mode: str) -> None:
        nonlocal socket
        if mode == "fail":
            f.on_failure(action, "boom", now)
        elif isinstance(action, Connect):
            socket = (action.endpoint, action.attempt)
            f.on_ws_connected(action.endpoint, now, attempt=action.attempt)
        elif isinstance(action, Subscribe):
            f.on_ws_subscribed(action.endpoint, now, attempt=action.attempt)
        elif isinstance(action, Poll | Probe):
            header = liar_header(CHAIN[head]) if mode == "lie" else CHAIN[head]
            result = f.on_poll_result if isinstance(action, Poll) else f.on_probe_result
            result(action, block_hash(header), header, now)  # type: ignore[arg-type]
        elif isinstance(action, FetchRange):
            nums = list(range(action.start, action.end + 1))
            hashes: list[str | None] = [HASH[n] if n <= head else None for n in nums]
            headers = [CHAIN[n] if n <= head else None for n in nums]
            if mode == "short" and hashes:
                hashes[-1] = None
            if mode == "lie" and headers and headers[0] is not None:
                headers[0] = liar_header(headers[0])
            f.on_range_result(action, hashes, headers, now)

    f.start(now)
    collect()
    for op in ops:
        kind = op[0]
        if kind == "ws" and socket is not None:
            n = min(max(anchor - 2, head + op[1]), TOP)
            header = liar_header(CHAIN[n]) if op[2] else CHAIN[n]
            f.on_ws_header(header, socket[0], now, attempt=socket[1])
        elif kind == "answer" and outstanding:
            answer(outstanding.pop(op[1] % len(outstanding)), op[2])
        elif kind == "tick":
            now += op[1]
            f.on_timer(now)
        elif kind == "close" and socket is not None:
            label, attempt = socket
            socket = None
            f.on_ws_closed(label, "reset", now, attempt=attempt)
        elif kind == "advance":
            head = min(head + 1, TOP - 10)
        collect()
        assert_sound(out, anchor + 1)
    # Liveness: answer everything honestly for a while; the feed reaches the head.
    for _ in range(400):
        if outstanding:
            answer(outstanding.pop(0), "ok")
        else:
            now += 0.5
            f.on_timer(now)
        collect()
        if out and out[-1].number >= head:
            break
    assert_sound(out, anchor + 1)
    assert out and out[-1].number >= head
