"""SCALE encoding of headers, block hashing, and strict parsing of header JSON from nodes.

No runtime metadata is needed: a header's layout is fixed (parent hash, compact number, state
root, extrinsics root, digest as a vector of already-encoded items), so the hash a real node would
compute is ``blake2b-256(SCALE(header))``.
"""

from blockfeed.codec.header import block_hash, encode_header, header_from_json, parse_hash
from blockfeed.codec.scale import decode_compact, encode_compact

__all__ = [
    "block_hash",
    "decode_compact",
    "encode_compact",
    "encode_header",
    "header_from_json",
    "parse_hash",
]
