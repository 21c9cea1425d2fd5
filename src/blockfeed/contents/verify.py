"""What is checked before contents are delivered.

- **Extrinsics** (level ``full``): the body must hash to the verified header's
  ``extrinsics_root``: the ordered trie root (state version 0, else 1), or the chopsticks mock
  root ``blake2b-256(concat(body))`` (recognised, logged once per process, still binding).
  Anything else raises :class:`VerificationError`: a lying node cannot alter, add, drop or
  reorder extrinsics, and such a body is never delivered.
- **Events** cannot be bound to the header without a state proof (a stretch goal). They are
  read at the verified block hash and must decode completely with that block's own runtime
  metadata; with the body at hand (level ``full``), every extrinsic must have exactly one
  ``System.ExtrinsicSuccess`` / ``ExtrinsicFailed`` event and no event may name an extrinsic
  the body lacks. So a node can lie about events only with a well-formed, consistent story.
- **Timestamp / spec version** are read at the verified hash; not proved either.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from blockfeed.codec.trie import chopsticks_mock_root, ordered_trie_root
from blockfeed.errors import VerificationError

logger = logging.getLogger("blockfeed.contents")

_logged_chopsticks = False


def body_root_kind(extrinsics: Sequence[bytes], extrinsics_root: bytes) -> str:
    """``"trie"`` or ``"chopsticks"`` when the body matches the root; raises otherwise."""
    global _logged_chopsticks
    for version in (0, 1):
        if ordered_trie_root(extrinsics, state_version=version) == extrinsics_root:
            return "trie"
    if chopsticks_mock_root(extrinsics) == extrinsics_root:
        if not _logged_chopsticks:
            _logged_chopsticks = True
            logger.warning(
                "extrinsics roots follow chopsticks' mock convention (blake2-256 of the "
                "concatenated body, not a trie root); bodies are still checked against it"
            )
        return "chopsticks"
    raise VerificationError(
        f"the block body ({len(extrinsics)} extrinsics) does not match the header's "
        f"extrinsics_root 0x{extrinsics_root.hex()}"
    )


def check_events_against_body(events: Sequence[dict[str, Any]], extrinsic_count: int) -> None:
    """Each extrinsic has exactly one outcome event; no event names a missing extrinsic."""
    outcomes = [0] * extrinsic_count
    for event in events:
        index = event.get("extrinsic_index")
        if event.get("phase") != "ApplyExtrinsic" or index is None:
            continue
        if not 0 <= index < extrinsic_count:
            raise VerificationError(
                f"event {event['index']} names extrinsic {index}; the body has {extrinsic_count}"
            )
        if event["pallet"] == "System" and event["name"] in ("ExtrinsicSuccess", "ExtrinsicFailed"):
            outcomes[index] += 1
    bad = [i for i, n in enumerate(outcomes) if n != 1]
    if bad:
        raise VerificationError(
            f"events do not match the body: extrinsic {bad[0]} has {outcomes[bad[0]]} outcome "
            "events (want exactly 1)"
        )
