"""Pure-Python XXH64 and Substrate's twox hashers (shared by epochs and devnode) against
published vectors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blockfeed.codec.twox import storage_prefix, twox64, twox64concat, twox128, xxh64


@pytest.mark.parametrize(
    ("data", "seed", "digest"),
    [
        (b"", 0, 0xEF46DB3751D8E999),
        (b"a", 0, 0xD24EC4F1A98C6E5B),
        (b"abc", 0, 0x44BC2CF5AD770999),
        (b"Nobody inspects the spammish repetition", 0, 0xFBCEA83C8A378BF1),
    ],
)
def test_xxh64_reference_vectors(data: bytes, seed: int, digest: int) -> None:
    """XXH64 gives the reference digests (short input, tail bytes, and the 32-byte lane path)."""
    assert xxh64(data, seed) == digest


@pytest.mark.parametrize(
    ("name", "hashed"),
    [
        ("System", "26aa394eea5630e07c48ae0c9558cef7"),
        ("SubtensorModule", "658faa385070e074c85bf6b568cf0555"),
        ("Account", "b99d880ec681799c0cf30e8886371da9"),
        ("Number", "02a5c1b19ab7a04f536c519aca4983ac"),
        ("Balances", "c2261276cc9d1f8598ea4b6a74b15c2f"),
        ("Timestamp", "f0c365c3cf59d671eb72da0e7a4113c4"),
        ("Now", "9f1f0515f462cdcf84e0f1d6045dfcbb"),
    ],
)
def test_twox128_known_prefixes(name: str, hashed: str) -> None:
    """twox128 of pallet/item names equals the storage prefixes real chains use."""
    assert twox128(name.encode()).hex() == hashed


def test_storage_prefix_is_system_account() -> None:
    """storage_prefix("System", "Account") is the well-known System.Account map prefix."""
    assert storage_prefix("System", "Account").hex() == (
        "26aa394eea5630e07c48ae0c9558cef7b99d880ec681799c0cf30e8886371da9"
    )


def test_twox64_and_twox64concat_layout() -> None:
    """twox64 is XXH64 seed 0 little-endian; twox64concat keeps the key readable after it."""
    assert twox64(b"") == (0xEF46DB3751D8E999).to_bytes(8, "little")
    key = (1).to_bytes(2, "little")
    out = twox64concat(key)
    assert out == twox64(key) + key
    assert out[8:] == key
    assert out[:8] == xxh64(key, 0).to_bytes(8, "little")


@given(st.binary(max_size=200), st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_xxh64_stays_64_bit(data: bytes, seed: int) -> None:
    """Every digest is an unsigned 64-bit integer and the seed changes it deterministically."""
    digest = xxh64(data, seed)
    assert 0 <= digest < 1 << 64
    assert xxh64(data, seed) == digest
