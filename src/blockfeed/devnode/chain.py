"""The devnode's chain: a deterministic, parent-linked header chain with GRANDPA-like finality.

Sans-I/O: :meth:`Chain.tick` produces one block and maybe finalizes some; the asyncio node calls
it on a timer. Everything is derived from ``seed``, so two nodes with the same config serve the
same hashes. :meth:`Chain.replace` starts it over in place as another chain (the ``reset``
fault, F13), with another genesis or the same one.

Memory: only the 32-byte hash of each block is stored (plus a compact hash->number index of
~24 bytes per block); headers are rebuilt on demand from the number, the parent's hash and the
seed, so a few hundred thousand blocks cost a few MB.

Blocks below ``start_block`` exist only virtually: the parent of ``start_block`` is a
deterministic hash, ``chain_getBlockHash`` answers ``null`` for them and only the genesis block
(number 0) is served as well.
"""

from __future__ import annotations

import hashlib
import random
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from blockfeed.codec import block_hash, encode_compact
from blockfeed.types import Header

AURA_ENGINE_ID = b"aura"
PRE_RUNTIME_DIGEST = 0x06
SEAL_DIGEST = 0x05
SLOT_BASE = 140_000_000
"""Aura slot of block 0; slot = SLOT_BASE + number (about unix time / 12 s, as on finney)."""
MAX_JUMP_EXTRA_BLOCKS = 3
"""A GRANDPA "jump" finalizes 2 to 1 + this many blocks at once."""


def _derive(seed: int, label: bytes, number: int, size: int = 32) -> bytes:
    """A deterministic pseudo-random byte string for (seed, label, number)."""
    material = seed.to_bytes(16, "little", signed=True) + label + number.to_bytes(8, "little")
    return hashlib.blake2b(material, digest_size=size).digest()


def digest_logs(seed: int, number: int) -> tuple[bytes, ...]:
    """Realistic Aura digest: a PreRuntime slot item and a 64-byte Seal item."""
    slot = (SLOT_BASE + number).to_bytes(8, "little")
    pre_runtime = bytes([PRE_RUNTIME_DIGEST]) + AURA_ENGINE_ID + encode_compact(len(slot)) + slot
    signature = _derive(seed, b"seal", number, size=64)
    seal = bytes([SEAL_DIGEST]) + AURA_ENGINE_ID + encode_compact(len(signature)) + signature
    return (pre_runtime, seal)


def build_header(
    seed: int, number: int, parent_hash: bytes, extrinsics_root: bytes | None = None
) -> Header:
    """The header of ``number`` given its parent's hash (roots and digest from the seed, unless
    the block has a real body: then its ``extrinsics_root``)."""
    return Header(
        parent_hash=parent_hash,
        number=number,
        state_root=_derive(seed, b"state", number),
        extrinsics_root=extrinsics_root or _derive(seed, b"extrinsics", number),
        digest_logs=digest_logs(seed, number),
    )


def genesis_header(seed: int) -> Header:
    """Block 0: zero parent, no digest, roots from the seed."""
    return Header(
        parent_hash=bytes(32),
        number=0,
        state_root=_derive(seed, b"genesis-state", 0),
        extrinsics_root=_derive(seed, b"genesis-extrinsics", 0),
        digest_logs=(),
    )


def lying_parent(seed: int, number: int) -> bytes:
    """The wrong parent hash a lying endpoint puts in block ``number`` (deterministic)."""
    return _derive(seed, b"lie", number)


class _HashIndex:
    """Open-addressing map from a 32-byte hash to its position, ~24 bytes per entry.

    Keys are the hash's first 8 bytes; a full-hash check in the caller rules out collisions.
    """

    def __init__(self) -> None:
        self._capacity = 1024
        self._keys = array("Q", bytes(8 * self._capacity))
        self._values = array("I", bytes(4 * self._capacity))
        self._size = 0

    def add(self, digest: bytes, position: int) -> None:
        if (self._size + 1) * 2 > self._capacity:
            self._grow()
        self._insert(int.from_bytes(digest[:8], "little"), position + 1)
        self._size += 1

    def candidates(self, digest: bytes) -> list[int]:
        """Positions whose hash starts like ``digest`` (almost always zero or one)."""
        key = int.from_bytes(digest[:8], "little")
        mask = self._capacity - 1
        slot = key & mask
        found: list[int] = []
        while self._values[slot]:
            if self._keys[slot] == key:
                found.append(self._values[slot] - 1)
            slot = (slot + 1) & mask
        return found

    def _insert(self, key: int, stored: int) -> None:
        mask = self._capacity - 1
        slot = key & mask
        while self._values[slot]:
            slot = (slot + 1) & mask
        self._keys[slot] = key
        self._values[slot] = stored

    def _grow(self) -> None:
        old_keys, old_values = self._keys, self._values
        self._capacity *= 2
        self._keys = array("Q", bytes(8 * self._capacity))
        self._values = array("I", bytes(4 * self._capacity))
        for key, stored in zip(old_keys, old_values, strict=True):
            if stored:
                self._insert(key, stored)


@dataclass(frozen=True, slots=True)
class Tick:
    """What one :meth:`Chain.tick` changed."""

    best: int
    """The new best block number."""
    finalized_from: int | None = None
    """First newly finalized number, or None when finality did not move."""
    finalized_to: int | None = None
    """Newest finalized number after the tick (subscribers only hear about this one)."""


class Chain:
    """The canonical (truthful) chain the node serves, lies aside."""

    def __init__(
        self,
        *,
        seed: int,
        start_block: int,
        finality_lag: int,
        finality_jumps: float,
        genesis_seed: int | None = None,
        body_root: Callable[[int], bytes] | None = None,
    ) -> None:
        self.body_root = body_root
        """Block number -> its body's extrinsics root (devnode/contents.py), when blocks have
        bodies."""
        self.finality_lag = finality_lag
        self.finality_jumps = finality_jumps
        self.generation = 0
        """How many times :meth:`replace` started this chain over (``reset`` faults)."""
        self._begin(seed, seed if genesis_seed is None else genesis_seed, start_block)

    def replace(self, *, seed: int, genesis_seed: int, start_block: int) -> None:
        """Start over as another chain, in place (holders of this object see the new one).

        ``genesis_seed`` equal to the current one keeps block 0 (a dev chain restarted on the
        same genesis); every later block differs as long as ``seed`` does.
        """
        self.generation += 1
        self._begin(seed, genesis_seed, start_block)

    def _begin(self, seed: int, genesis_seed: int, start_block: int) -> None:
        self.seed = seed
        self.genesis_seed = genesis_seed
        """Block 0 comes from this seed; a chain restarted on the same genesis keeps it while
        ``seed`` (every later block) changes."""
        self.start_block = start_block
        finality_lag = self.finality_lag
        self._rng = random.Random(f"finality-{seed}")
        self._genesis = genesis_header(self.genesis_seed)
        self._genesis_hash = bytes.fromhex(block_hash(self._genesis)[2:])
        if start_block == 1:
            self._virtual_parent = self._genesis_hash
        else:
            self._virtual_parent = _derive(seed, b"virtual-parent", start_block)
        self._hashes = bytearray()
        self._index = _HashIndex()
        self._hold_steps = 0
        self.finalized_number = start_block
        for _ in range(finality_lag + 1):
            self._append()

    # -- reading ---------------------------------------------------------------------------------

    @property
    def best_number(self) -> int:
        """The newest block number."""
        return self.start_block + len(self._hashes) // 32 - 1

    @property
    def genesis_hash(self) -> str:
        """``0x`` hash of block 0 (fixed for a given ``genesis_seed``)."""
        return "0x" + self._genesis_hash.hex()

    @property
    def finalized_hash(self) -> str:
        """``0x`` hash of the finalized head."""
        return self.hash_of(self.finalized_number)

    @property
    def best_hash(self) -> str:
        """``0x`` hash of the best block."""
        return self.hash_of(self.best_number)

    def has(self, number: int) -> bool:
        """True when block ``number`` is served (genesis or start_block..best)."""
        return number == 0 or self.start_block <= number <= self.best_number

    def hash_of(self, number: int) -> str:
        """``0x`` hash of block ``number``; ``LookupError`` when the node does not serve it."""
        return "0x" + self.raw_hash_of(number).hex()

    def raw_hash_of(self, number: int) -> bytes:
        """The 32 raw bytes of :meth:`hash_of`."""
        if number == 0:
            return self._genesis_hash
        if not self.start_block <= number <= self.best_number:
            raise LookupError(
                f"block {number} is not served (this chain has 0 and "
                f"{self.start_block}..{self.best_number})"
            )
        offset = (number - self.start_block) * 32
        return bytes(self._hashes[offset : offset + 32])

    def header_of(self, number: int) -> Header:
        """The canonical header of block ``number``; ``LookupError`` when not served."""
        if number == 0:
            return self._genesis
        return build_header(self.seed, number, self._parent_of(number), self._body_root(number))

    def number_of(self, hash_hex_or_bytes: str | bytes) -> int | None:
        """The number of the block with this hash, or None when the chain does not have it."""
        if isinstance(hash_hex_or_bytes, str):
            try:
                digest = bytes.fromhex(hash_hex_or_bytes.removeprefix("0x"))
            except ValueError:
                return None
        else:
            digest = hash_hex_or_bytes
        if len(digest) != 32:
            return None
        if digest == self._genesis_hash:
            return 0
        for position in self._index.candidates(digest):
            if self._hashes[position * 32 : position * 32 + 32] == digest:
                return self.start_block + position
        return None

    def _body_root(self, number: int) -> bytes | None:
        return None if self.body_root is None else self.body_root(number)

    def _parent_of(self, number: int) -> bytes:
        if not self.start_block <= number <= self.best_number:
            raise LookupError(
                f"block {number} is not served (this chain has 0 and "
                f"{self.start_block}..{self.best_number})"
            )
        return self._parent_for_new(number)

    def _parent_for_new(self, number: int) -> bytes:
        if number == self.start_block:
            return self._virtual_parent
        return self.raw_hash_of(number - 1)

    # -- growing ---------------------------------------------------------------------------------

    def _append(self) -> int:
        number = self.start_block + len(self._hashes) // 32
        header = build_header(self.seed, number, self._parent_for_new(number),
                              self._body_root(number))
        digest = bytes.fromhex(block_hash(header)[2:])
        self._index.add(digest, number - self.start_block)
        self._hashes += digest
        return number

    def tick(self, *, finality_halted: bool = False) -> Tick:
        """Produce the next best block and take one finality step (unless halted)."""
        best = self._append()
        if finality_halted:
            return Tick(best=best)
        old = self.finalized_number
        if self._finality_step():
            return Tick(best=best, finalized_from=old + 1, finalized_to=self.finalized_number)
        return Tick(best=best)

    def _finality_step(self) -> bool:
        """GRANDPA-like: usually one block; with probability ``finality_jumps`` wait, then 2-4."""
        target = self.best_number - self.finality_lag
        if target <= self.finalized_number:
            return False
        if self._hold_steps > 0:
            self._hold_steps -= 1
            if self._hold_steps > 0:
                return False
        if target - self.finalized_number == 1 and self._rng.random() < self.finality_jumps:
            self._hold_steps = self._rng.randint(1, MAX_JUMP_EXTRA_BLOCKS)
            return False
        self.finalized_number = target
        return True
