"""Typed Substrate RPC methods on any :class:`RpcCaller` (``HttpRpc`` or ``WsRpc``).

Each function validates what the node returned: hashes are 32-byte ``0x`` hex, headers go through
``codec.header_from_json``, and a header fetched by hash must hash to that hash (an endpoint that
answers with another block is lying: :class:`VerificationError`). Anything else malformed raises
:class:`MalformedFrame`.

Unknown blocks: ``chain_getHeader`` answers ``null`` for a hash the node does not know; that
raises :class:`UnknownBlock` (an :class:`RpcServerError` with code :data:`UNKNOWN_BLOCK_CODE`), so
callers that handle node errors handle it too. ``get_block_hashes`` instead returns ``None`` in
place for numbers beyond the node's chain, because asking past the head is normal during backfill.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from blockfeed.codec import block_hash as compute_block_hash
from blockfeed.codec import header_from_json, parse_hash
from blockfeed.errors import MalformedFrame, RpcServerError, VerificationError
from blockfeed.rpc.jsonrpc import Call, Params
from blockfeed.types import Header

UNKNOWN_BLOCK_CODE = -32_404
"""Local code (no node sends it) for "the node returned null for this block hash"."""
MAX_NUMBERS_PER_REQUEST = 10_000
"""Guard against accidental huge requests; backfill chunks well below this."""


class RpcCaller(Protocol):
    """What the methods need from a transport; ``HttpRpc`` and ``WsRpc`` both fit."""

    async def call(
        self, method: str, params: Params = None, *, timeout_s: float | None = ...
    ) -> Any: ...

    async def batch(
        self, calls: Sequence[Call], *, timeout_s: float | None = ...
    ) -> list[Any | RpcServerError]: ...


class UnknownBlock(RpcServerError):
    """The node does not know the requested block (it answered ``null``)."""

    def __init__(self, block_hash: str) -> None:
        super().__init__(UNKNOWN_BLOCK_CODE, f"unknown block {block_hash}")
        self.block_hash = block_hash


@dataclass(frozen=True, slots=True)
class Health:
    """``system_health``: a syncing node's finalized head can lag far behind."""

    peers: int
    is_syncing: bool
    should_have_peers: bool


def _hex_to_bytes(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise MalformedFrame(f"{what} must be a 0x-prefixed hex string")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise MalformedFrame(f"{what} is not valid hex") from None


def _check_hex_arg(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(f"{what} must be a 0x-prefixed hex string")
    try:
        bytes.fromhex(value[2:])
    except ValueError:
        raise ValueError(f"{what} is not valid hex") from None
    return value


def _at(at: str | None) -> list[str]:
    return [] if at is None else [_check_hex_arg(at, "at")]


def _checked_header(raw: Any, requested_hash: str | None) -> Header:
    if raw is None:
        if requested_hash is None:
            raise MalformedFrame("node returned no best header")
        raise UnknownBlock(requested_hash)
    header = header_from_json(raw)
    if requested_hash is not None:
        actual = compute_block_hash(header)
        if actual != requested_hash.lower():
            raise VerificationError(
                f"asked for block {requested_hash}, got block #{header.number} with hash {actual}"
            )
    return header


async def get_finalized_head(rpc: RpcCaller) -> str:
    """Hash of the newest finalized block."""
    return parse_hash(await rpc.call("chain_getFinalizedHead"), "finalized head")


async def get_header(rpc: RpcCaller, block_hash: str | None = None) -> Header:
    """The header with ``block_hash`` (verified), or the best (not finalized!) header if None."""
    params: list[Any] = [] if block_hash is None else [_check_hex_arg(block_hash, "block_hash")]
    return _checked_header(await rpc.call("chain_getHeader", params), block_hash)


async def get_block_hashes(rpc: RpcCaller, numbers: Sequence[int]) -> list[str | None]:
    """Canonical hashes of ``numbers`` in one request; ``None`` where the node has no block."""
    wanted = list(numbers)
    if not wanted:
        return []
    if len(wanted) > MAX_NUMBERS_PER_REQUEST:
        raise ValueError(f"at most {MAX_NUMBERS_PER_REQUEST} numbers per request")
    for n in wanted:
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"block numbers must be non-negative integers, got {n!r}")
    result = await rpc.call("chain_getBlockHash", [wanted])
    if not isinstance(result, list) or len(result) != len(wanted):
        raise MalformedFrame("chain_getBlockHash must return one entry per requested number")
    return [None if h is None else parse_hash(h, "block hash") for h in result]


async def get_headers(rpc: RpcCaller, hashes: Sequence[str]) -> list[Header]:
    """Headers for ``hashes`` (in order, each verified) in one JSON-RPC batch.

    The first per-item node error is raised; a ``null`` item raises :class:`UnknownBlock`.
    """
    wanted = [_check_hex_arg(h, "block hash") for h in hashes]
    if not wanted:
        return []
    results = await rpc.batch([("chain_getHeader", [h]) for h in wanted])
    headers = []
    for requested, raw in zip(wanted, results, strict=True):
        if isinstance(raw, RpcServerError):
            raise raw
        headers.append(_checked_header(raw, requested))
    return headers


async def get_genesis_hash(rpc: RpcCaller) -> str:
    """Hash of block 0: identifies the chain (the store refuses another chain's checkpoint)."""
    result = await rpc.call("chain_getBlockHash", [0])
    if result is None:
        raise MalformedFrame("node returned no genesis hash")
    return parse_hash(result, "genesis hash")


async def state_call(rpc: RpcCaller, name: str, data_hex: str, at: str | None = None) -> bytes:
    """Call runtime API ``name`` with SCALE-encoded ``data_hex``; returns the raw SCALE output."""
    params = [name, _check_hex_arg(data_hex, "data_hex"), *_at(at)]
    return _hex_to_bytes(await rpc.call("state_call", params), "state_call result")


async def get_storage(rpc: RpcCaller, key_hex: str, at: str | None = None) -> bytes | None:
    """Raw storage value at ``key_hex`` (``None`` when the key is empty)."""
    params = [_check_hex_arg(key_hex, "key_hex"), *_at(at)]
    result = await rpc.call("state_getStorage", params)
    return None if result is None else _hex_to_bytes(result, "storage value")


async def system_health(rpc: RpcCaller) -> Health:
    """Peers and sync state of the node."""
    result = await rpc.call("system_health")
    if not isinstance(result, dict):
        raise MalformedFrame("system_health must return an object")
    peers = result.get("peers")
    syncing = result.get("isSyncing")
    should = result.get("shouldHavePeers")
    if not isinstance(peers, int) or isinstance(peers, bool) or peers < 0:
        raise MalformedFrame("system_health.peers must be a non-negative integer")
    if not isinstance(syncing, bool) or not isinstance(should, bool):
        raise MalformedFrame("system_health flags must be booleans")
    return Health(peers=peers, is_syncing=syncing, should_have_peers=should)
