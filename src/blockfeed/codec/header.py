"""Header JSON <-> :class:`Header`, SCALE encoding and the block hash.

``header_from_json`` is the single gate every header from a node passes through: anything that
is not exactly a header (wrong types, missing fields, bad hex, absurd sizes) raises
:class:`MalformedFrame`, which the feed counts and drops.
"""

from __future__ import annotations

import hashlib
from typing import Any

from blockfeed.codec.scale import encode_compact
from blockfeed.errors import MalformedFrame
from blockfeed.types import Header

MAX_BLOCK_NUMBER = (1 << 32) - 1
"""Substrate chains (and subtensor) use ``u32`` block numbers."""
MAX_DIGEST_LOGS = 64
MAX_DIGEST_LOG_BYTES = 64 * 1024


def encode_header(header: Header) -> bytes:
    """SCALE-encode a header exactly as the runtime does."""
    parts = [
        header.parent_hash,
        encode_compact(header.number),
        header.state_root,
        header.extrinsics_root,
        encode_compact(len(header.digest_logs)),
        *header.digest_logs,
    ]
    return b"".join(parts)


def block_hash(header: Header) -> str:
    """``0x``-hex of blake2b-256 of the SCALE-encoded header: the block's hash."""
    return "0x" + hashlib.blake2b(encode_header(header), digest_size=32).hexdigest()


def _hex_bytes(
    value: Any, field: str, *, size: int | None = None, max_size: int | None = None
) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise MalformedFrame(f"header field {field!r} must be a 0x-prefixed hex string")
    body = value[2:]
    if max_size is not None and len(body) > 2 * max_size:
        raise MalformedFrame(f"header field {field!r} is too large")
    try:
        raw = bytes.fromhex(body)
    except ValueError as exc:
        raise MalformedFrame(f"header field {field!r} is not valid hex") from exc
    if size is not None and len(raw) != size:
        raise MalformedFrame(f"header field {field!r} must be {size} bytes, got {len(raw)}")
    return raw


def parse_hash(value: Any, field: str = "hash") -> str:
    """Validate a 32-byte ``0x`` hash from a node and return it lower-cased."""
    return "0x" + _hex_bytes(value, field, size=32).hex()


def _number(value: Any) -> int:
    if isinstance(value, bool):
        raise MalformedFrame("header field 'number' must be a hex string")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.startswith("0x") and 2 < len(value) <= 18:
        try:
            number = int(value[2:], 16)
        except ValueError as exc:
            raise MalformedFrame("header field 'number' is not valid hex") from exc
    else:
        raise MalformedFrame("header field 'number' must be a 0x-hex string")
    if not 0 <= number <= MAX_BLOCK_NUMBER:
        raise MalformedFrame(f"header number {number} is out of range")
    return number


def header_from_json(obj: Any) -> Header:
    """Parse and validate a header object from a node (``chain_getHeader`` / notifications)."""
    if not isinstance(obj, dict):
        raise MalformedFrame("header must be a JSON object")
    try:
        parent = obj["parentHash"]
        number = obj["number"]
        state_root = obj["stateRoot"]
        extrinsics_root = obj["extrinsicsRoot"]
        digest = obj["digest"]
    except KeyError as exc:
        raise MalformedFrame(f"header is missing field {exc.args[0]!r}") from None
    if not isinstance(digest, dict) or not isinstance(digest.get("logs"), list):
        raise MalformedFrame("header field 'digest.logs' must be a list")
    logs = digest["logs"]
    if len(logs) > MAX_DIGEST_LOGS:
        raise MalformedFrame("header has too many digest logs")
    return Header(
        parent_hash=_hex_bytes(parent, "parentHash", size=32),
        number=_number(number),
        state_root=_hex_bytes(state_root, "stateRoot", size=32),
        extrinsics_root=_hex_bytes(extrinsics_root, "extrinsicsRoot", size=32),
        digest_logs=tuple(
            _hex_bytes(log, "digest.logs[]", max_size=MAX_DIGEST_LOG_BYTES) for log in logs
        ),
    )
