"""EpochSchedule: fixed-length epochs, positions and the familiar log format."""

from __future__ import annotations

from typing import Any

import pytest

from blockfeed.epochs import EpochSchedule, EpochSpan
from blockfeed.errors import ConfigError


def test_finney_example_block() -> None:
    """Block 6940429 is block 349 of epoch 19278 with 360-block epochs."""
    schedule = EpochSchedule()
    assert schedule.length == 360
    assert schedule.epoch_of(6_940_429) == 19_278
    assert schedule.block_in_epoch(6_940_429) == 349
    assert schedule.format_position(6_940_429) == "Epoch 19278 | Block 349/360"


@pytest.mark.parametrize(
    ("number", "epoch", "position"),
    [(0, 0, 0), (359, 0, 359), (360, 1, 0), (719, 1, 359), (720, 2, 0)],
)
def test_epoch_boundaries(number: int, epoch: int, position: int) -> None:
    """The last block of an epoch and the first of the next fall on the right sides."""
    schedule = EpochSchedule(360)
    assert (schedule.epoch_of(number), schedule.block_in_epoch(number)) == (epoch, position)


def test_epoch_start_and_end() -> None:
    """epoch_start/epoch_end bound exactly the blocks epoch_of maps to that epoch."""
    schedule = EpochSchedule(360)
    assert schedule.epoch_start(19_278) == 6_940_080
    assert schedule.epoch_end(19_278) == 6_940_439
    assert schedule.epoch_of(schedule.epoch_start(19_278)) == 19_278
    assert schedule.epoch_of(schedule.epoch_end(19_278)) == 19_278
    assert schedule.epoch_of(schedule.epoch_end(19_278) + 1) == 19_279


async def test_span_of_matches_arithmetic() -> None:
    """The async Schedule interface gives the same span as the arithmetic."""
    schedule = EpochSchedule(10)
    span = await schedule.span_of(27, block_hash="0x" + "00" * 32)
    assert span == EpochSpan(epoch=2, start=20, end=29)
    assert span.length == 10 and span.contains(29) and not span.contains(30)
    assert span.block_in_epoch(27) == 7
    assert span.format_position(27) == "Epoch 2 | Block 7/10"


@pytest.mark.parametrize("length", [0, -1, 2.5, True, "360"])
def test_bad_length_is_config_error(length: Any) -> None:
    """A length that is not a positive integer is refused."""
    with pytest.raises(ConfigError, match="epoch length"):
        EpochSchedule(length)


@pytest.mark.parametrize("number", [-1, 1.5, None, "7"])
def test_bad_block_number_is_value_error(number: Any) -> None:
    """Nonsense block numbers raise ValueError, not a wrong answer."""
    with pytest.raises(ValueError, match="non-negative integer"):
        EpochSchedule().epoch_of(number)


def test_public_api_is_small_and_sorted() -> None:
    """blockfeed.epochs exports a short __all__, sorted as ruff sorts it, whose names all exist."""
    import blockfeed.epochs as module

    def isort_style(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert module.__all__ == sorted(module.__all__, key=isort_style)
    assert all(hasattr(module, name) for name in module.__all__)
    assert {"EpochMonitor", "EpochSchedule", "SubnetEpochSchedule"} <= set(module.__all__)
