"""What one transport (``ws`` or ``http``) is told about the chain, lies included (F10).

A ``lie`` fault in ``parent`` mode serves headers whose ``parentHash`` is wrong, so their hash
differs from the canonical one; the lying hashes are remembered so ``chain_getHeader`` on them
answers consistently, like a node on a fork. In ``lag`` mode the finalized head is reported
``blocks`` behind the truth.
"""

from __future__ import annotations

import hashlib

from blockfeed.codec import block_hash
from blockfeed.devnode.chain import Chain, lying_parent
from blockfeed.devnode.faults import ActiveFault, FaultInjector
from blockfeed.types import Header

MAX_REMEMBERED_LIES = 100_000


class LieBook:
    """Lying hash -> block number, shared by both transports; bounded."""

    def __init__(self) -> None:
        self._numbers: dict[str, int] = {}

    def remember(self, lie_hash: str, number: int) -> None:
        if len(self._numbers) >= MAX_REMEMBERED_LIES:
            self._numbers.clear()
        self._numbers[lie_hash] = number

    def number_of(self, lie_hash: str) -> int | None:
        return self._numbers.get(lie_hash)

    def clear(self) -> None:
        """Forget every lie (the chain they were told about was replaced)."""
        self._numbers.clear()


def _coin(seed: int, number: int) -> float:
    """A deterministic value in [0, 1) per block, so a header lies consistently."""
    digest = hashlib.blake2b(
        seed.to_bytes(16, "little", signed=True) + b"lie-coin" + number.to_bytes(8, "little"),
        digest_size=8,
    ).digest()
    return int.from_bytes(digest, "little") / float(1 << 64)


class ChainView:
    """The chain as served on one transport while the current faults hold."""

    def __init__(
        self, chain: Chain, faults: FaultInjector, transport: str, lie_book: LieBook
    ) -> None:
        self.chain = chain
        self.transport = transport
        self._faults = faults
        self._lie_book = lie_book

    def _lies(self) -> list[ActiveFault]:
        return [
            fault
            for fault in self._faults.active("lie")
            if fault.options["on"] in (self.transport, "both")
        ]

    def _parent_lie_rate(self) -> float:
        lies = self._lies()
        return max((f.options["rate"] for f in lies if f.options["mode"] == "parent"), default=0.0)

    def lag_blocks(self) -> int:
        """How far behind the finalized head is reported (0 when not lying about it)."""
        lags = [fault.options["blocks"] for fault in self._lies() if fault.options["mode"] == "lag"]
        return max(lags, default=0)

    def lies_about(self, number: int) -> bool:
        """True when this transport serves a wrong parent for block ``number`` right now."""
        if number == 0:
            return False
        rate = self._parent_lie_rate()
        return rate > 0 and _coin(self.chain.seed, number) < rate

    def header(self, number: int) -> Header:
        """The header served for ``number`` (``LookupError`` when the chain lacks it)."""
        if self.lies_about(number):
            return self.lying_header(number)
        return self.chain.header_of(number)

    def lying_header(self, number: int) -> Header:
        """Block ``number`` with a wrong parent hash (remembered, so its hash resolves later)."""
        header = self.chain.header_of(number)
        lie = Header(
            parent_hash=lying_parent(self.chain.seed, number),
            number=header.number,
            state_root=header.state_root,
            extrinsics_root=header.extrinsics_root,
            digest_logs=header.digest_logs,
        )
        self._lie_book.remember(block_hash(lie), number)
        return lie

    def hash_of(self, number: int) -> str:
        """The hash served for ``number`` (the lying one when lying)."""
        if self.lies_about(number):
            return block_hash(self.header(number))
        return self.chain.hash_of(number)

    def finalized_number(self) -> int:
        """The finalized number as reported here (lagging when lying about it)."""
        lag = self.lag_blocks()
        if not lag:
            return self.chain.finalized_number
        return max(self.chain.start_block, self.chain.finalized_number - lag)

    def number_of(self, block_hash_hex: str) -> int | None:
        """The block a hash names: canonical, or a lie this node told earlier."""
        number = self.chain.number_of(block_hash_hex)
        if number is not None:
            return number
        return self._lie_book.number_of(block_hash_hex)
