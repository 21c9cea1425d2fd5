"""Block contents for devnode: real subtensor bodies, events and metadata from a recorded fixture.

Given ``blocks.json`` of a recorded fixture (``tests/fixtures/subtensor/``: 40 blocks of the real
subtensor runtime, spec 218), block ``n`` of the devnode carries the body, ``System.Events`` and
``Timestamp.Now`` of recorded block ``n mod 40`` (so every block decodes with the real
metadata), and its header's ``extrinsics_root`` is the real ordered trie root of that body (not
chopsticks' mock). Served methods: ``chain_getBlock``, ``state_getRuntimeVersion``,
``state_getMetadata``, and ``state_getStorage`` for the two storage keys at a block.

Runtime upgrade on demand: :meth:`DevNodeContents.upgrade_at` ``(n)`` makes the state from block
``n`` on report spec version ``spec + 1`` (as after a ``set_code`` in block ``n``: block ``n + 1``
is the first of the new runtime). The new version serves the same metadata bytes (the fixture
has one runtime), so decoding on both sides works and the upgrade is visible only in the version.

The ``lie`` fault with ``mode="body"`` alters one byte of the last extrinsic of every body
served, so the body no longer matches its header.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from blockfeed.codec.trie import ordered_trie_root
from blockfeed.codec.twox import storage_prefix
from blockfeed.devnode.faults import FaultInjector
from blockfeed.devnode.view import ChainView
from blockfeed.errors import ConfigError

EVENTS_KEY = storage_prefix("System", "Events")
TIMESTAMP_KEY = storage_prefix("Timestamp", "Now")
Handler = Callable[[ChainView, list[Any]], Any]


def _bytes(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


class DevNodeContents:
    """Bodies, events, timestamps and runtime versions per block number."""

    def __init__(self, fixture: dict[str, Any]) -> None:
        try:
            blocks = fixture["blocks"]
            self._bodies = [tuple(_bytes(x) for x in b["extrinsics"]) for b in blocks]
            self._events = [_bytes(b["events_raw"]) for b in blocks]
            self._timestamps = [_bytes(b["timestamp_raw"]) for b in blocks]
            self.runtime_version = dict(fixture["runtime_version"])
            self.base_spec = int(self.runtime_version["specVersion"])
            self._metadata = fixture["metadata"][str(self.base_spec)]
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a blockfeed subtensor fixture (blocks.json): {exc}") from None
        if not self._bodies:
            raise ConfigError("the contents fixture has no blocks")
        self._upgrade_at: int | None = None
        self.root_of = lru_cache(maxsize=None)(self._root_of_slot)

    @classmethod
    def load(cls, path: str | Path) -> DevNodeContents:
        """From a ``blocks.json`` file; ConfigError when it cannot be read."""
        try:
            return cls(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read the contents fixture {path}: {exc}") from None

    def upgrade_at(self, number: int | None) -> None:
        """From block ``number`` on (None: never) the state reports spec version + 1."""
        self._upgrade_at = number

    def spec_at(self, number: int) -> int:
        """The spec version of the state after block ``number``."""
        upgraded = self._upgrade_at is not None and number >= self._upgrade_at
        return self.base_spec + (1 if upgraded else 0)

    def slot(self, number: int) -> int:
        """Which recorded block block ``number`` copies."""
        return number % len(self._bodies)

    def body(self, number: int) -> tuple[bytes, ...]:
        """The encoded extrinsics of block ``number``."""
        return self._bodies[self.slot(number)]

    def extrinsics_root(self, number: int) -> bytes:
        """The real ordered trie root of block ``number``'s body (what its header carries)."""
        return self.root_of(self.slot(number))

    def _root_of_slot(self, slot: int) -> bytes:
        return ordered_trie_root(self._bodies[slot])

    def handlers(
        self,
        at_number: Callable[[ChainView, Any], int],
        faults: FaultInjector,
        storage: Handler,
    ) -> dict[str, Handler]:
        """JSON-RPC handlers to add to the node (``storage``: the node's own, for other keys)."""

        def get_block(view: ChainView, args: list[Any]) -> Any:
            number = at_number(view, args[0] if args else None)
            body = list(self.body(number))
            if self._body_lie(view, faults) and body:
                last = body[-1]
                body[-1] = last[:-1] + bytes([last[-1] ^ 0x01])
            return {"block": {"header": view.header(number).to_json(),
                              "extrinsics": ["0x" + x.hex() for x in body]},
                    "justifications": None}

        def runtime_version(view: ChainView, args: list[Any]) -> Any:
            number = at_number(view, args[0] if args else None)
            return {**self.runtime_version, "specVersion": self.spec_at(number)}

        def metadata(view: ChainView, args: list[Any]) -> Any:
            at_number(view, args[0] if args else None)
            return self._metadata

        def get_storage(view: ChainView, args: list[Any]) -> Any:
            key, at = args  # bound to ("key", "hash") by the node
            if isinstance(key, str):
                try:
                    raw_key = _bytes(key)
                except ValueError:
                    raw_key = b""
                if raw_key in (EVENTS_KEY, TIMESTAMP_KEY):
                    slot = self.slot(at_number(view, at))
                    value = self._events[slot] if raw_key == EVENTS_KEY else self._timestamps[slot]
                    return "0x" + value.hex()
            return storage(view, args)

        return {
            "chain_getBlock": get_block,
            "state_getRuntimeVersion": runtime_version,
            "state_getMetadata": metadata,
            "state_getStorage": get_storage,
            "state_getStorageAt": get_storage,
        }

    @staticmethod
    def _body_lie(view: ChainView, faults: FaultInjector) -> bool:
        return any(
            f.options.get("mode") == "body" and f.options.get("on") in (view.transport, "both")
            for f in faults.active("lie")
        )

