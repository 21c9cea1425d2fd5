"""The extrinsics root: known vectors from public chains, chopsticks' mock, and rejection."""

from __future__ import annotations

import hashlib
import logging

import pytest
from contents_kit import raw_blocks

from blockfeed.codec.scale import encode_compact
from blockfeed.codec.trie import (
    EMPTY_TRIE_ROOT,
    _header,
    chopsticks_mock_root,
    ordered_trie_root,
    trie_root,
)
from blockfeed.contents import body_root_kind
from blockfeed.contents import verify as verify_module
from blockfeed.errors import VerificationError

# A substrate dev node block (#0xbac2), as quoted in web3.js's polkadot plugin tests.
DEV_NODE_BODY = ["0x280401000b10f28e778c01"]
DEV_NODE_ROOT = "c0fa389ae8109dffe61ddd306afddd9035c34aba3a3c70c7f0a1a29c1c86b329"
# Polkadot block #58730 (0xe56a), as quoted in a public write-up of chain_getBlock answers:
# three extrinsics, so the root is a branch with three inline leaves.
POLKADOT_58730_BODY = ["0x280403000ba04ca2667201", "0x1c040a009e950300", "0x1004140000"]
POLKADOT_58730_ROOT = "14c48c657972257ca625078998f00eb9a36df08f5a1ac0fb657da8d49d860105"


def _b(hexes: list[str]) -> list[bytes]:
    return [bytes.fromhex(h[2:]) for h in hexes]


def _blake(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def test_empty_body_has_substrates_empty_trie_root() -> None:
    """An empty body hashes to 0x0317..1314, the root every empty Substrate block carries."""
    assert EMPTY_TRIE_ROOT.hex() == (
        "03170a2e7597b7b7e3d84c05391d139a62b157e78786d8c082f29dcf4c111314"
    )
    assert ordered_trie_root([]) == EMPTY_TRIE_ROOT


@pytest.mark.parametrize(
    ("body", "root"),
    [(DEV_NODE_BODY, DEV_NODE_ROOT), (POLKADOT_58730_BODY, POLKADOT_58730_ROOT)],
    ids=["substrate-dev-node", "polkadot-58730"],
)
def test_real_blocks_match_their_published_roots(body: list[str], root: str) -> None:
    """Bodies of real public blocks hash to the extrinsics_root their headers carry."""
    assert ordered_trie_root(_b(body)).hex() == root
    assert body_root_kind(_b(body), bytes.fromhex(root)) == "trie"


def test_long_values_are_inlined_in_v0_and_hashed_in_v1() -> None:
    """A 40-byte value: V0 leaf = header, key, compact(len) + value; V1 = hashed-leaf header,
    key, blake2(value). Both written out by hand from the node codec."""
    value = bytes(range(40))
    key = encode_compact(0)  # 0x00: two nibbles 0, 0
    v0 = _blake(bytes([0x40 | 2, 0x00]) + encode_compact(40) + value)
    v1 = _blake(bytes([0x20 | 2, 0x00]) + _blake(value))
    assert trie_root([(key, value)], state_version=0) == v0
    assert trie_root([(key, value)], state_version=1) == v1
    short = bytes(32)  # below the 33-byte threshold: the same in both versions
    assert trie_root([(key, short)], state_version=0) == trie_root([(key, short)], state_version=1)


def test_children_of_32_bytes_or_more_are_referenced_by_hash() -> None:
    """Two long leaves under one branch: each child is compact(32) + its hash."""
    a, b = b"\x01" * 40, b"\x02" * 40
    leaf = bytes([0x40 | 0]) + encode_compact(40)  # keys end at the child: empty partial key
    want = _blake(
        bytes([0x80 | 1, 0x01])  # branch, partial key "1" (the shared first nibble)
        + (0b11).to_bytes(2, "little")  # children at nibbles 0 and 1
        + encode_compact(32) + _blake(leaf + a)
        + encode_compact(32) + _blake(leaf + b)
    )
    assert trie_root([(b"\x10", a), (b"\x11", b)]) == want


def test_long_partial_keys_use_extra_size_bytes() -> None:
    """Nibble counts that overflow the header bits continue in bytes (255 while more remain)."""
    assert _header((0x40, 2), 62) == bytes([0x40 | 62])
    assert _header((0x40, 2), 63) == bytes([0x40 | 63, 0])
    assert _header((0x40, 2), 63 + 300) == bytes([0x40 | 63, 255, 45])
    key = b"\xab" * 40  # 80 nibbles in one leaf
    root = trie_root([(key, b"v")])
    node = bytes([0x40 | 63, 80 - 63]) + key + encode_compact(1) + b"v"
    assert root == _blake(node)


def test_fixture_uses_the_chopsticks_mock_root_and_it_is_logged_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All 40 recorded bodies match blake2-256(concat); the convention is logged once."""
    monkeypatch.setattr(verify_module, "_logged_chopsticks", False)
    caplog.set_level(logging.WARNING, logger="blockfeed.contents")
    for raw in raw_blocks()["blocks"]:
        body = _b(raw["extrinsics"])
        root = bytes.fromhex(raw["header"]["extrinsicsRoot"][2:])
        assert chopsticks_mock_root(body) == root
        assert body_root_kind(body, root) == "chopsticks"
    assert sum("chopsticks" in r.message for r in caplog.records) == 1


@pytest.mark.parametrize("change", ["alter", "drop", "add", "swap"])
def test_a_changed_body_is_rejected(change: str) -> None:
    """Altering, dropping, adding or reordering extrinsics breaks both root conventions."""
    raw = next(b for b in raw_blocks()["blocks"] if len(b["extrinsics"]) > 2)
    body = _b(raw["extrinsics"])
    root = bytes.fromhex(raw["header"]["extrinsicsRoot"][2:])
    if change == "alter":
        body[1] = body[1][:-1] + bytes([body[1][-1] ^ 1])
    elif change == "drop":
        body.pop()
    elif change == "add":
        body.append(body[0])
    else:
        body[1], body[2] = body[2], body[1]
    with pytest.raises(VerificationError, match="extrinsics_root"):
        body_root_kind(body, root)
    with pytest.raises(VerificationError):
        body_root_kind(_b(POLKADOT_58730_BODY)[:2], bytes.fromhex(POLKADOT_58730_ROOT))
