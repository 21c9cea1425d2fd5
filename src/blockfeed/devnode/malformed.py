"""Bad frames for the ``malformed`` fault (F8), each built from the real message it accompanies.

So a wrong-typed answer carries the real request id (the client takes it for the answer) and a
notification with a missing field names the real subscription: the damage is where a client
would actually trip over it.
"""

from __future__ import annotations

import json
import random
from typing import Any

GARBAGE_SAMPLES = (
    "<html><body><h1>502 Bad Gateway</h1></body></html>",
    "\x00\x01\x02garbage\xff",
    "Internal Server Error",
    "{{{{",
    "null null null",
)


def _first(message: Any) -> Any:
    """The single message, or the first element of a batch."""
    if isinstance(message, list) and message:
        return message[0]
    return message


def _wrong_type(value: Any) -> Any:
    if isinstance(value, str):
        return 12345
    if isinstance(value, list):
        return "not-a-list"
    if isinstance(value, dict):
        return [1, 2, 3]
    if value is None:
        return {"unexpected": True}
    return "0xzz"


def _damage(message: dict[str, Any], kind: str) -> dict[str, Any]:
    damaged = json.loads(json.dumps(message))
    params = damaged.get("params")
    if isinstance(params, dict) and isinstance(params.get("result"), dict):
        header = params["result"]
        if kind == "wrong_types":
            header["parentHash"] = 12345
            header["number"] = ["0x1"]
        else:
            header.pop("stateRoot", None)
        return damaged
    if kind == "wrong_types":
        if "result" in damaged:
            damaged["result"] = _wrong_type(damaged["result"])
        else:
            damaged["error"] = "an error that is not an object"
    else:
        damaged.pop("result", None)
        damaged.pop("error", None)
    return damaged


def malformed_text(
    kind: str, real: str, rng: random.Random, *, big_bytes: int, unknown_id: str
) -> str:
    """One malformed frame/body of ``kind`` modelled on ``real`` (a JSON text we would send)."""
    if kind == "garbage":
        return rng.choice(GARBAGE_SAMPLES)
    if kind == "invalid_json":
        cut = max(1, len(real) // 2)
        return real[:cut]
    try:
        parsed = json.loads(real)
    except ValueError:
        parsed = {"jsonrpc": "2.0", "id": None, "result": None}
    message = _first(parsed)
    if not isinstance(message, dict):
        message = {"jsonrpc": "2.0", "id": None, "result": message}
    if kind in ("wrong_types", "missing_fields"):
        return json.dumps(_damage(message, kind), separators=(",", ":"))
    if kind == "unknown_subscription":
        params = message.get("params")
        if isinstance(params, dict):
            return json.dumps(
                {**message, "params": {**params, "subscription": unknown_id}},
                separators=(",", ":"),
            )
        return json.dumps(
            {
                "jsonrpc": "2.0",
                "method": "chain_finalizedHead",
                "params": {"subscription": unknown_id, "result": None},
            },
            separators=(",", ":"),
        )
    # oversized: a valid message padded far beyond any sane frame limit
    padded = dict(message)
    padded["padding"] = "x" * big_bytes
    return json.dumps(padded, separators=(",", ":"))
