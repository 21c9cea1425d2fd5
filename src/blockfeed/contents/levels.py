"""How much of each block the feed fetches besides its header."""

from __future__ import annotations

import enum

from blockfeed.errors import ConfigError


class ContentsLevel(enum.IntEnum):
    """Opt-in contents per feed; each level includes the ones before it."""

    HEADER = 0
    """Headers only (no extra request; the default)."""
    TIMESTAMP = 1
    """Adds ``timestamp`` (ms, ``Timestamp.Now``) and ``spec_version``: no metadata needed."""
    EVENTS = 2
    """Adds decoded ``events`` (``System.Events`` at the block, with its runtime's metadata)."""
    FULL = 3
    """Adds decoded ``extrinsics``, verified against the header's ``extrinsics_root``."""

    def __str__(self) -> str:
        return self.name.lower()


def parse_level(value: str | ContentsLevel | None) -> ContentsLevel:
    """``"header" | "timestamp" | "events" | "full"`` (or a level, or None = header)."""
    if value is None:
        return ContentsLevel.HEADER
    if isinstance(value, ContentsLevel):
        return value
    try:
        return ContentsLevel[str(value).strip().upper()]
    except KeyError:
        names = ", ".join(str(level) for level in ContentsLevel)
        raise ConfigError(f"unknown contents level {value!r}; use one of: {names}") from None
