"""The runtime slice: legacy epoch formula, Option<u64> output, Tempo storage keys."""

from __future__ import annotations

import pytest

from blockfeed.devnode.runtime import (
    NEXT_EPOCH_API,
    SLOT_DURATION_API,
    Runtime,
    RuntimeCallError,
    is_epoch_block,
    next_epoch_block,
    read_tempo_key,
    tempo_key,
)


@pytest.mark.parametrize("netuid", [0, 1, 7, 300])
@pytest.mark.parametrize("tempo", [1, 99, 360])
def test_next_epoch_block_matches_brute_force(netuid: int, tempo: int) -> None:
    """next_epoch_block is the first block > after that satisfies the legacy formula."""
    for after in range(6_940_000, 6_940_000 + 2 * (tempo + 1)):
        expected = next(
            b
            for b in range(after + 1, after + tempo + 3)
            if is_epoch_block(b, netuid=netuid, tempo=tempo)
        )
        assert next_epoch_block(after, netuid=netuid, tempo=tempo) == expected


@pytest.mark.parametrize(
    ("tempo", "netuid", "first"),
    [(1, 0, 0), (1, 1, 1), (2, 0, 1), (2, 1, 0), (100, 0, 99), (100, 1, 98)],
)
def test_legacy_rule_matches_subtensor_table(tempo: int, netuid: int, first: int) -> None:
    """The first epoch blocks agree with the table in subtensor's blocks_until_next_epoch."""
    assert [b for b in range(first + 1) if is_epoch_block(b, netuid=netuid, tempo=tempo)] == [first]
    assert next_epoch_block(first, netuid=netuid, tempo=tempo) == first + tempo + 1


def test_tempo_key_layout_and_round_trip() -> None:
    """Tempo keys are twox128 prefixes + twox64concat(u16 LE netuid) and decode back."""
    key = tempo_key(1)
    assert key.startswith("0x658faa385070e074c85bf6b568cf0555")
    assert key.endswith("0100")
    assert len(bytes.fromhex(key[2:])) == 42
    assert read_tempo_key(bytes.fromhex(key[2:])) == 1
    tampered = bytearray(bytes.fromhex(key[2:]))
    tampered[35] ^= 1
    assert read_tempo_key(bytes(tampered)) is None


def test_runtime_call_and_storage() -> None:
    """Known netuid -> Some(next epoch block) and its tempo; unknown -> None / absent."""
    runtime = Runtime(tempos={1: 360}, runtime_api=True)
    output = runtime.call(NEXT_EPOCH_API, (1).to_bytes(2, "little"), at_block=6_940_000)
    assert output[0] == 1
    assert int.from_bytes(output[1:], "little") == next_epoch_block(6_940_000, netuid=1, tempo=360)
    assert runtime.call(NEXT_EPOCH_API, (5).to_bytes(2, "little"), at_block=1) == b"\x00"
    assert runtime.storage(bytes.fromhex(tempo_key(1)[2:])) == (360).to_bytes(2, "little")
    assert runtime.storage(bytes.fromhex(tempo_key(5)[2:])) is None


def test_runtime_without_the_api_and_bad_input() -> None:
    """No runtime API -> 'Exported method ... is not found'; a bad netuid encoding fails too."""
    without = Runtime(tempos={1: 360}, runtime_api=False)
    with pytest.raises(RuntimeCallError, match=r"Exported method .* is not found"):
        without.call(NEXT_EPOCH_API, b"\x01\x00", at_block=1)
    with pytest.raises(RuntimeCallError, match="could not decode"):
        Runtime(tempos={}, runtime_api=True).call(NEXT_EPOCH_API, b"\x01", at_block=1)


def test_slot_duration_is_u64_le_milliseconds_with_or_without_the_subnet_api() -> None:
    """AuraApi_slot_duration: 8 bytes little-endian ms, also when SubnetInfoRuntimeApi is off."""
    for runtime_api in (True, False):
        runtime = Runtime(tempos={}, runtime_api=runtime_api, slot_duration_ms=12_000)
        assert runtime.call(SLOT_DURATION_API, b"", at_block=1) == bytes.fromhex("e02e000000000000")
    with pytest.raises(RuntimeCallError, match="Exported method BabeApi_configuration is not"):
        runtime.call("BabeApi_configuration", b"", at_block=1)


def test_runtime_version_lists_the_subnet_api_only_when_served() -> None:
    """The API list has SubnetInfoRuntimeApi exactly when runtime_api is on."""
    with_api = Runtime(tempos={}, runtime_api=True).version()["apis"]
    without = Runtime(tempos={}, runtime_api=False).version()["apis"]
    assert len(with_api) == len(without) + 1
    assert {api_id for api_id, _ in with_api} - {api_id for api_id, _ in without} == {
        "0x8375104b299b74c5"
    }
