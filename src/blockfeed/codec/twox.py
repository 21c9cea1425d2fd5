"""XXH64 and Substrate's ``twox`` storage hashers, in pure Python (no extra dependency).

Substrate storage keys are ``twox128(pallet) ++ twox128(item) ++ hasher(map key)``. Only a few
keys per epoch are ever hashed here, so speed does not matter; correctness is pinned by tests on
published vectors (``twox128(b"System")`` is the well-known ``0x26aa394e...`` prefix).

* ``twox128(x) = XXH64(x, seed=0) ++ XXH64(x, seed=1)``, each as 8 little-endian bytes;
* ``twox64concat(x) = XXH64(x, seed=0)`` as 8 little-endian bytes, then ``x`` itself.
"""

from __future__ import annotations

_MASK = (1 << 64) - 1
_PRIME1 = 0x9E3779B185EBCA87
_PRIME2 = 0xC2B2AE3D27D4EB4F
_PRIME3 = 0x165667B19E3779F9
_PRIME4 = 0x85EBCA77C2B2AE63
_PRIME5 = 0x27D4EB2F165667C5


def _rotate_left(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (64 - bits))) & _MASK


def _accumulate(accumulator: int, lane: int) -> int:
    accumulator = (accumulator + lane * _PRIME2) & _MASK
    return (_rotate_left(accumulator, 31) * _PRIME1) & _MASK


def _fold(hash_value: int, accumulator: int) -> int:
    hash_value ^= _accumulate(0, accumulator)
    return (hash_value * _PRIME1 + _PRIME4) & _MASK


def _u64(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 8], "little")


def _u32(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 4], "little")


def xxh64(data: bytes, seed: int = 0) -> int:
    """The XXH64 digest of ``data`` with ``seed``, as an unsigned 64-bit integer."""
    seed &= _MASK
    length = len(data)
    offset = 0
    if length >= 32:
        lanes = [
            (seed + _PRIME1 + _PRIME2) & _MASK,
            (seed + _PRIME2) & _MASK,
            seed,
            (seed - _PRIME1) & _MASK,
        ]
        while offset + 32 <= length:
            for i in range(4):
                lanes[i] = _accumulate(lanes[i], _u64(data, offset + 8 * i))
            offset += 32
        hash_value = (
            _rotate_left(lanes[0], 1)
            + _rotate_left(lanes[1], 7)
            + _rotate_left(lanes[2], 12)
            + _rotate_left(lanes[3], 18)
        ) & _MASK
        for lane in lanes:
            hash_value = _fold(hash_value, lane)
    else:
        hash_value = (seed + _PRIME5) & _MASK
    hash_value = (hash_value + length) & _MASK

    while offset + 8 <= length:
        hash_value ^= _accumulate(0, _u64(data, offset))
        hash_value = (_rotate_left(hash_value, 27) * _PRIME1 + _PRIME4) & _MASK
        offset += 8
    if offset + 4 <= length:
        hash_value ^= (_u32(data, offset) * _PRIME1) & _MASK
        hash_value = (_rotate_left(hash_value, 23) * _PRIME2 + _PRIME3) & _MASK
        offset += 4
    while offset < length:
        hash_value ^= (data[offset] * _PRIME5) & _MASK
        hash_value = (_rotate_left(hash_value, 11) * _PRIME1) & _MASK
        offset += 1

    hash_value ^= hash_value >> 33
    hash_value = (hash_value * _PRIME2) & _MASK
    hash_value ^= hash_value >> 29
    hash_value = (hash_value * _PRIME3) & _MASK
    hash_value ^= hash_value >> 32
    return hash_value


def twox64(data: bytes) -> bytes:
    """Substrate's ``Twox64`` hasher: XXH64 (seed 0), little-endian (8 bytes)."""
    return xxh64(data, 0).to_bytes(8, "little")


def twox128(data: bytes) -> bytes:
    """Substrate's ``Twox128`` hasher: two XXH64 digests (seeds 0 and 1), little-endian."""
    return xxh64(data, 0).to_bytes(8, "little") + xxh64(data, 1).to_bytes(8, "little")


def twox64concat(data: bytes) -> bytes:
    """Substrate's ``Twox64Concat`` map hasher: XXH64 (seed 0) little-endian, then ``data``."""
    return xxh64(data, 0).to_bytes(8, "little") + data


def storage_prefix(pallet: str, item: str) -> bytes:
    """``twox128(pallet) ++ twox128(item)``: the key prefix of a storage item."""
    return twox128(pallet.encode()) + twox128(item.encode())
