"""JSON-RPC 2.0 framing exactly as a Substrate (jsonrpsee) node answers, never raising.

``handle_payload`` turns one HTTP body or WebSocket text frame (a request or a batch) into the
response text, or None when nothing must be answered (notifications only). Errors use the
standard codes: -32700 parse error, -32600 invalid request, -32601 method not found, -32602
invalid params, -32603 internal error.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
MAX_BATCH_LENGTH = 1000

_log = logging.getLogger("blockfeed.devnode")

Params = list[Any] | dict[str, Any]
MethodCall = Callable[[str, Params], Any]
"""``call(method, params) -> result``; raises :class:`RpcFault` or ``MethodNotFound``."""


class RpcFault(Exception):
    """A JSON-RPC error object to send back (code, message, optional data)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def method_not_found() -> RpcFault:
    return RpcFault(METHOD_NOT_FOUND, "Method not found")


def invalid_params(detail: str) -> RpcFault:
    return RpcFault(INVALID_PARAMS, "Invalid params", detail)


def bind_params(params: Params, names: Sequence[str]) -> list[Any]:
    """Positional or named params -> a list in ``names`` order (missing ones are None)."""
    if isinstance(params, list):
        if len(params) > len(names):
            raise invalid_params(f"expected at most {len(names)} parameters, got {len(params)}")
        return list(params) + [None] * (len(names) - len(params))
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise invalid_params(f"unknown parameter(s): {', '.join(unknown)}")
    return [params.get(name) for name in names]


def encode_result(request_id: Any, result: Any) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}, separators=(",", ":"))


def encode_error(request_id: Any, code: int, message: str, data: Any = None) -> str:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}, separators=(",", ":"))


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, str | int) and not isinstance(value, bool))


INVALID_METHOD = "(invalid)"


def request_methods(raw: bytes | str) -> list[str]:
    """The method of each request in one payload (``(invalid)`` for what is not a request).

    Used to count what a client sent before any fault decides how (or whether) to answer.
    """
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return [INVALID_METHOD]
    items = message[:MAX_BATCH_LENGTH] if isinstance(message, list) else [message]
    return [
        item["method"]
        if isinstance(item, dict) and isinstance(item.get("method"), str)
        else INVALID_METHOD
        for item in items
    ] or [INVALID_METHOD]


def handle_payload(raw: bytes | str, call: MethodCall) -> str | None:
    """Answer one JSON-RPC payload (single request or batch); None if nothing to send."""
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return encode_error(None, PARSE_ERROR, "Parse error")
    if isinstance(message, list):
        if not message:
            return encode_error(None, INVALID_REQUEST, "Invalid request")
        if len(message) > MAX_BATCH_LENGTH:
            return encode_error(
                None, INVALID_REQUEST, f"Batch too large (max {MAX_BATCH_LENGTH} requests)"
            )
        answers = [answer for answer in (_handle_one(item, call) for item in message) if answer]
        return "[" + ",".join(answers) + "]" if answers else None
    return _handle_one(message, call)


def _handle_one(message: Any, call: MethodCall) -> str | None:
    if not isinstance(message, dict):
        return encode_error(None, INVALID_REQUEST, "Invalid request")
    is_notification = "id" not in message
    request_id = message.get("id")
    if not _valid_id(request_id):
        return encode_error(None, INVALID_REQUEST, "Invalid request")
    method = message.get("method")
    if message.get("jsonrpc") != "2.0" or not isinstance(method, str):
        return encode_error(request_id, INVALID_REQUEST, "Invalid request")
    params = message.get("params", [])
    if params is None:
        params = []
    try:
        if not isinstance(params, list | dict):
            raise invalid_params("params must be an array or an object")
        result = call(method, params)
    except RpcFault as fault:
        return (
            None
            if is_notification
            else encode_error(request_id, fault.code, fault.message, fault.data)
        )
    except Exception:
        _log.exception("devnode: internal error in %s", method[:100])
        if is_notification:
            return None
        return encode_error(request_id, INTERNAL_ERROR, "Internal error")
    return None if is_notification else encode_result(request_id, result)
