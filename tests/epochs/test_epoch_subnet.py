"""SubnetEpochSchedule: the runtime API first, the Tempo fallback, and subtensor's legacy rule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from blockfeed.devnode.runtime import tempo_key as devnode_tempo_key
from blockfeed.epochs import EpochSpan, SubnetEpochSchedule
from blockfeed.epochs.subnet import (
    NEXT_EPOCH_START_API,
    blocks_until_next_epoch,
    decode_option_u64,
    encode_netuid,
    is_epoch_block,
    legacy_span,
    tempo_storage_key,
)
from blockfeed.errors import ConfigError, MalformedFrame, RpcServerError, RpcTransportError


def block_hash_of(number: int) -> str:
    """The fake chain's hash for block ``number`` (the number, zero-padded)."""
    return f"0x{number:064x}"


class FakeSubtensor:
    """A scripted RpcCaller answering state_call and state_getStorage like subtensor would."""

    def __init__(
        self,
        *,
        head: int,
        tempos: dict[int, int] | None = None,
        boundaries: Sequence[int] | None = None,
        runtime_api: bool = True,
        pruned_below: int = 0,
        fixed_answer: bytes | None = None,
        tempo_value: str | None = None,
    ) -> None:
        self.head = head
        self.tempos = {1: 360} if tempos is None else tempos
        self.boundaries = list(boundaries) if boundaries is not None else None
        self.runtime_api = runtime_api
        self.pruned_below = pruned_below
        self.fixed_answer = fixed_answer
        self.tempo_value = tempo_value
        self.calls: list[tuple[str, list[Any]]] = []
        self.fail_next: list[Exception] = []

    def _at(self, rest: list[Any]) -> int:
        if not rest:
            return self.head
        number = int(rest[0], 16)
        if number < self.pruned_below:
            raise RpcServerError(4003, "Client error: State already discarded")
        return number

    def _next_start(self, netuid: int, tempo: int, at: int) -> int:
        if self.boundaries is not None:
            return min(b for b in self.boundaries if b > at)
        block = at + 1
        while not is_epoch_block(block, netuid=netuid, tempo=tempo):
            block += 1
        return block

    async def call(self, method: str, params: Any = None, *, timeout_s: float | None = None) -> Any:
        self.calls.append((method, list(params or [])))
        if self.fail_next:
            raise self.fail_next.pop(0)
        if method == "state_call":
            name, data, *rest = params
            at = self._at(rest)
            if not self.runtime_api or name != NEXT_EPOCH_START_API:
                raise RpcServerError(4003, f"Execution failed: Exported method {name} not found")
            if self.fixed_answer is not None:
                return "0x" + self.fixed_answer.hex()
            netuid = int.from_bytes(bytes.fromhex(data[2:]), "little")
            tempo = self.tempos.get(netuid)
            if not tempo:
                return "0x00"
            return "0x01" + self._next_start(netuid, tempo, at).to_bytes(8, "little").hex()
        if method == "state_getStorage":
            key, *rest = params
            self._at(rest)
            if self.tempo_value is not None:
                return self.tempo_value
            for netuid, tempo in self.tempos.items():
                if key == tempo_storage_key(netuid):
                    return "0x" + tempo.to_bytes(2, "little").hex()
            return None
        raise RpcServerError(-32601, f"Method not found: {method}")

    async def batch(self, calls: Any, *, timeout_s: float | None = None) -> list[Any]:
        raise AssertionError("the schedule never batches")

    def count(self, method: str) -> int:
        return sum(1 for m, _ in self.calls if m == method)


# -- the legacy rule -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tempo", "netuid", "first_epoch_block"),
    [(1, 0, 0), (1, 1, 1), (2, 0, 1), (2, 1, 0), (100, 0, 99), (100, 1, 98)],
)
def test_legacy_rule_matches_subtensor_table(
    tempo: int, netuid: int, first_epoch_block: int
) -> None:
    """The first epoch block per (tempo, netuid) is the one subtensor's own table lists."""
    span = range(0, 3 * (tempo + 1))
    blocks = [b for b in span if is_epoch_block(b, netuid=netuid, tempo=tempo)]
    assert blocks[0] == first_epoch_block
    assert blocks == list(range(first_epoch_block, 3 * (tempo + 1), tempo + 1))


def test_legacy_rule_on_a_finney_block() -> None:
    """Hand-computed: subnet 1, tempo 360, block 6940429 -> next epoch block 6940583."""
    # (6940429 + 1 + 1) % 361 = 206, so 360 - 206 = 154 blocks to go.
    assert blocks_until_next_epoch(6_940_429, netuid=1, tempo=360) == 154
    assert is_epoch_block(6_940_583, netuid=1, tempo=360)
    assert not is_epoch_block(6_940_582, netuid=1, tempo=360)
    assert legacy_span(6_940_429, netuid=1, tempo=360) == EpochSpan(
        epoch=6_940_222, start=6_940_222, end=6_940_582
    )


def test_legacy_span_on_the_epoch_block_starts_there() -> None:
    """The epoch block itself is the first block of its epoch; the block before ends the last."""
    assert legacy_span(98, netuid=1, tempo=100) == EpochSpan(98, 98, 198)
    assert legacy_span(97, netuid=1, tempo=100) == EpochSpan(0, 0, 97)


def test_tempo_zero_has_no_epochs() -> None:
    """Tempo 0 means the subnet never runs an epoch: a clear ConfigError."""
    with pytest.raises(ConfigError, match="no epochs"):
        blocks_until_next_epoch(5, netuid=1, tempo=0)


# -- encodings -------------------------------------------------------------------------------


def test_encodings() -> None:
    """netuid is SCALE u16 LE; Option<u64> decodes None and values; the Tempo key is canonical."""
    assert encode_netuid(1) == "0x0100"
    assert encode_netuid(300) == "0x2c01"
    assert decode_option_u64(b"\x00") is None
    assert decode_option_u64(b"\x01" + (6_940_583).to_bytes(8, "little")) == 6_940_583
    key = tempo_storage_key(1)
    assert key.startswith("0x658faa385070e074c85bf6b568cf0555")  # twox128("SubtensorModule")
    assert key.endswith("0100")
    assert key == devnode_tempo_key(1)  # an independent implementation agrees


@pytest.mark.parametrize("raw", [b"", b"\x02", b"\x01\x00", b"\x00\x00", b"\x01" + b"\x00" * 9])
def test_bad_option_u64_is_malformed(raw: bytes) -> None:
    """Anything but 0x00 or 0x01 + 8 bytes is a MalformedFrame."""
    with pytest.raises(MalformedFrame, match="Option<u64>"):
        decode_option_u64(raw)


@pytest.mark.parametrize("netuid", [-1, 65_536, True, "1"])
def test_bad_netuid_is_config_error(netuid: Any) -> None:
    """netuid must fit subtensor's u16."""
    with pytest.raises(ConfigError, match="netuid"):
        SubnetEpochSchedule(netuid, FakeSubtensor(head=0))


# -- the runtime API path --------------------------------------------------------------------


async def test_runtime_api_spans_follow_the_chain_exactly() -> None:
    """After the first epoch, each epoch starts where the chain said; lengths may change."""
    chain = FakeSubtensor(head=2_500, boundaries=[1_000, 1_361, 1_700, 2_100, 2_461])
    schedule = SubnetEpochSchedule(1, chain)
    first = await schedule.span_of(1_200, block_hash=block_hash_of(1_200))
    assert first == EpochSpan(1_000, 1_000, 1_360)  # estimated: next start - (tempo + 1)
    assert schedule.source == "runtime_api"
    assert await schedule.span_of(1_361, block_hash=block_hash_of(1_361)) == EpochSpan(
        1_361, 1_361, 1_699
    )
    assert await schedule.span_of(1_800, block_hash=block_hash_of(1_800)) == EpochSpan(
        1_700, 1_700, 2_099
    )
    state_calls = [p for m, p in chain.calls if m == "state_call"]
    assert state_calls[0] == [NEXT_EPOCH_START_API, "0x0100", block_hash_of(1_200)]


async def test_one_question_per_epoch() -> None:
    """Every block of an epoch after the first answer comes from the cache."""
    chain = FakeSubtensor(head=6_941_000)
    schedule = SubnetEpochSchedule(1, chain)
    spans = {
        await schedule.span_of(n, block_hash=block_hash_of(n))
        for n in range(6_940_400, 6_940_583)
    }
    assert spans == {legacy_span(6_940_400, netuid=1, tempo=360)}
    assert chain.count("state_call") == 1
    next_span = await schedule.span_of(6_940_583, block_hash=block_hash_of(6_940_583))
    assert next_span == EpochSpan(6_940_583, 6_940_583, 6_940_943)
    assert chain.count("state_call") == 2


async def test_pruned_state_asks_the_head_and_steps_back() -> None:
    """A block whose state is pruned is answered from the head's schedule, stepped back."""
    chain = FakeSubtensor(head=6_940_429, pruned_below=6_940_000)
    schedule = SubnetEpochSchedule(1, chain)
    span = await schedule.span_of(6_939_000, block_hash=block_hash_of(6_939_000))
    assert span == legacy_span(6_939_000, netuid=1, tempo=360)
    assert [p[-1] if len(p) > 2 else None for m, p in chain.calls if m == "state_call"] == [
        block_hash_of(6_939_000),
        None,
    ]


async def test_subnet_without_epochs_is_config_error() -> None:
    """The chain answering None (tempo 0 / no subnet) raises ConfigError."""
    schedule = SubnetEpochSchedule(7, FakeSubtensor(head=100))
    with pytest.raises(ConfigError, match="subnet 7 runs no epochs"):
        await schedule.span_of(50)


async def test_deferred_epoch_is_good_for_one_block() -> None:
    """A planned start at or before the block (deferred epoch) keeps the epoch open, uncached."""
    chain = FakeSubtensor(head=2_000, fixed_answer=b"\x01" + (1_361).to_bytes(8, "little"))
    schedule = SubnetEpochSchedule(1, chain)
    span = await schedule.span_of(1_400)
    assert span == EpochSpan(1_000, 1_000, 1_400)
    await schedule.span_of(1_400)
    assert chain.count("state_call") == 2


async def test_malformed_answer_raises() -> None:
    """A node answering garbage to the runtime API raises MalformedFrame."""
    chain = FakeSubtensor(head=100, fixed_answer=b"\x05\x00")
    with pytest.raises(MalformedFrame):
        await SubnetEpochSchedule(1, chain).span_of(50)


async def test_transport_errors_propagate_for_the_caller_to_retry() -> None:
    """A network failure is not mistaken for a missing API: it reaches the caller."""
    chain = FakeSubtensor(head=100)
    chain.fail_next.append(RpcTransportError("connection refused"))
    schedule = SubnetEpochSchedule(1, chain)
    with pytest.raises(RpcTransportError):
        await schedule.span_of(50)
    assert schedule.source is None
    assert await schedule.span_of(50) == legacy_span(50, netuid=1, tempo=360)


# -- the Tempo fallback ----------------------------------------------------------------------


async def test_runtime_without_api_falls_back_to_tempo() -> None:
    """A runtime without the API is answered from Tempo storage and the legacy rule."""
    chain = FakeSubtensor(head=6_941_000, runtime_api=False, tempos={3: 99})
    schedule = SubnetEpochSchedule(3, chain)
    span = await schedule.span_of(6_940_429, block_hash=block_hash_of(6_940_429))
    assert span == legacy_span(6_940_429, netuid=3, tempo=99)
    assert schedule.source == "tempo"
    assert is_epoch_block(span.start, netuid=3, tempo=99)
    assert is_epoch_block(span.end + 1, netuid=3, tempo=99)
    storage = [p for m, p in chain.calls if m == "state_getStorage"]
    assert storage == [[tempo_storage_key(3), block_hash_of(6_940_429)]]


async def test_fallback_rereads_tempo_each_epoch() -> None:
    """After each epoch the Tempo is read again, so a tempo change takes effect."""
    chain = FakeSubtensor(head=10_000, runtime_api=False, tempos={1: 9})
    schedule = SubnetEpochSchedule(1, chain)
    first = await schedule.span_of(100)
    assert first == EpochSpan(97, 97, 106)  # (97 + 2) % 10 == 9 == tempo
    chain.tempos[1] = 19
    # Under tempo 19 the chain's next epoch block after 97 is 117 ((117 + 2) % 20 == 19): the
    # epoch that began at 97 simply runs longer, and keeps its identity.
    assert await schedule.span_of(107) == EpochSpan(97, 97, 116)
    assert await schedule.span_of(117) == EpochSpan(117, 117, 136)
    assert chain.count("state_getStorage") == 3


async def test_missing_or_zero_tempo_is_config_error() -> None:
    """No Tempo for the subnet, or tempo 0, is a ConfigError in the fallback."""
    missing = SubnetEpochSchedule(5, FakeSubtensor(head=10, runtime_api=False))
    with pytest.raises(ConfigError, match="no such subnet"):
        await missing.span_of(5)
    zero = SubnetEpochSchedule(1, FakeSubtensor(head=10, runtime_api=False, tempo_value="0x0000"))
    with pytest.raises(ConfigError, match="tempo 0"):
        await zero.span_of(5)
    bad = SubnetEpochSchedule(1, FakeSubtensor(head=10, runtime_api=False, tempo_value="0x010203"))
    with pytest.raises(MalformedFrame, match="u16"):
        await bad.span_of(5)
