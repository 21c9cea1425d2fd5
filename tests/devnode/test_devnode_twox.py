"""xxHash64 and Substrate's twox hashers against published vectors."""

from __future__ import annotations

import pytest

from blockfeed.codec.twox import storage_prefix, twox64, twox64concat, twox128, xxh64


@pytest.mark.parametrize(
    ("data", "seed", "expected"),
    [
        (b"", 0, 0xEF46DB3751D8E999),
        (b"a", 0, 0xD24EC4F1A98C6E5B),
        (b"Nobody inspects the spammish repetition", 0, 0xFBCEA83C8A378BF1),
    ],
)
def test_xxh64_reference_vectors(data: bytes, seed: int, expected: int) -> None:
    """XXH64 matches the reference digests, including the >= 32-byte stripe path."""
    assert xxh64(data, seed) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
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
def test_twox128_matches_known_substrate_prefixes(name: str, expected: str) -> None:
    """twox128 of pallet/item names equals the storage prefixes every Substrate tool uses."""
    assert twox128(name.encode()).hex() == expected


def test_storage_prefix_and_twox64concat_layout() -> None:
    """A prefix is two twox128 halves; twox64concat keeps the key readable after its hash."""
    assert storage_prefix("System", "Account").hex() == (
        "26aa394eea5630e07c48ae0c9558cef7b99d880ec681799c0cf30e8886371da9"
    )
    assert twox64concat(b"\x01\x00") == twox64(b"\x01\x00") + b"\x01\x00"
    assert twox64(b"") == (0xEF46DB3751D8E999).to_bytes(8, "little")
