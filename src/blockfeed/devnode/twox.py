"""xxHash64 and Substrate's ``twox`` storage hashers, in pure Python.

Substrate storage keys are ``twox128(pallet) ++ twox128(item) ++ hasher(key)``; devnode needs them
to answer ``state_getStorage`` for subtensor's ``Tempo`` map without any extra dependency.
``twox128(x)`` is XXH64(x, seed=0) ++ XXH64(x, seed=1), each little-endian; ``twox64concat(x)`` is
XXH64(x, seed=0) little-endian followed by ``x`` itself.
"""

from __future__ import annotations

_MASK64 = (1 << 64) - 1
_P1 = 11400714785074694791
_P2 = 14029467366897019727
_P3 = 1609587929392839161
_P4 = 9650029242287828579
_P5 = 2870177450012600261


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (64 - bits))) & _MASK64


def _round(acc: int, lane: int) -> int:
    acc = (acc + lane * _P2) & _MASK64
    return (_rotl(acc, 31) * _P1) & _MASK64


def _merge(acc: int, value: int) -> int:
    acc ^= _round(0, value)
    return (acc * _P1 + _P4) & _MASK64


def xxh64(data: bytes, seed: int = 0) -> int:
    """The XXH64 digest of ``data`` as an unsigned 64-bit integer (reference algorithm)."""
    length = len(data)
    offset = 0
    if length >= 32:
        v1 = (seed + _P1 + _P2) & _MASK64
        v2 = (seed + _P2) & _MASK64
        v3 = seed & _MASK64
        v4 = (seed - _P1) & _MASK64
        limit = length - 32
        while offset <= limit:
            v1 = _round(v1, int.from_bytes(data[offset : offset + 8], "little"))
            v2 = _round(v2, int.from_bytes(data[offset + 8 : offset + 16], "little"))
            v3 = _round(v3, int.from_bytes(data[offset + 16 : offset + 24], "little"))
            v4 = _round(v4, int.from_bytes(data[offset + 24 : offset + 32], "little"))
            offset += 32
        acc = (_rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)) & _MASK64
        for lane in (v1, v2, v3, v4):
            acc = _merge(acc, lane)
    else:
        acc = (seed + _P5) & _MASK64
    acc = (acc + length) & _MASK64
    while offset + 8 <= length:
        acc ^= _round(0, int.from_bytes(data[offset : offset + 8], "little"))
        acc = (_rotl(acc, 27) * _P1 + _P4) & _MASK64
        offset += 8
    if offset + 4 <= length:
        acc ^= (int.from_bytes(data[offset : offset + 4], "little") * _P1) & _MASK64
        acc = (_rotl(acc, 23) * _P2 + _P3) & _MASK64
        offset += 4
    while offset < length:
        acc ^= (data[offset] * _P5) & _MASK64
        acc = (_rotl(acc, 11) * _P1) & _MASK64
        offset += 1
    acc ^= acc >> 33
    acc = (acc * _P2) & _MASK64
    acc ^= acc >> 29
    acc = (acc * _P3) & _MASK64
    acc ^= acc >> 32
    return acc


def twox64(data: bytes) -> bytes:
    """Substrate ``Twox64``: XXH64 seed 0, little-endian (8 bytes)."""
    return xxh64(data, 0).to_bytes(8, "little")


def twox128(data: bytes) -> bytes:
    """Substrate ``Twox128``: XXH64 with seeds 0 and 1, each little-endian (16 bytes)."""
    return xxh64(data, 0).to_bytes(8, "little") + xxh64(data, 1).to_bytes(8, "little")


def twox64concat(data: bytes) -> bytes:
    """Substrate ``Twox64Concat``: ``twox64(data) ++ data`` (so the key stays readable)."""
    return twox64(data) + data


def storage_prefix(pallet: str, item: str) -> bytes:
    """The 32-byte prefix of a storage item: ``twox128(pallet) ++ twox128(item)``."""
    return twox128(pallet.encode()) + twox128(item.encode())
