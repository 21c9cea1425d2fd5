"""Fetch, verify and decode the contents of verified blocks, many blocks per JSON-RPC batch.

For each block (already verified by hash and parent link), one batch asks, per block:

- ``state_getRuntimeVersion`` at the **parent**: the runtime that executed the block (a block
  that upgrades the runtime still runs the old code; its child is the first of the new one);
- ``state_getStorage(Timestamp.Now)`` at the block (u64 ms, no metadata needed);
- ``state_getStorage(System.Events)`` at the block (level ``events`` and up);
- ``chain_getBlock`` at the block (level ``full``): its extrinsics, checked against the verified
  header's ``extrinsics_root`` (:mod:`blockfeed.contents.verify`).

Metadata for a spec version not seen before comes from ``state_getMetadata`` at that parent
and is cached (:class:`MetadataCache`). A spec version that differs from the previous block's is
a runtime upgrade: one ``runtime_upgraded`` :class:`FeedEvent` per upgrade, reported once the
batch holding it has been verified.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from blockfeed.codec.twox import storage_prefix
from blockfeed.contents.decode import RuntimeDecoder
from blockfeed.contents.levels import ContentsLevel
from blockfeed.contents.metadata import MetadataCache
from blockfeed.contents.verify import body_root_kind, check_events_against_body
from blockfeed.errors import MalformedFrame, RpcServerError, VerificationError
from blockfeed.rpc.methods import RpcCaller
from blockfeed.types import Block, FeedEvent, RuntimeUpgraded

logger = logging.getLogger("blockfeed.contents")

EVENTS_KEY = "0x" + storage_prefix("System", "Events").hex()
TIMESTAMP_KEY = "0x" + storage_prefix("Timestamp", "Now").hex()
DEFAULT_TIMEOUT_S = 10.0
MAX_EXTRINSICS = 100_000
"""A body longer than this is refused before any hashing (a node cannot make us spin)."""


def _hex(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise MalformedFrame(f"{what} must be a 0x-prefixed hex string")
    try:
        return bytes.fromhex(value[2:])
    except ValueError as exc:
        raise MalformedFrame(f"{what} is not valid hex") from exc


def _ok(result: Any, what: str) -> Any:
    if isinstance(result, RpcServerError):
        raise result
    return result


def _spec_of(version: Any, number: int) -> tuple[int, int]:
    if not isinstance(version, dict):
        raise MalformedFrame(f"state_getRuntimeVersion for #{number} is not an object")
    spec, tx = version.get("specVersion"), version.get("transactionVersion", 1)
    if not isinstance(spec, int) or isinstance(spec, bool) or spec < 0:
        raise MalformedFrame(f"state_getRuntimeVersion for #{number} has no valid specVersion")
    if not isinstance(tx, int) or isinstance(tx, bool) or tx < 0:
        tx = 1
    return spec, tx


class ContentsFetcher:
    """Turns verified header-only blocks into blocks with contents; stateless between calls
    except for the previous block's spec version (upgrade detection) and the metadata cache."""

    def __init__(
        self,
        level: ContentsLevel,
        cache: MetadataCache | None = None,
        *,
        on_event: Callable[[FeedEvent], None] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if level is ContentsLevel.HEADER:
            raise ValueError("the header level fetches nothing")
        self.level = level
        self.cache = cache if cache is not None else MetadataCache()
        self._on_event = on_event
        self._timeout_s = timeout_s
        self._clock = clock
        self._last_spec: int | None = None
        self.upgrades = 0
        self.root_kinds: dict[str, int] = {}

    async def fetch(self, rpc: RpcCaller, blocks: Sequence[Block]) -> list[Block]:
        """Copies of ``blocks`` (consecutive or not, in delivery order) with their contents.

        Raises ``RpcError`` (retry, maybe elsewhere), ``MalformedFrame`` (the node sent
        garbage) or ``VerificationError`` (a body that does not match its header); nothing is
        returned in part.
        """
        if not blocks:
            return []
        want_events = self.level >= ContentsLevel.EVENTS
        want_body = self.level >= ContentsLevel.FULL
        calls: list[tuple[str, list[Any]]] = []
        for block in blocks:
            calls.append(("state_getRuntimeVersion", [block.parent_hash]))
            calls.append(("state_getStorage", [TIMESTAMP_KEY, block.hash]))
            if want_events:
                calls.append(("state_getStorage", [EVENTS_KEY, block.hash]))
            if want_body:
                calls.append(("chain_getBlock", [block.hash]))
        results = await rpc.batch(calls, timeout_s=self._timeout_s)
        if len(results) != len(calls):
            raise MalformedFrame(f"batch answered {len(results)} of {len(calls)} requests")
        per_block = len(calls) // len(blocks)
        out: list[Block] = []
        upgrades: list[FeedEvent] = []
        last_spec = self._last_spec
        for i, block in enumerate(blocks):
            answers = results[i * per_block : (i + 1) * per_block]
            spec, tx = _spec_of(_ok(answers[0], "runtime version"), block.number)
            timestamp = self._timestamp(_ok(answers[1], "timestamp"), block.number)
            fields: dict[str, Any] = {"timestamp": timestamp, "spec_version": spec}
            if want_events:
                runtime = await self._runtime(rpc, spec, tx, block)
                events = runtime.events(self._storage(_ok(answers[2], "events"), "System.Events"))
                fields["events"] = events
                if want_body:
                    body = self._body(_ok(answers[3], "block"), block)
                    fields["extrinsics"] = runtime.extrinsics(body)
                    check_events_against_body(events, len(body))
            if last_spec is not None and spec != last_spec:
                upgrades.append(RuntimeUpgraded(
                    at=self._clock(),
                    reason=f"runtime upgraded at #{block.number}: spec version "
                    f"{last_spec} -> {spec}",
                    number=block.number, hash=block.hash,
                    from_spec_version=last_spec, to_spec_version=spec,
                ))
            last_spec = spec
            out.append(dataclasses.replace(block, **fields))
        self._last_spec = last_spec
        for event in upgrades:
            self.upgrades += 1
            if self._on_event is not None:
                self._on_event(event)  # the feed logs it with its other events
            else:
                logger.warning("RUNTIME UPGRADED | %s", event.reason)
        return out

    async def _runtime(
        self, rpc: RpcCaller, spec: int, tx: int, block: Block
    ) -> RuntimeDecoder:
        """The decoder for ``spec``: cache, else ``state_getMetadata`` at the block's parent."""
        runtime = self.cache.loaded(spec)
        if runtime is None:
            runtime = await asyncio.to_thread(self.cache.get, spec)
        if runtime is not None:
            return runtime
        raw = await rpc.call("state_getMetadata", [block.parent_hash], timeout_s=self._timeout_s)
        metadata = _hex(raw, f"metadata for spec version {spec}")
        logger.info("fetched metadata for spec version %d (%d bytes) at #%d",
                    spec, len(metadata), block.number)
        return await asyncio.to_thread(self.cache.put, spec, metadata, tx)

    @staticmethod
    def _storage(value: Any, what: str) -> bytes | None:
        return None if value is None else _hex(value, what)

    def _timestamp(self, value: Any, number: int) -> int | None:
        raw = self._storage(value, "Timestamp.Now")
        if raw is None:
            return None
        if len(raw) != 8:
            raise MalformedFrame(f"Timestamp.Now for #{number} is {len(raw)} bytes, not 8")
        return int.from_bytes(raw, "little")

    def _body(self, value: Any, block: Block) -> list[bytes]:
        """The block's extrinsics, checked against its verified header."""
        if block.header is None:
            raise VerificationError(f"#{block.number} has no verified header to check a body")
        if value is None:
            raise MalformedFrame(f"the node does not have the body of #{block.number}")
        try:
            hexes = value["block"]["extrinsics"]
        except (TypeError, KeyError) as exc:
            raise MalformedFrame(f"chain_getBlock for #{block.number} has no extrinsics") from exc
        if not isinstance(hexes, list) or len(hexes) > MAX_EXTRINSICS:
            raise MalformedFrame(f"chain_getBlock for #{block.number}: bad extrinsics list")
        body = [_hex(x, f"extrinsic {i} of #{block.number}") for i, x in enumerate(hexes)]
        kind = body_root_kind(body, block.header.extrinsics_root)
        self.root_kinds[kind] = self.root_kinds.get(kind, 0) + 1
        return body
