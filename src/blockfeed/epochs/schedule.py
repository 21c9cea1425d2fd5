"""Epoch schedules: which epoch a block is in, where that epoch starts and how long it is.

Two schedules share one small async interface (:class:`Schedule`), so the epoch monitor works
with either:

* :class:`EpochSchedule` is plain arithmetic, ``epoch = number // length`` (the numbering in the
  log line ``Block #6940429 | Epoch 19278 | Block 349/360``);
* :class:`~blockfeed.epochs.subnet.SubnetEpochSchedule` asks the chain where a subnet's epochs
  really are, because subtensor's scheduler has changed over time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from blockfeed import defaults
from blockfeed.errors import ConfigError

DEFAULT_EPOCH_LENGTH = defaults.EPOCH_LENGTH
"""Bittensor's classic epoch: 360 blocks of 12 s (72 minutes)."""


@dataclass(frozen=True, slots=True)
class EpochSpan:
    """One epoch: blocks ``start`` to ``end`` inclusive, identified by ``epoch``."""

    epoch: int
    """The epoch's identity: ``number // length`` for :class:`EpochSchedule`; the first block's
    number for subnet schedules (unique and increasing even when a subnet's tempo changes)."""
    start: int
    end: int

    @property
    def length(self) -> int:
        """Blocks in this epoch."""
        return self.end - self.start + 1

    def contains(self, number: int) -> bool:
        """True when block ``number`` belongs to this epoch."""
        return self.start <= number <= self.end

    def block_in_epoch(self, number: int) -> int:
        """Position of ``number`` in the epoch, 0-based."""
        return number - self.start

    def format_position(self, number: int) -> str:
        """``"Epoch 19278 | Block 349/360"``: the shape operators already read in the logs."""
        return f"Epoch {self.epoch} | Block {self.block_in_epoch(number)}/{self.length}"


class Schedule(Protocol):
    """What the epoch monitor needs from a schedule."""

    async def span_of(self, number: int, *, block_hash: str | None = None) -> EpochSpan:
        """The epoch containing block ``number``; ``block_hash`` lets a chain-backed schedule
        ask the chain's state as of that block."""
        ...


@dataclass(frozen=True, slots=True)
class EpochSchedule:
    """Fixed-length epochs numbered from block 0: ``epoch = number // length``."""

    length: int = DEFAULT_EPOCH_LENGTH

    def __post_init__(self) -> None:
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length < 1:
            raise ConfigError(
                f"epoch length must be a positive number of blocks, got {self.length!r}"
            )

    def epoch_of(self, number: int) -> int:
        """The epoch block ``number`` belongs to."""
        return _block_number(number) // self.length

    def block_in_epoch(self, number: int) -> int:
        """Position of block ``number`` within its epoch, ``0 .. length - 1``."""
        return _block_number(number) % self.length

    def epoch_start(self, epoch: int) -> int:
        """First block of ``epoch``."""
        return _block_number(epoch, "epoch") * self.length

    def epoch_end(self, epoch: int) -> int:
        """Last block of ``epoch``."""
        return self.epoch_start(epoch) + self.length - 1

    def span(self, number: int) -> EpochSpan:
        """The epoch containing block ``number`` (synchronous: no chain needed)."""
        epoch = self.epoch_of(number)
        return EpochSpan(epoch=epoch, start=self.epoch_start(epoch), end=self.epoch_end(epoch))

    async def span_of(self, number: int, *, block_hash: str | None = None) -> EpochSpan:
        """:meth:`span`, for the :class:`Schedule` interface."""
        return self.span(number)

    def format_position(self, number: int) -> str:
        """``"Epoch 19278 | Block 349/360"`` for block 6940429 with length 360."""
        return self.span(number).format_position(number)


def _block_number(value: int, what: str = "block number") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return value
