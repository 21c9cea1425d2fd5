"""A block's contents as one JSON object, for the store window, the outbox and the sinks.

The object has the keys ``timestamp``, ``spec_version``, ``events`` and ``extrinsics`` (the
last two null below their level). A block without contents (level ``header``) has no object at
all, so header-only rows and messages stay as they were.

Two renderings: ``exact=True`` keeps every integer exact (Python reads big integers back as
they were; the store uses it, so a replayed block equals the delivered one), ``exact=False``
applies :func:`~blockfeed.contents.decode.json_safe` (integers beyond 2^53 as strings) for
readers in other languages (Redis, PostgreSQL, NATS, webhooks), like ``--json`` and SSE.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from blockfeed.contents.decode import json_safe
from blockfeed.types import Block

CONTENTS_KEYS = ("timestamp", "spec_version", "events", "extrinsics")


def contents_of(block: Block, *, exact: bool = False) -> dict[str, Any] | None:
    """The block's contents as a JSON-ready dict, or None when it carries none."""
    if block.spec_version is None and block.timestamp is None:
        return None
    out: dict[str, Any] = {
        "timestamp": block.timestamp,
        "spec_version": block.spec_version,
        "events": block.events,
        "extrinsics": block.extrinsics,
    }
    return out if exact else json_safe(out)


def contents_json(block: Block, *, exact: bool = False) -> str | None:
    """Compact JSON text of :func:`contents_of`, or None when the block carries none."""
    contents = contents_of(block, exact=exact)
    if contents is None:
        return None
    return json.dumps(contents, separators=(",", ":"), default=_fallback)


def with_contents(block: Block, raw: str | bytes | dict[str, Any] | None) -> Block:
    """``block`` carrying the contents in ``raw`` (JSON text, or its parsed object).

    None leaves the block as it is. Anything that is not a contents object raises ValueError
    naming what is wrong; callers turn it into their own error (StoreError, MalformedFrame).
    """
    if raw is None:
        return block
    obj = json.loads(raw) if isinstance(raw, str | bytes) else raw
    if not isinstance(obj, dict):
        raise ValueError(f"contents must be a JSON object, got {type(obj).__name__}")
    unknown = set(obj) - set(CONTENTS_KEYS)
    if unknown:
        raise ValueError(f"contents has unknown keys: {', '.join(sorted(map(str, unknown)))}")
    timestamp = _int_or_none(obj.get("timestamp"), "timestamp")
    spec_version = _int_or_none(obj.get("spec_version"), "spec_version")
    events = _records_or_none(obj.get("events"), "events")
    extrinsics = _records_or_none(obj.get("extrinsics"), "extrinsics")
    return dataclasses.replace(
        block, timestamp=timestamp, spec_version=spec_version, events=events,
        extrinsics=extrinsics,
    )


def _int_or_none(value: Any, key: str) -> int | None:
    """An integer field, which a safe rendering may have written as decimal text."""
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"contents {key} must be a non-negative integer, got {value!r}")
    return value


def _records_or_none(value: Any, key: str) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ValueError(f"contents {key} must be a list of objects")
    return value


def _fallback(value: Any) -> Any:
    """Values json cannot write by itself (bytes, tuples in odd places): as json_safe does."""
    return json_safe(value) if isinstance(value, bytes | bytearray) else str(value)
