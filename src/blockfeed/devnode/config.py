"""DevNodeConfig: how the fake node's chain behaves and where it listens."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from blockfeed import defaults
from blockfeed.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 0
"""The Python API picks a free port by default; the CLI defaults to 9944 like a real node."""
DEFAULT_BLOCK_TIME_S = defaults.BLOCK_TIME_S
MIN_BLOCK_TIME_S = 0.05
MIN_SLOT_DURATION_S = 0.001
"""Aura's slot duration is whole milliseconds on the wire."""
MAX_SLOT_DURATION_S = 86_400.0
DEFAULT_FINALITY_LAG = 2
DEFAULT_FINALITY_JUMPS = 0.15
DEFAULT_START_BLOCK = 6_940_000
DEFAULT_SEED = 0
DEFAULT_TEMPOS: Mapping[int, int] = MappingProxyType({1: 360})
DEFAULT_CHAIN_NAME = "Bittensor devnode"
MAX_BLOCK_NUMBER = (1 << 32) - 1
MAX_U16 = 0xFFFF


def _frozen_tempos(tempos: Mapping[int, int]) -> Mapping[int, int]:
    return MappingProxyType(dict(tempos))


@dataclass(frozen=True, kw_only=True)
class DevNodeConfig:
    """Everything that shapes a devnode; validated on creation (``ConfigError`` on bad values)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    """0 picks a free port; the real one is in ``DevNode.port`` once started."""
    block_time_s: float = DEFAULT_BLOCK_TIME_S
    finality_lag: int = DEFAULT_FINALITY_LAG
    """The finalized head trails best by this many blocks (more during a GRANDPA jump)."""
    finality_jumps: float = DEFAULT_FINALITY_JUMPS
    """Probability that a finality step waits and then finalizes 2-4 blocks at once."""
    start_block: int = DEFAULT_START_BLOCK
    """First real block; lower numbers (except genesis 0) exist only virtually."""
    seed: int = DEFAULT_SEED
    """Everything (hashes, finality jumps, fault randomness) is derived from it."""
    tempos: Mapping[int, int] = field(default_factory=lambda: DEFAULT_TEMPOS, hash=False)
    """Subtensor ``Tempo`` per netuid; unknown netuids have no epochs (None / null)."""
    runtime_api: bool = True
    """False: ``state_call`` fails like a runtime without ``SubnetInfoRuntimeApi``."""
    auto_produce: bool = True
    """False: no timer; blocks appear only through ``DevNode.advance()`` (deterministic tests)."""
    chain_name: str = DEFAULT_CHAIN_NAME
    """What ``system_chain`` answers."""
    slot_duration_s: float | None = None
    """What the runtime declares (``AuraApi_slot_duration``); None: ``block_time_s``. Set it
    apart from ``block_time_s`` to model a runtime whose declared slot is not the real pace."""
    contents_fixture: str | None = None
    """A recorded ``blocks.json`` (tests/fixtures/subtensor/): blocks get its real bodies,
    events and metadata (``blockfeed.devnode.contents``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tempos", _frozen_tempos(_check_tempos(self.tempos)))
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError("host must be a non-empty string, e.g. '127.0.0.1'")
        _check_int("port", self.port, 0, 65535)
        if (
            not isinstance(self.block_time_s, int | float)
            or isinstance(self.block_time_s, bool)
            or not math.isfinite(self.block_time_s)
            or self.block_time_s < MIN_BLOCK_TIME_S
        ):
            raise ConfigError(
                f"block_time_s must be a number >= {MIN_BLOCK_TIME_S}, got {self.block_time_s!r}"
            )
        if self.slot_duration_s is not None and (
            not isinstance(self.slot_duration_s, int | float)
            or isinstance(self.slot_duration_s, bool)
            or not math.isfinite(self.slot_duration_s)
            or not MIN_SLOT_DURATION_S <= self.slot_duration_s <= MAX_SLOT_DURATION_S
        ):
            raise ConfigError(
                f"slot_duration_s must be a number from {MIN_SLOT_DURATION_S} to "
                f"{MAX_SLOT_DURATION_S:g} (unset: the block time), got {self.slot_duration_s!r}"
            )
        _check_int("finality_lag", self.finality_lag, 0, 10_000)
        if (
            not isinstance(self.finality_jumps, int | float)
            or isinstance(self.finality_jumps, bool)
            or not 0.0 <= self.finality_jumps <= 1.0
        ):
            raise ConfigError(
                f"finality_jumps must be a probability between 0 and 1, got {self.finality_jumps!r}"
            )
        _check_int("start_block", self.start_block, 1, MAX_BLOCK_NUMBER // 2)
        _check_int("seed", self.seed, -(1 << 63), (1 << 63) - 1)

    @property
    def slot_duration_ms(self) -> int:
        """The declared Aura slot in whole milliseconds (at least 1)."""
        seconds = self.block_time_s if self.slot_duration_s is None else self.slot_duration_s
        return max(1, round(seconds * 1000))


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer from {low} to {high}, got {value!r}")


def _check_tempos(tempos: object) -> dict[int, int]:
    if not isinstance(tempos, Mapping):
        raise ConfigError("tempos must be a mapping {netuid: tempo}")
    checked: dict[int, int] = {}
    for netuid, tempo in tempos.items():
        _check_int("tempos netuid", netuid, 0, MAX_U16)
        _check_int(f"tempo of netuid {netuid}", tempo, 1, MAX_U16)
        checked[netuid] = tempo
    return checked


def parse_tempo_flag(text: str) -> tuple[int, int]:
    """Parse ``NETUID=TEMPO`` (the CLI's ``--tempo``) into a pair; ``ConfigError`` if malformed."""
    netuid_text, sep, tempo_text = text.partition("=")
    try:
        if not sep:
            raise ValueError
        netuid, tempo = int(netuid_text.strip()), int(tempo_text.strip())
    except ValueError:
        raise ConfigError(f"--tempo expects NETUID=TEMPO, e.g. 1=360; got {text!r}") from None
    _check_int("netuid", netuid, 0, MAX_U16)
    _check_int("tempo", tempo, 1, MAX_U16)
    return netuid, tempo
