"""The recorded subtensor fixture as Blocks, and a scripted node (an RpcCaller) serving it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from blockfeed.codec import block_hash, header_from_json
from blockfeed.contents import EVENTS_KEY, TIMESTAMP_KEY
from blockfeed.errors import RpcServerError, RpcTransportError
from blockfeed.types import Block, Source

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "subtensor"


@cache
def raw_blocks() -> dict[str, Any]:
    """blocks.json as recorded (read once per test session)."""
    return json.loads((FIXTURE / "blocks.json").read_text())


@cache
def expected() -> dict[str, Any]:
    """expected.json: the independent decoding."""
    return json.loads((FIXTURE / "expected.json").read_text())


def metadata_bytes() -> bytes:
    """The fixture runtime's metadata (spec 218)."""
    return bytes.fromhex(raw_blocks()["metadata"]["218"][2:])


def fixture_blocks() -> list[Block]:
    """The 40 recorded blocks as header-only Blocks, hashes checked."""
    out = []
    for raw in raw_blocks()["blocks"]:
        header = header_from_json(raw["header"])
        assert block_hash(header) == raw["hash"]
        out.append(Block(number=header.number, hash=raw["hash"],
                         parent_hash="0x" + header.parent_hash.hex(),
                         source=Source.BACKFILL, received_at=0.0, header=header))
    return out


class FixtureNode:
    """Answers the contents requests from the fixture; each hook below scripts one fault."""

    def __init__(self) -> None:
        data = raw_blocks()
        self.by_hash = {b["hash"]: b for b in data["blocks"]}
        self.parent_of = {b["header"]["parentHash"]: b for b in data["blocks"]}
        self.runtime_version = dict(data["runtime_version"])
        self.metadata = {218: data["metadata"]["218"]}
        self.spec_at_parent: dict[str, int] = {}
        """parent hash -> spec version answered there (default: the recorded 218)."""
        self.body_override: dict[str, list[str]] = {}
        self.events_override: dict[str, str] = {}
        self.fail_with: Exception | None = None
        self.calls: Counter[str] = Counter()

    async def call(self, method: str, params: Any = None, *, timeout_s: float | None = None) -> Any:
        self.calls[method] += 1
        if self.fail_with is not None:
            raise self.fail_with
        result = self._answer(method, list(params or []))
        if isinstance(result, RpcServerError):
            raise result
        return result

    async def batch(self, calls: Sequence[Any], *, timeout_s: float | None = None) -> list[Any]:
        self.calls["batch"] += 1
        if self.fail_with is not None:
            raise self.fail_with
        out = []
        for method, params in calls:
            self.calls[method] += 1
            out.append(self._answer(method, list(params or [])))
        return out

    def _spec(self, at: str) -> int:
        return self.spec_at_parent.get(at, 218)

    def _answer(self, method: str, params: list[Any]) -> Any:
        if method == "state_getRuntimeVersion":
            return {**self.runtime_version, "specVersion": self._spec(params[0])}
        if method == "state_getMetadata":
            return self.metadata[self._spec(params[0])]
        block = self.by_hash.get(params[-1])
        if block is None:
            return RpcServerError(4003, "unknown block")
        if method == "state_getStorage":
            if params[0] == TIMESTAMP_KEY:
                return block["timestamp_raw"]
            if params[0] == EVENTS_KEY:
                return self.events_override.get(block["hash"], block["events_raw"])
            return None
        if method == "chain_getBlock":
            extrinsics = self.body_override.get(block["hash"], block["extrinsics"])
            return {"block": {"header": block["header"], "extrinsics": extrinsics},
                    "justifications": None}
        return RpcServerError(-32601, f"method {method} not found")


def transport_error() -> RpcTransportError:
    """What a refused connection looks like to the fetcher."""
    return RpcTransportError("connection refused")
