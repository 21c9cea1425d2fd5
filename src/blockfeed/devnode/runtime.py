"""The tiny slice of the subtensor runtime devnode answers: epoch start blocks, ``Tempo``, the
Aura slot duration and the runtime version.

``AuraApi_slot_duration`` returns the configured slot as SCALE u64 milliseconds; it may differ
from the pace blocks really come at (F14), as on test chains built with fast blocks.

Epochs use subtensor's legacy rule as its code runs it: block ``b`` runs subnet ``netuid``'s
epoch when ``blocks_until_next_epoch = tempo - (b + netuid + 1) % (tempo + 1)`` is 0, i.e.
``(b + netuid + 1) % (tempo + 1) == tempo``. (Subtensor's doc comment says ``== 0``; its code and
its own table -- tempo 1, netuid 0: first epoch block 0; tempo 100, netuid 1: block 98 -- say
``== tempo``; ``blockfeed.epochs`` follows the code too, so both paths agree against devnode.)
``SubnetInfoRuntimeApi_get_next_epoch_start_block`` returns the next such block after the given
(or best) block, SCALE ``Option<u64>``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from blockfeed.codec.twox import storage_prefix, twox64concat

NEXT_EPOCH_API = "SubnetInfoRuntimeApi_get_next_epoch_start_block"
SLOT_DURATION_API = "AuraApi_slot_duration"
SPEC_NAME = "node-subtensor"
SPEC_VERSION = 233
"""A plausible subtensor ``spec_version`` (finney ran 2xx in 2025)."""
RUNTIME_APIS: tuple[tuple[str, int], ...] = (
    ("Core", 4),
    ("Metadata", 2),
    ("BlockBuilder", 6),
    ("TaggedTransactionQueue", 3),
    ("AuraApi", 1),
    ("GrandpaApi", 3),
)
"""Runtime APIs a subtensor runtime declares (name, version); the ids are blake2b-64 of the
name, as ``sp_api`` computes them."""
TEMPO_PREFIX = storage_prefix("SubtensorModule", "Tempo")
"""``twox128("SubtensorModule") ++ twox128("Tempo")``."""
STATE_ERROR_CODE = 4003
"""What a Substrate node answers for a failed ``state_call`` / unknown block (state base 4000
+ 3: ``"Client error: ..."``)."""


class RuntimeCallError(Exception):
    """The runtime could not execute a call; carries the node's ``Client error`` message."""


def blocks_until_next_epoch(block: int, *, netuid: int, tempo: int) -> int:
    """Subtensor's legacy ``blocks_until_next_epoch`` (0: the epoch runs in ``block``)."""
    return tempo - (block + netuid + 1) % (tempo + 1)


def is_epoch_block(block: int, *, netuid: int, tempo: int) -> bool:
    """True when the legacy rule runs subnet ``netuid``'s epoch in ``block``."""
    return blocks_until_next_epoch(block, netuid=netuid, tempo=tempo) == 0


def next_epoch_block(after: int, *, netuid: int, tempo: int) -> int:
    """The first epoch block strictly greater than ``after``."""
    following = after + 1
    return following + blocks_until_next_epoch(following, netuid=netuid, tempo=tempo)


def api_id(name: str) -> str:
    """A runtime API's id as ``state_getRuntimeVersion`` lists it: ``0x`` blake2b-64 of the name."""
    return "0x" + hashlib.blake2b(name.encode(), digest_size=8).hexdigest()


def tempo_key(netuid: int) -> str:
    """``0x`` storage key of ``SubtensorModule::Tempo(netuid)``."""
    return "0x" + (TEMPO_PREFIX + twox64concat(netuid.to_bytes(2, "little"))).hex()


def read_tempo_key(key: bytes) -> int | None:
    """The netuid a ``Tempo`` key names, or None when ``key`` is not a well-formed Tempo key."""
    if len(key) != 32 + 8 + 2 or not key.startswith(TEMPO_PREFIX):
        return None
    netuid_bytes = key[-2:]
    if key[32:] != twox64concat(netuid_bytes):
        return None
    return int.from_bytes(netuid_bytes, "little")


class Runtime:
    """Answers ``state_call`` and ``state_getStorage`` from the configured tempos."""

    def __init__(
        self, *, tempos: Mapping[int, int], runtime_api: bool, slot_duration_ms: int = 12_000
    ) -> None:
        self._tempos = dict(tempos)
        self._runtime_api = runtime_api
        self._slot_duration_ms = slot_duration_ms

    def version(self) -> dict[str, Any]:
        """What ``state_getRuntimeVersion`` answers (the runtime API list included)."""
        apis = [*RUNTIME_APIS, *((("SubnetInfoRuntimeApi", 1),) if self._runtime_api else ())]
        return {
            "specName": SPEC_NAME,
            "implName": SPEC_NAME,
            "authoringVersion": 1,
            "specVersion": SPEC_VERSION,
            "implVersion": 1,
            "apis": [[api_id(name), version] for name, version in apis],
            "transactionVersion": 1,
            "stateVersion": 1,
        }

    def call(self, name: str, data: bytes, *, at_block: int) -> bytes:
        """Execute runtime API ``name`` with SCALE input ``data`` at block ``at_block``."""
        if name == SLOT_DURATION_API:
            return self._slot_duration_ms.to_bytes(8, "little")
        if name != NEXT_EPOCH_API or not self._runtime_api:
            raise RuntimeCallError(f"Execution failed: Other: Exported method {name} is not found")
        if len(data) != 2:
            raise RuntimeCallError(
                f"Execution failed: Execution aborted due to trap: {name}: could not decode "
                f"the input (expected a SCALE u16 netuid, got {len(data)} bytes)"
            )
        netuid = int.from_bytes(data, "little")
        tempo = self._tempos.get(netuid)
        if tempo is None:
            return b"\x00"
        next_block = next_epoch_block(at_block, netuid=netuid, tempo=tempo)
        return b"\x01" + next_block.to_bytes(8, "little")

    def storage(self, key: bytes) -> bytes | None:
        """The SCALE value stored under ``key`` (only ``Tempo``), or None (absent)."""
        netuid = read_tempo_key(key)
        if netuid is None:
            return None
        tempo = self._tempos.get(netuid)
        if tempo is None:
            return None
        return tempo.to_bytes(2, "little")
