"""The codec: SCALE compact integers, header hashing against a real chain, strict parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blockfeed.codec import (
    block_hash,
    decode_compact,
    encode_compact,
    encode_header,
    header_from_json,
    parse_hash,
)
from blockfeed.errors import MalformedFrame
from blockfeed.types import Header

POLKADOT_GENESIS = {
    "parentHash": "0x" + "00" * 32,
    "number": "0x0",
    "stateRoot": "0x29d0d972cd27cbc511e9589fcb7a4506d5eb6a9e8df205f00472e5ab354a4e17",
    "extrinsicsRoot": "0x03170a2e7597b7b7e3d84c05391d139a62b157e78786d8c082f29dcf4c111314",
    "digest": {"logs": []},
}
POLKADOT_GENESIS_HASH = "0x91b171bb158e2d3848fa23a9f1c25182fb8e20313b2c1eb49219da7a70ce90c3"


def _header(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "parentHash": "0x" + "11" * 32,
        "number": "0x69e70d",
        "stateRoot": "0x" + "22" * 32,
        "extrinsicsRoot": "0x" + "33" * 32,
        "digest": {"logs": ["0x0661757261200000000000000000"]},
    }
    base.update(overrides)
    return base


def test_real_chain_hash_matches() -> None:
    """Hashing Polkadot's genesis header gives the hash the real chain publishes."""
    assert block_hash(header_from_json(POLKADOT_GENESIS)) == POLKADOT_GENESIS_HASH


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, "00"), (1, "04"), (63, "fc"), (64, "0101"), (16383, "fdff"), (16384, "02000100"),
     ((1 << 30) - 1, "feffffff"), (1 << 30, "0300000040"), (6940429, "369ca701")],
)
def test_compact_known_encodings(value: int, encoded: str) -> None:
    """Compact integers encode to the bytes the SCALE spec gives for each mode boundary."""
    assert encode_compact(value).hex() == encoded
    assert decode_compact(bytes.fromhex(encoded)) == (value, len(encoded) // 2)


@given(st.integers(min_value=0, max_value=(1 << 128) - 1))
def test_compact_round_trip(value: int) -> None:
    """Every unsigned integer survives encode/decode."""
    raw = encode_compact(value)
    assert decode_compact(raw) == (value, len(raw))


def test_truncated_compact_is_malformed() -> None:
    """A truncated compact integer is a MalformedFrame, not an IndexError."""
    with pytest.raises(MalformedFrame):
        decode_compact(b"\x03\x00")


def test_header_round_trips_through_json() -> None:
    """to_json() produces exactly what header_from_json() accepts, and the hash is stable."""
    header = header_from_json(_header())
    assert header.number == 6940429
    assert header_from_json(header.to_json()) == header
    assert encode_header(header)[:32] == b"\x11" * 32


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [],
        "0x00",
        _header(number=True),
        _header(number=1.5),
        _header(number="12"),
        _header(number="0xzz"),
        _header(number="0x1" + "0" * 20),
        _header(number=-1),
        _header(parentHash="0x1234"),
        _header(parentHash=17),
        _header(stateRoot="0x" + "zz" * 32),
        _header(digest=[]),
        _header(digest={"logs": "0x00"}),
        _header(digest={"logs": [5]}),
        _header(digest={"logs": ["0x00"] * 65}),
        {k: v for k, v in _header().items() if k != "extrinsicsRoot"},
    ],
)
def test_bad_headers_are_rejected(bad: object) -> None:
    """Wrong types, missing fields, bad hex and absurd sizes raise MalformedFrame."""
    with pytest.raises(MalformedFrame):
        header_from_json(bad)


def test_parse_hash_normalises_and_validates() -> None:
    """Hashes are lower-cased; anything but 32 bytes of hex is rejected."""
    assert parse_hash("0x" + "AB" * 32) == "0x" + "ab" * 32
    with pytest.raises(MalformedFrame):
        parse_hash("0x" + "ab" * 31)


def test_header_is_hashable_value() -> None:
    """Headers compare by value, so the merge can compare candidates from two sources."""
    a = Header(b"\x00" * 32, 1, b"\x01" * 32, b"\x02" * 32)
    b = Header(b"\x00" * 32, 1, b"\x01" * 32, b"\x02" * 32)
    assert a == b and block_hash(a) == block_hash(b)
