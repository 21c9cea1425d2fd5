"""JSON-RPC 2.0 framing: request ids, requests and batches out; strict parsing of what comes back.

Everything a node sends passes through :func:`decode_json` and :func:`parse_frame` (or
:func:`parse_response`). A frame that is not exactly a JSON-RPC response or notification raises
:class:`MalformedFrame`; a well-formed error object becomes :class:`RpcServerError`. The
transports (``http.py``, ``ws.py``) only move bytes; this module decides what they mean.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from blockfeed.errors import MalformedFrame, RpcServerError

JSONRPC_VERSION = "2.0"

Params = list[Any] | None
"""Positional params (Substrate RPC only uses positional params); ``None`` sends none."""
Call = tuple[str, Params]
"""One request of a batch: ``(method, params)``."""
RequestId = int | str


class RequestIds:
    """Hands out request ids unique within one connection or client (1, 2, 3, ...)."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def next(self) -> int:
        """The next unused id."""
        return next(self._counter)


def encode_request(request_id: RequestId, method: str, params: Params = None) -> dict[str, Any]:
    """One request object; ``params`` is omitted when ``None`` (a node then uses its default)."""
    request: dict[str, Any] = {"jsonrpc": JSONRPC_VERSION, "id": request_id, "method": method}
    if params is not None:
        request["params"] = list(params)
    return request


def dumps(payload: Any) -> str:
    """Compact JSON text for the wire."""
    return json.dumps(payload, separators=(",", ":"))


def decode_json(data: str | bytes) -> Any:
    """Parse wire text; anything that is not JSON (or is absurdly nested) is a MalformedFrame."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError, bad UTF-8 and over-long integer literals.
        raise MalformedFrame(f"frame is not valid JSON ({type(exc).__name__})") from None


@dataclass(frozen=True, slots=True)
class Response:
    """A validated response: exactly one of ``result`` / ``error`` is meaningful."""

    id: RequestId | None
    """``None`` only for an error the node could not tie to a request (e.g. a parse error)."""
    result: Any = None
    error: RpcServerError | None = None

    def unwrap(self) -> Any:
        """The result, or raise the node's error."""
        if self.error is not None:
            raise self.error
        return self.result


@dataclass(frozen=True, slots=True)
class Notification:
    """A subscription notification: ``params.result`` for subscription ``params.subscription``."""

    method: str
    subscription: str
    """Normalised to ``str`` (nodes use strings; some older ones use integers)."""
    result: Any


def _check_version(obj: dict[str, Any]) -> None:
    if obj.get("jsonrpc") != JSONRPC_VERSION:
        raise MalformedFrame('frame must have "jsonrpc": "2.0"')


def _is_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def parse_error_object(obj: Any) -> RpcServerError:
    """Validate a JSON-RPC error object: an int ``code`` and a str ``message`` are required."""
    if not isinstance(obj, dict):
        raise MalformedFrame("error must be a JSON object")
    code = obj.get("code")
    message = obj.get("message")
    if not isinstance(code, int) or isinstance(code, bool):
        raise MalformedFrame("error.code must be an integer")
    if not isinstance(message, str):
        raise MalformedFrame("error.message must be a string")
    return RpcServerError(code, message, obj.get("data"))


def parse_response(obj: Any) -> Response:
    """Validate one response object (result or error, never both, never neither)."""
    if not isinstance(obj, dict):
        raise MalformedFrame("response must be a JSON object")
    _check_version(obj)
    if "id" not in obj:
        raise MalformedFrame("response has no id")
    response_id = obj["id"]
    has_result = "result" in obj
    has_error = "error" in obj
    if has_result == has_error:
        raise MalformedFrame("response must have exactly one of result / error")
    if response_id is None:
        if not has_error:
            raise MalformedFrame("a result response must carry the request id")
        return Response(id=None, error=parse_error_object(obj["error"]))
    if not _is_id(response_id):
        raise MalformedFrame("response id must be a number or a string")
    if has_error:
        return Response(id=response_id, error=parse_error_object(obj["error"]))
    return Response(id=response_id, result=obj["result"])


def parse_notification(obj: dict[str, Any]) -> Notification:
    """Validate a subscription notification (a request-shaped frame without an id)."""
    _check_version(obj)
    method = obj.get("method")
    params = obj.get("params")
    if not isinstance(method, str):
        raise MalformedFrame("notification method must be a string")
    if not isinstance(params, dict) or "result" not in params:
        raise MalformedFrame("notification params must be an object with a result")
    subscription = params.get("subscription")
    if not _is_id(subscription):
        raise MalformedFrame("notification subscription id must be a string or a number")
    return Notification(method=method, subscription=str(subscription), result=params["result"])


def parse_frame(obj: Any) -> list[Response | Notification]:
    """Classify one decoded WebSocket frame: a response, a notification, or a batch of responses.

    A batch with a bad item is rejected whole (the caller cannot tell which request it answers).
    """
    if isinstance(obj, list):
        if not obj:
            raise MalformedFrame("empty batch response")
        return [parse_response(item) for item in obj]
    if not isinstance(obj, dict):
        raise MalformedFrame("frame must be a JSON object or array")
    if "method" in obj and "id" not in obj:
        return [parse_notification(obj)]
    return [parse_response(obj)]


def parse_subscription_id(result: Any) -> str:
    """A subscribe call's result: a subscription id (string, or integer on older nodes)."""
    if not _is_id(result):
        raise MalformedFrame("subscription id must be a string or a number")
    return str(result)


def match_batch(responses: Any, request_ids: Sequence[RequestId]) -> list[Any | RpcServerError]:
    """Pair a batch reply with its requests by id, in request order.

    Per-item errors are returned in place (not raised). A reply that is a single error object
    (a node refusing the whole batch) raises that error; missing, unknown or repeated ids mean
    the reply cannot be trusted and raise :class:`MalformedFrame`.
    """
    if isinstance(responses, dict):
        single = parse_response(responses)
        if single.error is not None:
            raise single.error
        raise MalformedFrame("batch answered with a single result")
    if not isinstance(responses, list):
        raise MalformedFrame("batch response must be a JSON array")
    by_id: dict[RequestId, Response] = {}
    for item in responses:
        response = parse_response(item)
        if response.id is None:
            # An error not tied to any request: the node rejected (part of) the batch.
            assert response.error is not None
            raise response.error
        if response.id in by_id:
            raise MalformedFrame("batch response repeats an id")
        by_id[response.id] = response
    if len(by_id) != len(request_ids) or any(rid not in by_id for rid in request_ids):
        raise MalformedFrame("batch response ids do not match the requests")
    out: list[Any | RpcServerError] = []
    for rid in request_ids:
        response = by_id[rid]
        out.append(response.error if response.error is not None else response.result)
    return out
