"""Bittensor's real per-subnet epochs, asked from the chain instead of assumed.

Subtensor runs each subnet's epoch on its own schedule, and that schedule has changed over time
(a per-subnet ``Tempo``, an offset by ``netuid``, later a ``LastEpochBlock + tempo`` rule with
owner-triggered epochs). So :class:`SubnetEpochSchedule` asks the chain:

1. ``state_call("SubnetInfoRuntimeApi_get_next_epoch_start_block", SCALE(u16 netuid))`` returns
   SCALE ``Option<u64>``: the block at which the subnet's next epoch starts (``None``: the subnet
   runs no epochs). Asked as of the block in question (``at=`` its hash) when known.
2. A runtime without that API answers with a JSON-RPC error; then the schedule falls back to the
   ``SubtensorModule::Tempo`` storage item (key ``twox128("SubtensorModule") ++
   twox128("Tempo") ++ twox64concat(u16 LE netuid)``, value u16 LE) and subtensor's legacy rule,
   exactly as ``blocks_until_next_epoch`` computes it::

       blocks_until_next_epoch = tempo - (block + netuid + 1) % (tempo + 1)

   The epoch runs in the block where that is 0, i.e. where
   ``(block + netuid + 1) % (tempo + 1) == tempo``. (Subtensor's doc comment says
   ``... == 0``, but its code and its own table -- tempo 1, netuid 0: first epoch block 0;
   tempo 100, netuid 1: block 98 -- give ``== tempo``; the code is what the chain runs.)

An epoch starts at the block where the chain runs it and ends the block before the next one; its
identity (:attr:`EpochSpan.epoch`) is that first block's number, which stays unique when a
subnet's tempo changes. Each answer is cached until the epoch ends ("re-ask after each epoch"):
a schedule change inside an epoch (a new tempo, an owner-triggered epoch) is seen at the next
boundary. On the runtime-API path the first epoch a process sees is assumed to have started
``tempo + 1`` blocks before the next start; every later epoch starts exactly where the chain
said the previous one ends.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_right

from blockfeed.codec.twox import storage_prefix, twox64concat
from blockfeed.epochs.schedule import EpochSpan
from blockfeed.errors import ConfigError, MalformedFrame, RpcServerError
from blockfeed.rpc import methods
from blockfeed.rpc.methods import RpcCaller

logger = logging.getLogger("blockfeed.epochs")

NEXT_EPOCH_START_API = "SubnetInfoRuntimeApi_get_next_epoch_start_block"
TEMPO_PREFIX = storage_prefix("SubtensorModule", "Tempo")
MAX_NETUID = 0xFFFF
MAX_CACHED_SPANS = 64


def blocks_until_next_epoch(block: int, *, netuid: int, tempo: int) -> int:
    """Subtensor's ``blocks_until_next_epoch`` (legacy rule); 0: the epoch runs in ``block``."""
    if tempo <= 0:
        raise ConfigError(f"subnet {netuid} has tempo {tempo}: it runs no epochs")
    return tempo - (block + netuid + 1) % (tempo + 1)


def is_epoch_block(block: int, *, netuid: int, tempo: int) -> bool:
    """True when the legacy rule runs subnet ``netuid``'s epoch in ``block``."""
    return blocks_until_next_epoch(block, netuid=netuid, tempo=tempo) == 0


def legacy_span(block: int, *, netuid: int, tempo: int) -> EpochSpan:
    """The epoch containing ``block`` under the legacy rule (starts at an epoch block)."""
    period = tempo + 1
    until = blocks_until_next_epoch(block, netuid=netuid, tempo=tempo)
    start = block if until == 0 else max(0, block + until - period)
    end = block + until - 1 if until else block + tempo
    return EpochSpan(epoch=start, start=start, end=end)


def tempo_storage_key(netuid: int) -> str:
    """``0x`` key of ``SubtensorModule::Tempo(netuid)``."""
    return "0x" + (TEMPO_PREFIX + twox64concat(_netuid_bytes(netuid))).hex()


def encode_netuid(netuid: int) -> str:
    """SCALE ``u16`` of ``netuid`` as ``0x`` hex: the runtime API's input."""
    return "0x" + _netuid_bytes(netuid).hex()


def decode_option_u64(data: bytes) -> int | None:
    """SCALE ``Option<u64>``: ``0x00`` is None, ``0x01`` + 8 little-endian bytes is a value."""
    if data == b"\x00":
        return None
    if len(data) == 9 and data[0] == 1:
        return int.from_bytes(data[1:], "little")
    raise MalformedFrame(
        f"{NEXT_EPOCH_START_API} must return SCALE Option<u64>, got 0x{data[:16].hex()} "
        f"({len(data)} bytes)"
    )


def decode_tempo(data: bytes) -> int:
    """SCALE ``u16`` (the ``Tempo`` value)."""
    if len(data) != 2:
        raise MalformedFrame(f"Tempo must be a SCALE u16 (2 bytes), got {len(data)} bytes")
    return int.from_bytes(data, "little")


class SubnetEpochSchedule:
    """Per-subnet epochs as the chain reports them (runtime API first, ``Tempo`` as fallback).

    ``rpc`` is any :class:`~blockfeed.rpc.methods.RpcCaller` (``HttpRpc`` or ``WsRpc``). RPC
    failures propagate (:class:`~blockfeed.errors.RpcError`) so the caller can retry; a subnet
    without epochs raises :class:`ConfigError`; nonsense from the node raises MalformedFrame.
    """

    def __init__(self, netuid: int, rpc: RpcCaller) -> None:
        self.netuid = _check_netuid(netuid)
        self._rpc = rpc
        self._runtime_api: bool | None = None
        """None until the first answer tells whether the runtime has the API."""
        self._spans: list[EpochSpan] = []
        """Cached spans, sorted by start; bounded by MAX_CACHED_SPANS."""
        self._boundaries: list[int] = []
        """Epoch starts the chain announced (as "next start" answers), sorted."""
        self._lock = asyncio.Lock()

    @property
    def source(self) -> str | None:
        """``"runtime_api"``, ``"tempo"`` (legacy fallback), or None before the first answer."""
        if self._runtime_api is None:
            return None
        return "runtime_api" if self._runtime_api else "tempo"

    async def span_of(self, number: int, *, block_hash: str | None = None) -> EpochSpan:
        """The epoch containing block ``number`` (asks the chain at most once per epoch).

        On every cache miss the runtime API is tried first, so a runtime upgrade that adds it
        is picked up at the next epoch; without it the ``Tempo`` fallback answers.
        """
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise ValueError(f"block number must be a non-negative integer, got {number!r}")
        async with self._lock:
            cached = self._cached(number)
            if cached is not None:
                return cached
            span = await self._span_from_runtime_api(number, block_hash)
            if span is None:
                span = await self._span_from_tempo(number, block_hash)
            return span

    async def next_epoch_start(self, number: int, *, block_hash: str | None = None) -> int:
        """First block of the epoch after the one containing ``number``."""
        return (await self.span_of(number, block_hash=block_hash)).end + 1

    # -- the two ways of asking ----------------------------------------------------------------

    async def _span_from_runtime_api(self, number: int, block_hash: str | None) -> EpochSpan | None:
        """The span from the runtime API, or None when this runtime has no such API."""
        raw = await self._call_runtime_api(block_hash)
        if raw is None:
            self._set_source(runtime_api=False)
            return None
        self._set_source(runtime_api=True)
        next_start = decode_option_u64(raw)
        if next_start is None:
            raise ConfigError(
                f"the chain says subnet {self.netuid} runs no epochs (tempo 0, or no such subnet)"
            )
        period = await self._read_tempo(block_hash) + 1
        if next_start <= number:
            # The chain planned an epoch at next_start but has not run it yet (deferred): the
            # current epoch goes on, and this answer is good for this block only.
            known = self._boundary_at_or_before(number)
            start = known if known is not None and number - known < 2 * period else None
            if start is None:
                start = max(0, next_start - period)
            return EpochSpan(epoch=start, start=start, end=number)
        self._add_boundary(next_start)
        known = self._boundary_at_or_before(number)
        if known is not None and next_start - known <= period + period // 2:
            # The chain itself said this epoch starts here: exact, whatever the period.
            return self._remember(EpochSpan(epoch=known, start=known, end=next_start - 1))
        start = next_start - period
        while start > number:  # answered at the head about an older block
            start -= period
        start = max(0, start)
        end = min(next_start, start + period) - 1
        return self._remember(EpochSpan(epoch=start, start=start, end=end))

    async def _call_runtime_api(self, block_hash: str | None) -> bytes | None:
        """The API's raw answer (at ``block_hash``, else at the head), None if there is no API."""
        data = encode_netuid(self.netuid)
        if block_hash is not None:
            try:
                return await methods.state_call(self._rpc, NEXT_EPOCH_START_API, data, block_hash)
            except RpcServerError:
                pass  # pruned state, or a runtime older than the API at that block: ask the head
        try:
            return await methods.state_call(self._rpc, NEXT_EPOCH_START_API, data)
        except RpcServerError:
            return None

    def _set_source(self, *, runtime_api: bool) -> None:
        if self._runtime_api is not runtime_api:
            logger.info(
                "subnet %d epochs: %s",
                self.netuid,
                f"asking the runtime API {NEXT_EPOCH_START_API}"
                if runtime_api
                else "the runtime has no epoch API; using Tempo storage and the legacy rule",
            )
        self._runtime_api = runtime_api

    async def _span_from_tempo(self, number: int, block_hash: str | None) -> EpochSpan:
        tempo = await self._read_tempo(block_hash)
        return self._remember(legacy_span(number, netuid=self.netuid, tempo=tempo))

    async def _read_tempo(self, block_hash: str | None) -> int:
        key = tempo_storage_key(self.netuid)
        try:
            raw = await methods.get_storage(self._rpc, key, block_hash)
        except RpcServerError:
            if block_hash is None:
                raise
            raw = await methods.get_storage(self._rpc, key)
        if raw is None:
            raise ConfigError(f"the chain has no Tempo for subnet {self.netuid}: no such subnet")
        tempo = decode_tempo(raw)
        if tempo == 0:
            raise ConfigError(f"subnet {self.netuid} has tempo 0: it runs no epochs")
        return tempo

    # -- cache -----------------------------------------------------------------------------------

    def _cached(self, number: int) -> EpochSpan | None:
        index = bisect_right([s.start for s in self._spans], number) - 1
        if index >= 0 and self._spans[index].contains(number):
            return self._spans[index]
        return None

    def _remember(self, span: EpochSpan) -> EpochSpan:
        self._spans = [s for s in self._spans if s.end < span.start or s.start > span.end]
        self._spans.append(span)
        self._spans.sort(key=lambda s: s.start)
        del self._spans[:-MAX_CACHED_SPANS]
        return span

    def _add_boundary(self, block: int) -> None:
        if block not in self._boundaries:
            self._boundaries.append(block)
            self._boundaries.sort()
            del self._boundaries[:-MAX_CACHED_SPANS]

    def _boundary_at_or_before(self, number: int) -> int | None:
        index = bisect_right(self._boundaries, number) - 1
        return self._boundaries[index] if index >= 0 else None


def _check_netuid(netuid: int) -> int:
    if isinstance(netuid, bool) or not isinstance(netuid, int) or not 0 <= netuid <= MAX_NETUID:
        raise ConfigError(f"netuid must be an integer from 0 to {MAX_NETUID}, got {netuid!r}")
    return netuid


def _netuid_bytes(netuid: int) -> bytes:
    return _check_netuid(netuid).to_bytes(2, "little")
