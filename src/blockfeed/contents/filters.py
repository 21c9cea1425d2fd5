"""Event filters: ``"SubtensorModule.WeightsSet,Balances.Transfer"`` (``Pallet.Name``, or a
whole pallet as ``Pallet`` / ``Pallet.*``)."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable
from typing import Any

from blockfeed.errors import ConfigError
from blockfeed.types import Block


@dataclasses.dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a subscriber wants; blocks still come once each and in order."""

    names: frozenset[tuple[str, str | None]]
    """(pallet, event name) pairs; a None name is the whole pallet."""

    @classmethod
    def parse(cls, spec: str | Iterable[str]) -> EventFilter:
        """From ``"A.B,C.D"`` or ``["A.B", "C"]``; raises ConfigError on a bad item."""
        items = spec.split(",") if isinstance(spec, str) else list(spec)
        names: set[tuple[str, str | None]] = set()
        for item in items:
            item = item.strip()
            if not item:
                continue
            pallet, _, name = item.partition(".")
            if not pallet.isidentifier() or (name and name != "*" and not name.isidentifier()):
                raise ConfigError(
                    f"bad event filter {item!r}: use Pallet.Name, e.g. SubtensorModule.WeightsSet"
                )
            names.add((pallet, None if name in ("", "*") else name))
        if not names:
            raise ConfigError("an event filter needs at least one Pallet.Name")
        return cls(frozenset(names))

    def matches(self, event: dict[str, Any]) -> bool:
        """True when the event's pallet (and name) is wanted."""
        pallet = event.get("pallet")
        return (pallet, event.get("name")) in self.names or (pallet, None) in self.names

    def apply(self, block: Block) -> Block:
        """The block with only the wanted events (unchanged when it has no events)."""
        if block.events is None:
            return block
        return dataclasses.replace(block, events=[e for e in block.events if self.matches(e)])


def filtered_callback(
    callback: Callable[[Block], Any],
    events: str | Iterable[str] | None,
    *,
    skip_empty: bool = False,
) -> Callable[[Block], Any]:
    """``callback`` seeing only the wanted events; with ``skip_empty`` a block with none of
    them is not passed at all (it still counts as handled, so the checkpoint moves on)."""
    if events is None:
        return callback
    wanted = EventFilter.parse(events)

    async def call(block: Block) -> None:
        narrowed = wanted.apply(block)
        if skip_empty and not narrowed.events:
            return
        result = callback(narrowed)
        if inspect.isawaitable(result):
            await result

    call.__name__ = str(getattr(callback, "__name__", "callback"))
    return call
