"""JSON-RPC framing: strict response/notification parsing and batch matching, no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from blockfeed.errors import MalformedFrame, RpcServerError
from blockfeed.rpc import jsonrpc


def test_request_ids_are_unique_and_increasing() -> None:
    """Each connection hands out 1, 2, 3, ... so responses can be matched."""
    ids = jsonrpc.RequestIds()
    assert [ids.next() for _ in range(3)] == [1, 2, 3]


def test_encode_request_omits_missing_params() -> None:
    """None params are left out; given params are sent as a list."""
    assert jsonrpc.encode_request(7, "m") == {"jsonrpc": "2.0", "id": 7, "method": "m"}
    assert jsonrpc.encode_request(7, "m", [1])["params"] == [1]


def test_result_response_parses() -> None:
    """A result response yields its id and result, including a null result."""
    response = jsonrpc.parse_response({"jsonrpc": "2.0", "id": 3, "result": None})
    assert (response.id, response.result, response.error) == (3, None, None)
    assert response.unwrap() is None


def test_error_response_becomes_rpc_server_error() -> None:
    """An error object keeps code, message and data, and unwrap raises it."""
    response = jsonrpc.parse_response(
        {"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "nope", "data": [1]}}
    )
    assert response.error is not None
    assert (response.error.code, response.error.rpc_message, response.error.data) == (
        -32601,
        "nope",
        [1],
    )
    with pytest.raises(RpcServerError):
        response.unwrap()


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ([], "JSON object"),
        ("x", "JSON object"),
        ({"id": 1, "result": 1}, "2.0"),
        ({"jsonrpc": "1.0", "id": 1, "result": 1}, "2.0"),
        ({"jsonrpc": "2.0", "result": 1}, "no id"),
        ({"jsonrpc": "2.0", "id": 1}, "exactly one"),
        ({"jsonrpc": "2.0", "id": 1, "result": 1, "error": {"code": 1, "message": ""}}, "exactly"),
        ({"jsonrpc": "2.0", "id": True, "result": 1}, "id must be"),
        ({"jsonrpc": "2.0", "id": [1], "result": 1}, "id must be"),
        ({"jsonrpc": "2.0", "id": None, "result": 1}, "request id"),
        ({"jsonrpc": "2.0", "id": 1, "error": "boom"}, "error must be"),
        ({"jsonrpc": "2.0", "id": 1, "error": {"code": "1", "message": "m"}}, "code"),
        ({"jsonrpc": "2.0", "id": 1, "error": {"code": True, "message": "m"}}, "code"),
        ({"jsonrpc": "2.0", "id": 1, "error": {"code": 1}}, "message"),
        ({"jsonrpc": "2.0", "id": 1, "error": {"code": 1, "message": 5}}, "message"),
    ],
)
def test_malformed_responses_are_rejected(frame: Any, reason: str) -> None:
    """Every shape that is not exactly a JSON-RPC response raises MalformedFrame."""
    with pytest.raises(MalformedFrame, match=reason):
        jsonrpc.parse_response(frame)


def test_error_without_id_is_accepted_as_unmatched() -> None:
    """A node that cannot parse a request answers an error with id null; it still parses."""
    response = jsonrpc.parse_response(
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}}
    )
    assert response.id is None and response.error is not None


def test_notification_parses_and_normalises_subscription_id() -> None:
    """Integer subscription ids (older nodes) are normalised to strings."""
    items = jsonrpc.parse_frame(
        {"jsonrpc": "2.0", "method": "m", "params": {"subscription": 5, "result": {"a": 1}}}
    )
    assert items == [jsonrpc.Notification(method="m", subscription="5", result={"a": 1})]


@pytest.mark.parametrize(
    "frame",
    [
        {"jsonrpc": "2.0", "method": "m", "params": [1]},
        {"jsonrpc": "2.0", "method": "m", "params": {"subscription": "s"}},
        {"jsonrpc": "2.0", "method": "m", "params": {"result": 1}},
        {"jsonrpc": "2.0", "method": "m", "params": {"subscription": None, "result": 1}},
        {"jsonrpc": "2.0", "method": 3, "params": {"subscription": "s", "result": 1}},
        {"method": "m", "params": {"subscription": "s", "result": 1}},
        [],
        7,
    ],
)
def test_malformed_notifications_are_rejected(frame: Any) -> None:
    """Notifications missing subscription/result or with wrong types raise MalformedFrame."""
    with pytest.raises(MalformedFrame):
        jsonrpc.parse_frame(frame)


def test_decode_json_rejects_garbage_and_deep_nesting() -> None:
    """Bad JSON, bad UTF-8 and pathological nesting are MalformedFrame, not a crash."""
    for data in ("{not json", b"\xff\xfe", "[" * 100_000 + "]" * 100_000):
        with pytest.raises(MalformedFrame):
            jsonrpc.decode_json(data)
    assert jsonrpc.decode_json(b'{"a": 1}') == {"a": 1}


def _ok(rid: int, value: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "result": value}


def test_match_batch_restores_request_order_and_keeps_errors_in_place() -> None:
    """Responses are paired by id (any order); a per-item error is returned, not raised."""
    err = {"jsonrpc": "2.0", "id": 2, "error": {"code": -1, "message": "bad"}}
    out = jsonrpc.match_batch([_ok(3, "c"), err, _ok(1, "a")], [1, 2, 3])
    assert out[0] == "a" and out[2] == "c"
    assert isinstance(out[1], RpcServerError) and out[1].code == -1


@pytest.mark.parametrize(
    "responses",
    [
        [_ok(1, "a")],
        [_ok(1, "a"), _ok(1, "b")],
        [_ok(1, "a"), _ok(9, "b")],
        [_ok(1, "a"), _ok(2, "b"), _ok(3, "c")],
        {"jsonrpc": "2.0", "id": 1, "result": "a"},
        "nope",
    ],
)
def test_match_batch_rejects_mismatched_ids(responses: Any) -> None:
    """Missing, repeated, unknown or extra ids make the whole batch untrustworthy."""
    with pytest.raises(MalformedFrame):
        jsonrpc.match_batch(responses, [1, 2])


def test_match_batch_raises_a_whole_batch_refusal() -> None:
    """A single error object (e.g. batch too large) is raised as RpcServerError."""
    refusal = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "too big"}}
    with pytest.raises(RpcServerError, match="too big"):
        jsonrpc.match_batch(refusal, [1, 2])
    with pytest.raises(RpcServerError, match="too big"):
        jsonrpc.match_batch([refusal], [1, 2])
