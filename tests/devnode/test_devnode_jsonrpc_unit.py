"""JSON-RPC framing: every error code, batches and notifications, never an exception."""

from __future__ import annotations

import json
from typing import Any

import pytest

from blockfeed.devnode.jsonrpc import RpcFault, handle_payload, invalid_params, method_not_found


def _call(method: str, params: Any) -> Any:
    if method == "echo":
        return params
    if method == "boom":
        raise RuntimeError("bug")
    if method == "bad":
        raise invalid_params("nope")
    if method == "custom":
        raise RpcFault(4003, "Client error: x")
    raise method_not_found()


def _answer(raw: str) -> Any:
    text = handle_payload(raw, _call)
    assert text is not None
    return json.loads(text)


@pytest.mark.parametrize(
    ("raw", "code", "answer_id"),
    [
        ("{not json", -32700, None),
        ("[]", -32600, None),
        ("42", -32600, None),
        ('{"jsonrpc":"1.0","id":3,"method":"echo"}', -32600, 3),
        ('{"jsonrpc":"2.0","id":4,"method":5}', -32600, 4),
        ('{"jsonrpc":"2.0","id":[1],"method":"echo"}', -32600, None),
        ('{"jsonrpc":"2.0","id":5,"method":"nope"}', -32601, 5),
        ('{"jsonrpc":"2.0","id":6,"method":"bad"}', -32602, 6),
        ('{"jsonrpc":"2.0","id":7,"method":"echo","params":"x"}', -32602, 7),
        ('{"jsonrpc":"2.0","id":8,"method":"boom"}', -32603, 8),
        ('{"jsonrpc":"2.0","id":"s","method":"custom"}', 4003, "s"),
    ],
)
def test_error_codes(raw: str, code: int, answer_id: Any) -> None:
    """Each kind of bad request gets the node's error code and the right id."""
    answer = _answer(raw)
    assert answer["jsonrpc"] == "2.0"
    assert answer["error"]["code"] == code
    assert answer["id"] == answer_id


def test_batches_answer_in_order_and_skip_notifications() -> None:
    """A batch answers each request (errors inline), notifications get nothing."""
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "echo", "params": [1]},
        {"jsonrpc": "2.0", "method": "echo", "params": [2]},
        {"jsonrpc": "2.0", "id": 2, "method": "nope"},
        "junk",
    ]
    answers = _answer(json.dumps(batch))
    assert [a.get("id") for a in answers] == [1, 2, None]
    assert answers[0]["result"] == [1]
    assert answers[1]["error"]["code"] == -32601
    assert answers[2]["error"]["code"] == -32600
    assert handle_payload('[{"jsonrpc":"2.0","method":"echo"}]', _call) is None
    assert handle_payload('{"jsonrpc":"2.0","method":"boom"}', _call) is None


def test_invalid_utf8_is_a_parse_error() -> None:
    """Bytes that are not UTF-8 are a parse error, not a crash."""
    assert json.loads(handle_payload(b'{"a":"\xff"}', _call) or "")["error"]["code"] == -32700
