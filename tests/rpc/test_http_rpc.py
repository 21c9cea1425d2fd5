"""HttpRpc: calls and batches over httpx, error translation (F6), size caps and redaction."""

from __future__ import annotations

import asyncio
import json
import traceback
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from blockfeed.errors import ConfigError, MalformedFrame, RpcServerError, RpcTransportError
from blockfeed.rpc import HttpRpc

URL = "http://127.0.0.1:9933"
SECRET = "k3yAbCdEfGhIjKlMnOpQrStUv"
SECRET_URL = f"https://user:{SECRET}@rpc.example.com/ws/{SECRET}?apikey={SECRET}"


def _rpc(handler: Callable[[httpx.Request], Any], url: str = URL, **kwargs: Any) -> HttpRpc:
    return HttpRpc(url, transport=httpx.MockTransport(handler), **kwargs)


def _echo_results(request: httpx.Request) -> httpx.Response:
    """Answer every request (or batch) with its own method name and params."""
    body = json.loads(request.content)
    if isinstance(body, list):
        return httpx.Response(
            200,
            json=[
                {"jsonrpc": "2.0", "id": r["id"], "result": [r["method"], r.get("params")]}
                for r in reversed(body)
            ],
        )
    return httpx.Response(
        200,
        json={"jsonrpc": "2.0", "id": body["id"], "result": [body["method"], body.get("params")]},
    )


async def test_call_sends_jsonrpc_and_returns_result() -> None:
    """A call is one JSON-RPC 2.0 POST and returns the node's result."""
    seen: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.headers["content-type"], json.loads(request.content)))
        return _echo_results(request)

    async with _rpc(handler) as rpc:
        assert await rpc.call("chain_getHeader", ["0x01"]) == ["chain_getHeader", ["0x01"]]
        assert await rpc.call("chain_getFinalizedHead") == ["chain_getFinalizedHead", None]
    method, content_type, body = seen[0]
    assert (method, content_type) == ("POST", "application/json")
    assert body["jsonrpc"] == "2.0" and body["method"] == "chain_getHeader"
    assert "params" not in seen[1][2]


async def test_batch_is_one_post_and_keeps_request_order() -> None:
    """A batch is a single POST with a JSON array; reversed replies are put back in order."""
    posts: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        posts.append(json.loads(request.content))
        return _echo_results(request)

    async with _rpc(handler) as rpc:
        out = await rpc.batch([("a", [1]), ("b", [2]), ("c", None)])
    assert out == [["a", [1]], ["b", [2]], ["c", None]]
    assert len(posts) == 1 and [r["method"] for r in posts[0]] == ["a", "b", "c"]


async def test_empty_batch_sends_nothing() -> None:
    """An empty batch returns [] without a request (nodes reject empty arrays)."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    async with _rpc(handler) as rpc:
        assert await rpc.batch([]) == []


async def test_batch_item_error_is_returned_in_place() -> None:
    """One failing item yields its RpcServerError in its slot; the others still succeed."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        first, second = body
        return httpx.Response(
            200,
            json=[
                {"jsonrpc": "2.0", "id": second["id"], "error": {"code": 4003, "message": "gone"}},
                {"jsonrpc": "2.0", "id": first["id"], "result": "ok"},
            ],
        )

    async with _rpc(handler) as rpc:
        ok, failed = await rpc.batch([("a", None), ("b", None)])
    assert ok == "ok"
    assert isinstance(failed, RpcServerError) and failed.code == 4003


async def test_server_error_is_raised_with_code_and_data() -> None:
    """A JSON-RPC error object from the node raises RpcServerError(code, message, data)."""

    def handler(request: httpx.Request) -> httpx.Response:
        rid = json.loads(request.content)["id"]
        error = {"code": -32601, "message": "Method not found", "data": "x"}
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": rid, "error": error})

    async with _rpc(handler) as rpc:
        with pytest.raises(RpcServerError) as info:
            await rpc.call("nope")
    assert (info.value.code, info.value.rpc_message, info.value.data) == (
        -32601,
        "Method not found",
        "x",
    )


@pytest.mark.parametrize("status", [429, 500, 502, 503, 401])
async def test_http_error_statuses_are_transport_errors(status: int) -> None:
    """HTTP 429/5xx (and other non-2xx) raise RpcTransportError carrying the status (F6)."""
    async with _rpc(lambda request: httpx.Response(status, text="busy")) as rpc:
        with pytest.raises(RpcTransportError) as info:
            await rpc.call("chain_getFinalizedHead")
    assert info.value.status == status
    assert str(status) in str(info.value)


async def test_slow_node_times_out_as_transport_error() -> None:
    """A node that never answers fails the call after timeout_s with RpcTransportError."""
    never = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        await never.wait()
        raise AssertionError("unreachable")

    async with _rpc(handler, timeout_s=0.05) as rpc:
        with pytest.raises(RpcTransportError, match="timed out") as info:
            await asyncio.wait_for(rpc.call("chain_getFinalizedHead"), 10)
        with pytest.raises(RpcTransportError, match="timed out"):
            await asyncio.wait_for(rpc.call("x", timeout_s=0.01), 10)
    assert info.value.status is None


async def test_httpx_timeout_is_transport_error() -> None:
    """httpx's own timeouts (read/connect) are translated to RpcTransportError."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    async with _rpc(handler) as rpc:
        with pytest.raises(RpcTransportError, match="timed out"):
            await rpc.call("x")


async def test_connection_refused_is_transport_error() -> None:
    """Connect errors raise RpcTransportError with no status."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    async with _rpc(handler) as rpc:
        with pytest.raises(RpcTransportError, match="Connection refused") as info:
            await rpc.call("x")
    assert info.value.status is None


async def test_real_refused_port_is_transport_error() -> None:
    """A real closed loopback port raises RpcTransportError (no mock involved)."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with HttpRpc(f"http://127.0.0.1:{port}", timeout_s=5) as rpc:
        with pytest.raises(RpcTransportError):
            await rpc.call("x")


@pytest.mark.parametrize(
    "body",
    [
        b"<html>502 Bad Gateway</html>",
        b"",
        b'{"jsonrpc": "2.0", "id": 1}',
        b'{"jsonrpc": "2.0", "id": 1, "result": 1, "error": {"code": 1, "message": "m"}}',
        b'{"id": 1, "result": 1}',
        b'{"jsonrpc": "2.0", "id": 1, "error": {"code": "x", "message": "m"}}',
        b'{"jsonrpc": "2.0", "id": 1, "error": {"code": 1, "message": null}}',
        b"[1, 2]",
    ],
)
async def test_malformed_bodies_raise_malformed_frame(body: bytes) -> None:
    """Non-JSON, missing fields and wrong types in a 200 response raise MalformedFrame."""
    async with _rpc(lambda request: httpx.Response(200, content=body)) as rpc:
        with pytest.raises(MalformedFrame):
            await rpc.call("x")


async def test_response_with_another_id_is_malformed() -> None:
    """A response carrying a different id does not answer our request."""
    reply = {"jsonrpc": "2.0", "id": 999, "result": "stolen"}
    async with _rpc(lambda request: httpx.Response(200, json=reply)) as rpc:
        with pytest.raises(MalformedFrame, match="id"):
            await rpc.call("x")


async def test_batch_with_missing_reply_is_malformed() -> None:
    """A batch reply missing one id is rejected whole."""

    def handler(request: httpx.Request) -> httpx.Response:
        first = json.loads(request.content)[0]
        return httpx.Response(200, json=[{"jsonrpc": "2.0", "id": first["id"], "result": 1}])

    async with _rpc(handler) as rpc:
        with pytest.raises(MalformedFrame):
            await rpc.batch([("a", None), ("b", None)])


async def test_oversized_body_is_refused() -> None:
    """Bodies over max_response_bytes are refused, declared or streamed without a length."""

    async def chunks() -> Any:
        for _ in range(10):
            yield b" " * 1000

    declared = _rpc(
        lambda request: httpx.Response(200, content=b" " * 5000), max_response_bytes=4096
    )
    streamed = _rpc(lambda request: httpx.Response(200, content=chunks()), max_response_bytes=4096)
    for rpc in (declared, streamed):
        async with rpc:
            with pytest.raises(MalformedFrame, match="exceeds 4096"):
                await rpc.call("x")


async def test_secrets_never_appear_in_errors() -> None:
    """API keys in userinfo, path and query are absent from messages and tracebacks."""

    def leaky(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    def busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    for handler in (leaky, busy):
        async with _rpc(handler, url=SECRET_URL) as rpc:
            assert SECRET not in rpc.redacted_url
            with pytest.raises(RpcTransportError) as info:
                await rpc.call("x")
        text = "".join(traceback.format_exception(info.value))
        assert SECRET not in text
        assert "rpc.example.com" in str(info.value)


def test_bad_url_or_timeout_is_config_error() -> None:
    """A URL that is not http(s):// or a non-positive timeout is rejected up front, redacted."""
    for url in ("ws://127.0.0.1:9944", "not a url", f"ftp://h/{SECRET}", "http://h:99999"):
        with pytest.raises(ConfigError) as info:
            HttpRpc(url)
        assert SECRET not in str(info.value)
    with pytest.raises(ConfigError):
        HttpRpc(URL, timeout_s=0)


async def test_real_loopback_server_reuses_one_keepalive_connection() -> None:
    """Against a real HTTP/1.1 server, several calls share one pooled TCP connection."""
    connections = 0

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode().split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                request = json.loads(await reader.readexactly(length))
                payload = json.dumps(
                    {"jsonrpc": "2.0", "id": request["id"], "result": request["method"]}
                ).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with HttpRpc(f"http://127.0.0.1:{port}", timeout_s=5) as rpc:
            results = [await rpc.call(f"m{i}") for i in range(5)]
        assert results == [f"m{i}" for i in range(5)]
        assert connections == 1
    finally:
        server.close()
        await server.wait_closed()


async def test_dropped_connection_is_retried_once() -> None:
    """A connection that breaks mid-request (stale keep-alive) is retried once and succeeds."""
    attempts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise httpx.RemoteProtocolError("Server disconnected", request=request)
        return _echo_results(request)

    async with _rpc(handler) as rpc:
        assert await rpc.call("x") == ["x", None]
    assert attempts == 2


async def test_connection_dropped_twice_is_transport_error() -> None:
    """Two broken attempts in a row raise RpcTransportError; refused connects are not retried."""
    counts = {"read": 0, "connect": 0}

    def broken(request: httpx.Request) -> httpx.Response:
        counts["read"] += 1
        raise httpx.ReadError("reset", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        counts["connect"] += 1
        raise httpx.ConnectError("refused", request=request)

    for handler in (broken, refused):
        async with _rpc(handler) as rpc:
            with pytest.raises(RpcTransportError):
                await rpc.call("x")
    assert counts == {"read": 2, "connect": 1}


async def test_real_server_closing_a_pooled_connection_is_survived() -> None:
    """A server that hangs up on the 2nd request of a keep-alive connection costs no error."""
    connections = 0

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode().split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                request = json.loads(await reader.readexactly(length))
                if served == 1:
                    break  # hang up without answering, like a node restarting
                served += 1
                payload = json.dumps(
                    {"jsonrpc": "2.0", "id": request["id"], "result": served}
                ).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with HttpRpc(f"http://127.0.0.1:{port}", timeout_s=5) as rpc:
            assert [await rpc.call("a"), await rpc.call("b")] == [1, 1]
        assert connections == 2
    finally:
        server.close()
        await server.wait_closed()


async def test_httpx_and_httpcore_logs_never_show_the_key(caplog: pytest.LogCaptureFixture) -> None:
    """At DEBUG, httpx's per-request INFO line and httpcore's traces pass through the redacting
    filter: the key never appears, while the lines themselves are still logged (redacted)."""
    import logging

    from blockfeed.devnode import DevNode, DevNodeConfig

    for name in ("httpx", "httpcore", "httpcore.connection", "httpcore.http11"):
        caplog.set_level(logging.DEBUG, logger=name)
    caplog.set_level(logging.DEBUG)
    async with DevNode(DevNodeConfig(block_time_s=0.1, seed=5)) as node:
        url = f"http://127.0.0.1:{node.port}/rpc/{SECRET}?apikey={SECRET}"
        async with HttpRpc(url, timeout_s=5.0) as rpc:
            assert isinstance(await rpc.call("chain_getFinalizedHead"), str)
            await rpc.batch([("chain_getBlockHash", [1]), ("system_health", [])])
    messages = [record.getMessage() for record in caplog.records]
    assert SECRET not in caplog.text and not any(SECRET in m for m in messages)
    requests = [m for m in messages if m.startswith("HTTP Request: POST")]
    assert len(requests) == 2
    assert all(f"http://127.0.0.1:{node.port}/***" in m for m in requests)
    assert any(r.name.startswith("httpcore") for r in caplog.records)  # traces were logged


def test_redact_filter_rewrites_message_and_arguments() -> None:
    """The filter masks URLs in the format string, in tuple and dict arguments (httpx.URL or
    text), leaves everything else as it was, and never drops a record."""
    import logging

    from blockfeed.rpc.http import RedactUrlFilter

    redactor = RedactUrlFilter()
    record = logging.LogRecord(
        "httpx", logging.INFO, __file__, 1, f"fetch {SECRET_URL} then %s %s %d", (
            httpx.URL(SECRET_URL), f"see wss://h:1/ws/{SECRET}", 200), None)
    assert redactor.filter(record) is True
    text = record.getMessage()
    assert SECRET not in text and text.endswith(" 200")
    assert "https://rpc.example.com/***" in text and "wss://h:1/***" in text
    mapping = logging.LogRecord("httpcore", logging.DEBUG, __file__, 1, "%(u)s %(n)d",
                                None, None)
    mapping.args = {"u": SECRET_URL, "n": 7}
    redactor.filter(mapping)
    assert mapping.getMessage() == "https://rpc.example.com/*** 7"


def test_log_filter_is_installed_once_on_every_http_logger() -> None:
    """Creating many clients leaves exactly one redacting filter on httpx and httpcore loggers."""
    import logging

    from blockfeed.rpc.http import HTTP_LIBRARY_LOGGERS, RedactUrlFilter

    for _ in range(3):
        HttpRpc(URL)
    for name in HTTP_LIBRARY_LOGGERS:
        filters = [f for f in logging.getLogger(name).filters if isinstance(f, RedactUrlFilter)]
        assert len(filters) == 1, name
