"""Fixtures for the store tests: linked chains of real blocks and small tmpfs mounts."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from blockfeed.codec import block_hash
from blockfeed.types import Block, Header, Source

GENESIS_A = "0x" + "aa" * 32
GENESIS_B = "0x" + "bb" * 32

MakeBlocks = Callable[..., list[Block]]


def make_chain(start: int, count: int, *, with_header: bool = True) -> list[Block]:
    """``count`` linked blocks from ``start``, each hash computed from its real header."""
    blocks: list[Block] = []
    parent = bytes.fromhex("%064x" % (start * 7919 + 1))
    for number in range(start, start + count):
        header = Header(
            parent_hash=parent,
            number=number,
            state_root=number.to_bytes(32, "big"),
            extrinsics_root=b"\x22" * 32,
            digest_logs=(b"\x06aura\x20" + number.to_bytes(8, "little"),),
        )
        digest = block_hash(header)
        blocks.append(
            Block(
                number=number,
                hash=digest,
                parent_hash="0x" + parent.hex(),
                source=Source.BACKFILL if number % 3 == 0 else Source.WS,
                received_at=1_700_000_000.0 + number,
                header=header if with_header else None,
                late=number % 3 == 0,
            )
        )
        parent = bytes.fromhex(digest[2:])
    return blocks


@pytest.fixture
def make_blocks() -> MakeBlocks:
    """The :func:`make_chain` helper as a fixture."""
    return make_chain


class Tmpfs:
    """Small tmpfs mounts under a test's tmp_path; skips the test when mounting is not allowed."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self.mounted: list[Path] = []

    def mount(self, size: str) -> Path:
        """A fresh tmpfs of ``size`` (e.g. ``"256k"``)."""
        point = self._root / f"mnt-{uuid.uuid4().hex[:8]}"
        point.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(point)],
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
        self.mounted.append(point)
        return point

    def make_read_only(self, point: Path) -> None:
        """Remount ``point`` read-only."""
        subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True, capture_output=True)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    """A :class:`Tmpfs` whose mounts are removed after the test."""
    mounts = Tmpfs(tmp_path)
    yield mounts
    for point in reversed(mounts.mounted):
        subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)
