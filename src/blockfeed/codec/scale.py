"""The few SCALE primitives a header needs: compact integers."""

from __future__ import annotations

from blockfeed.errors import MalformedFrame


def encode_compact(value: int) -> bytes:
    """SCALE compact encoding of a non-negative integer (1, 2, 4 or 5+ bytes)."""
    if value < 0:
        raise ValueError("compact integers are unsigned")
    if value < 1 << 6:
        return bytes([value << 2])
    if value < 1 << 14:
        return ((value << 2) | 0b01).to_bytes(2, "little")
    if value < 1 << 30:
        return ((value << 2) | 0b10).to_bytes(4, "little")
    length = (value.bit_length() + 7) // 8
    if length > 67:
        raise ValueError("integer too large for SCALE compact")
    return bytes([((length - 4) << 2) | 0b11]) + value.to_bytes(length, "little")


def decode_compact(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Decode a compact integer at ``offset``; returns ``(value, next_offset)``."""
    try:
        first = data[offset]
        mode = first & 0b11
        if mode == 0b00:
            return first >> 2, offset + 1
        if mode == 0b01:
            return int.from_bytes(data[offset : offset + 2], "little") >> 2, offset + 2
        if mode == 0b10:
            return int.from_bytes(data[offset : offset + 4], "little") >> 2, offset + 4
        length = (first >> 2) + 4
        raw = data[offset + 1 : offset + 1 + length]
        if len(raw) != length:
            raise IndexError
        return int.from_bytes(raw, "little"), offset + 1 + length
    except IndexError as exc:
        raise MalformedFrame("truncated SCALE compact integer") from exc
