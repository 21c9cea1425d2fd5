"""Deterministic chains of real headers for the Redis tests (no feed, no node needed)."""

from __future__ import annotations

import hashlib
import itertools

from blockfeed.codec import block_hash
from blockfeed.types import Block, Header, Source

START_BLOCK = 6_940_000


def _digest(*parts: object) -> bytes:
    return hashlib.blake2b(repr(parts).encode(), digest_size=32).digest()


def make_chain(count: int, *, start: int = START_BLOCK, seed: int = 1) -> list[Block]:
    """``count`` parent-linked blocks from ``start``, with headers whose hashes check out."""
    blocks: list[Block] = []
    parent = _digest("genesis-parent", seed, start)
    for number in range(start, start + count):
        header = Header(
            parent_hash=parent,
            number=number,
            state_root=_digest("state", seed, number),
            extrinsics_root=_digest("extrinsics", seed, number),
            digest_logs=(b"\x06aura" + number.to_bytes(8, "little"),),
        )
        hash_ = block_hash(header)
        source = (Source.WS, Source.POLL, Source.BACKFILL)[number % 3]
        blocks.append(
            Block(
                number=number,
                hash=hash_,
                parent_hash="0x" + parent.hex(),
                source=source,
                received_at=1_700_000_000.0 + number * 12.000123,
                header=header,
                late=source is Source.BACKFILL,
            )
        )
        parent = bytes.fromhex(hash_[2:])
    return blocks


def assert_chain(blocks: list[Block], expected: list[Block]) -> None:
    """``blocks`` are exactly ``expected``: same numbers, hashes, order, parent-linked."""
    assert [b.number for b in blocks] == [b.number for b in expected]
    assert [b.hash for b in blocks] == [b.hash for b in expected]
    for before, after in itertools.pairwise(blocks):
        assert after.parent_hash == before.hash
