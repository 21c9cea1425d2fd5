"""Deterministic parent-linked blocks with real headers, for the sink tests and the benchmark."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools

from blockfeed.codec import block_hash
from blockfeed.types import Block, Header, Source

START_BLOCK = 5_000_000


def _digest(*parts: object) -> bytes:
    return hashlib.blake2b(repr(parts).encode(), digest_size=32).digest()


def make_chain(count: int, *, start: int = START_BLOCK, seed: int = 1) -> list[Block]:
    """``count`` parent-linked blocks from ``start`` whose hashes are their headers' hashes."""
    blocks: list[Block] = []
    parent = _digest("parent", seed, start)
    for number in range(start, start + count):
        header = Header(
            parent_hash=parent,
            number=number,
            state_root=_digest("state", seed, number),
            extrinsics_root=_digest("extrinsics", seed, number),
        )
        hash_ = block_hash(header)
        blocks.append(
            Block(
                number=number,
                hash=hash_,
                parent_hash="0x" + parent.hex(),
                source=Source.WS,
                received_at=1_700_000_000.0 + number * 12.0,
                header=header,
            )
        )
        parent = bytes.fromhex(hash_[2:])
    return blocks


def assert_linked(rows: list[tuple[int, str, str]], expected: list[Block]) -> None:
    """The (number, hash, parent) rows are exactly ``expected``, in order, parent-linked."""
    assert [r[0] for r in rows] == [b.number for b in expected]
    assert [r[1] for r in rows] == [b.hash for b in expected]
    for before, after in itertools.pairwise(rows):
        assert after[2] == before[1]


class WindowStore:
    """An in-memory stand-in for the feed store's recent-block window (``SinkStore``)."""

    def __init__(self, blocks: list[Block]) -> None:
        self.blocks = {b.number: b for b in blocks}

    def window_bounds(self) -> tuple[int, int] | None:
        return (min(self.blocks), max(self.blocks)) if self.blocks else None

    def get_range(self, start: int, limit: int) -> list[Block]:
        out = []
        for number in range(start, start + limit):
            if number not in self.blocks:
                break
            out.append(self.blocks[number])
        return out


def fast_delays() -> itertools.repeat[float]:
    """Reconnect delays for tests: retry every 50 ms."""
    return itertools.repeat(0.05)


BIG_AMOUNT = 2**70 + 3
"""A u128-like amount: beyond 2^53, so sinks must write it as text."""


def with_contents(blocks: list[Block]) -> list[Block]:
    """``blocks`` carrying contents as a feed at level ``full`` delivers them: a transfer with a
    big amount, a remark holding a NUL character (JSONB refuses it raw), one extrinsic."""
    return [
        dataclasses.replace(
            block,
            timestamp=1_700_000_000_000 + block.number,
            spec_version=218,
            events=[
                {"index": 0, "phase": "ApplyExtrinsic", "extrinsic_index": 0,
                 "pallet": "Balances", "name": "Transfer",
                 "fields": {"amount": BIG_AMOUNT, "memo": "a\x00b"}},
            ],
            extrinsics=[
                {"index": 0, "pallet": "Timestamp", "call": "set", "args": {"now": block.number},
                 "signed": False, "hash": "0x" + "cd" * 32},
            ],
        )
        for block in blocks
    ]
