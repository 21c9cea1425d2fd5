"""The extrinsics root: Substrate's ordered trie root of a block body, written from the spec.

A header's ``extrinsics_root`` is the root of a base-16 Patricia-Merkle trie (Substrate's
"no extension" layout, blake2b-256) whose keys are ``SCALE-compact(i)`` and whose values are
the i-th encoded extrinsic (as ``chain_getBlock`` returns it, length prefix included). Checking
it binds the body to a verified header, so a node cannot alter, drop, add or reorder extrinsics.

Node encoding (``sp-trie``'s ``NodeCodec``), all that is needed to build a root:

- header byte(s): 2-bit prefix ``01`` leaf, ``10`` branch without value, ``11`` branch with
  value; with state version 1 a value of 33 bytes or more is stored as its hash and the prefix
  becomes ``001`` (leaf) or ``0001`` (branch with value). The remaining bits hold the partial
  key's nibble count; when it does not fit, all of them are 1 and the rest follows in bytes
  (255 while more remains, then the remainder).
- partial key nibbles, packed two per byte, an odd count padded in front (``0x0N``);
- branch: a little-endian u16 bitmap of present children, then the value (if any), then each
  child as a compact-length-prefixed reference (its encoding when shorter than 32 bytes, else
  its hash);
- leaf: the value, compact-length-prefixed, or its 32-byte hash.

The root is the hash of the root node's encoding (the empty trie: ``blake2b-256(0x00)``).
Chopsticks, a common dev tool, writes ``blake2b-256(concat(extrinsics))`` instead: see
:func:`chopsticks_mock_root`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from blockfeed.codec.scale import encode_compact

HASHED_VALUE_MIN_BYTES = 33
"""State version 1 stores values this long or longer as their hash (sp-trie's threshold)."""

_LEAF = (0b01 << 6, 2)
_BRANCH = (0b10 << 6, 2)
_BRANCH_WITH_VALUE = (0b11 << 6, 2)
_LEAF_HASHED = (0b001 << 5, 3)
_BRANCH_HASHED = (0b0001 << 4, 4)
_NIBBLE_COUNT_MAX = 65535


def blake2_256(data: bytes) -> bytes:
    """The hash every Substrate trie (and block hash) uses."""
    return hashlib.blake2b(data, digest_size=32).digest()


EMPTY_TRIE_ROOT = blake2_256(b"\x00")


def _header(kind: tuple[int, int], nibble_count: int) -> bytes:
    prefix, prefix_bits = kind
    size = min(nibble_count, _NIBBLE_COUNT_MAX)
    max_value = 255 >> prefix_bits
    if size < max_value:
        return bytes([prefix | size])
    out = bytearray([prefix | max_value])
    remaining = size - max_value
    while remaining >= 255:
        out.append(255)
        remaining -= 255
    out.append(remaining)
    return bytes(out)


def _pack_nibbles(nibbles: Sequence[int]) -> bytes:
    out = bytearray()
    start = 0
    if len(nibbles) % 2:
        out.append(nibbles[0])
        start = 1
    for i in range(start, len(nibbles), 2):
        out.append((nibbles[i] << 4) | nibbles[i + 1])
    return bytes(out)


def _nibbles(key: bytes) -> tuple[int, ...]:
    return tuple(n for byte in key for n in (byte >> 4, byte & 0x0F))


def _value_part(value: bytes, hashed: bool) -> bytes:
    return blake2_256(value) if hashed else encode_compact(len(value)) + value


def _encode(items: list[tuple[tuple[int, ...], bytes]], depth: int, version: int) -> bytes:
    """Encoding of the node holding ``items`` (sorted by key, sharing key[:depth])."""
    if len(items) == 1:
        leaf_value = items[0][1]
        hashed = version >= 1 and len(leaf_value) >= HASHED_VALUE_MIN_BYTES
        partial = items[0][0][depth:]
        kind = _LEAF_HASHED if hashed else _LEAF
        return (_header(kind, len(partial)) + _pack_nibbles(partial)
                + _value_part(leaf_value, hashed))
    first, last = items[0][0], items[-1][0]
    common = 0
    # Sorted keys: the prefix shared by the first and the last is shared by all.
    while (
        depth + common < len(first)
        and depth + common < len(last)
        and first[depth + common] == last[depth + common]
    ):
        common += 1
    split = depth + common
    value: bytes | None = None
    rest = items
    if len(first) == split:
        value, rest = items[0][1], items[1:]
    children: list[bytes | None] = [None] * 16
    bitmap = 0
    i = 0
    while i < len(rest):
        nibble = rest[i][0][split]
        j = i
        while j < len(rest) and rest[j][0][split] == nibble:
            j += 1
        child = _encode(rest[i:j], split + 1, version)
        children[nibble] = child if len(child) < 32 else blake2_256(child)
        bitmap |= 1 << nibble
        i = j
    hashed = value is not None and version >= 1 and len(value) >= HASHED_VALUE_MIN_BYTES
    if value is None:
        kind = _BRANCH
    else:
        kind = _BRANCH_HASHED if hashed else _BRANCH_WITH_VALUE
    partial = first[depth:split]
    out = bytearray(_header(kind, len(partial)))
    out += _pack_nibbles(partial)
    out += bitmap.to_bytes(2, "little")
    if value is not None:
        out += _value_part(value, hashed)
    for ref in children:
        if ref is not None:
            out += encode_compact(len(ref)) + ref
    return bytes(out)


def trie_root(pairs: Sequence[tuple[bytes, bytes]], *, state_version: int = 0) -> bytes:
    """Root of the trie holding ``pairs`` (key, value); later duplicates of a key win."""
    if state_version not in (0, 1):
        raise ValueError(f"unknown trie state version {state_version}")
    merged = {bytes(k): bytes(v) for k, v in pairs}
    if not merged:
        return EMPTY_TRIE_ROOT
    items = sorted((_nibbles(k), v) for k, v in merged.items())
    return blake2_256(_encode(items, 0, state_version))


def ordered_trie_root(values: Sequence[bytes], *, state_version: int = 0) -> bytes:
    """``extrinsics_root`` of a body: keys are ``compact(index)``, values the encoded items."""
    return trie_root(
        [(encode_compact(i), v) for i, v in enumerate(values)], state_version=state_version
    )


def chopsticks_mock_root(values: Sequence[bytes]) -> bytes:
    """The root chopsticks writes into headers: ``blake2b-256`` of the concatenated body.

    Not a trie root, but it still binds the body to the header (any change alters it).
    """
    return blake2_256(b"".join(values))
