"""WsRpc against real loopback WebSocket servers: calls, batches, subscriptions, F1/F3/F5/F8."""

from __future__ import annotations

import asyncio
import gc
import json
import traceback
from http import HTTPStatus
from typing import Any

import pytest
from rpc_fakes import (
    WAIT_S,
    error,
    half_open_node,
    make_chain,
    next_request,
    notification,
    result,
    ws_node,
)
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from blockfeed.errors import ConfigError, MalformedFrame, RpcServerError, RpcTransportError
from blockfeed.rpc import WsRpc

SUB = "chain_subscribeFinalizedHeads"
NOTE = "chain_finalizedHead"
UNSUB = "chain_unsubscribeFinalizedHeads"


async def _connect(url: str, **kwargs: Any) -> WsRpc:
    return await WsRpc.connect(url, open_timeout_s=WAIT_S, **kwargs)


async def _echo(connection: ServerConnection) -> None:
    """Answer each request with [method, params]; batches answered in reverse order."""
    async for frame in connection:
        body = json.loads(frame)
        if isinstance(body, list):
            await connection.send(
                json.dumps(
                    [
                        {"jsonrpc": "2.0", "id": r["id"], "result": [r["method"], r.get("params")]}
                        for r in reversed(body)
                    ]
                )
            )
        else:
            await connection.send(result(body["id"], [body["method"], body.get("params")]))


async def test_call_returns_result() -> None:
    """A call is answered by id; concurrent calls each get their own result."""
    async with ws_node(_echo) as url, await _connect(url) as ws:
        one, two = await asyncio.gather(ws.call("a", [1]), ws.call("b"))
        assert one == ["a", [1]] and two == ["b", None]


async def test_batch_over_ws_keeps_order_and_errors_in_place() -> None:
    """A batch frame's replies are matched by id in request order; item errors are returned."""

    async def node(connection: ServerConnection) -> None:
        first, second = await next_request(connection)
        await connection.send(
            json.dumps(
                [
                    json.loads(error(second["id"], 7, "no")),
                    json.loads(result(first["id"], "yes")),
                ]
            )
        )
        await connection.wait_closed()

    async with ws_node(node) as url, await _connect(url) as ws:
        ok, failed = await ws.batch([("a", None), ("b", None)])
    assert ok == "yes"
    assert isinstance(failed, RpcServerError) and failed.code == 7


async def test_server_error_raises_rpc_server_error() -> None:
    """An error reply raises RpcServerError with the node's code and message."""

    async def node(connection: ServerConnection) -> None:
        request = await next_request(connection)
        await connection.send(error(request["id"], -32601, "Method not found"))
        await connection.wait_closed()

    async with ws_node(node) as url, await _connect(url) as ws:
        with pytest.raises(RpcServerError, match="Method not found") as info:
            await ws.call("nope")
    assert info.value.code == -32601


async def _subscribe_node(
    connection: ServerConnection, *, notify_first: bool, headers: list[Any], sub_id: Any = "s1"
) -> None:
    request = await next_request(connection)
    assert request["method"] == SUB
    if notify_first:
        await connection.send(notification(NOTE, sub_id, headers[0]))
        await connection.send(result(request["id"], sub_id))
        rest = headers[1:]
    else:
        await connection.send(result(request["id"], sub_id))
        rest = headers
    for header in rest:
        await connection.send(notification(NOTE, sub_id, header))
    await connection.wait_closed()


async def _take(subscription: Any, count: int) -> list[Any]:
    out = []
    async for item in subscription:
        out.append(item)
        if len(out) == count:
            break
    return out


async def test_subscription_yields_notifications_in_order() -> None:
    """Notifications for the subscription id arrive in order as raw result objects."""
    headers = [h.to_json() for h in make_chain(100, 5)]

    async def node(connection: ServerConnection) -> None:
        await _subscribe_node(connection, notify_first=False, headers=headers)

    async with ws_node(node) as url, await _connect(url) as ws:
        sub = await ws.subscribe(SUB, [], notification=NOTE, unsubscribe=UNSUB)
        assert sub.id == "s1"
        assert await asyncio.wait_for(_take(sub, 5), WAIT_S) == headers


async def test_notification_before_subscribe_response_is_not_lost() -> None:
    """A node that sends the first notification before the subscribe reply loses nothing."""
    headers = [h.to_json() for h in make_chain(7, 3)]

    async def node(connection: ServerConnection) -> None:
        await _subscribe_node(connection, notify_first=True, headers=headers, sub_id=42)

    async with ws_node(node) as url, await _connect(url) as ws:
        sub = await ws.subscribe(SUB, [], notification=NOTE)
        assert sub.id == "42"
        assert await asyncio.wait_for(_take(sub, 3), WAIT_S) == headers
    assert ws.malformed_frames == 0


async def test_refused_subscription_raises_server_error() -> None:
    """A subscribe answered with a JSON-RPC error raises RpcServerError (fault F5)."""

    async def node(connection: ServerConnection) -> None:
        request = await next_request(connection)
        await connection.send(error(request["id"], -32000, "too many subscriptions"))
        await connection.wait_closed()

    async with ws_node(node) as url, await _connect(url) as ws:
        with pytest.raises(RpcServerError, match="too many subscriptions"):
            await ws.subscribe(SUB, [], notification=NOTE)
        assert not ws.closed


async def test_subscription_id_of_wrong_type_is_malformed() -> None:
    """A subscribe result that is not a string/number id raises MalformedFrame and is counted."""

    async def node(connection: ServerConnection) -> None:
        request = await next_request(connection)
        await connection.send(result(request["id"], {"id": "s"}))
        await connection.wait_closed()

    async with ws_node(node) as url, await _connect(url) as ws:
        with pytest.raises(MalformedFrame):
            await ws.subscribe(SUB, [], notification=NOTE)
    assert ws.malformed_frames == 1


async def test_malformed_frames_are_reported_and_skipped() -> None:
    """Bad JSON, wrong types and missing fields are reported, skipped, and the reader survives."""
    bad_frames = [
        "{not json",
        "[]",
        "12",
        json.dumps({"jsonrpc": "2.0", "id": "zz"}),
        json.dumps({"jsonrpc": "2.0", "id": 1, "result": 1, "error": {"code": 1, "message": ""}}),
        json.dumps({"jsonrpc": "2.0", "id": 1, "error": {"code": "1", "message": "m"}}),
        json.dumps({"jsonrpc": "2.0", "method": NOTE, "params": {"result": 1}}),
        json.dumps({"jsonrpc": "2.0", "id": 987654, "result": "nobody asked"}),
        json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse"}}),
    ]

    async def node(connection: ServerConnection) -> None:
        request = await next_request(connection)
        for frame in bad_frames:
            await connection.send(frame)
        await connection.send(b'{"jsonrpc": "2.0", "id": 0, "result": "binary frames ok"}')
        await connection.send(result(request["id"], "still alive"))
        await connection.wait_closed()

    reasons: list[str] = []
    async with ws_node(node) as url, await _connect(url, on_malformed=reasons.append) as ws:
        assert await ws.call("x") == "still alive"
        assert ws.malformed_frames == len(bad_frames) + 1  # + the reply to unknown id 0
    assert len(reasons) == ws.malformed_frames
    assert "not valid JSON" in reasons[0]


async def test_broken_malformed_hook_does_not_kill_reader() -> None:
    """An on_malformed hook that raises is contained; calls keep working."""

    async def node(connection: ServerConnection) -> None:
        request = await next_request(connection)
        await connection.send("garbage")
        await connection.send(result(request["id"], "ok"))
        await connection.wait_closed()

    def hook(reason: str) -> None:
        raise RuntimeError("hook bug")

    async with ws_node(node) as url, await _connect(url, on_malformed=hook) as ws:
        assert await ws.call("x") == "ok"
        assert ws.malformed_frames == 1


async def test_notification_with_wrong_method_is_malformed() -> None:
    """A notification naming our subscription but another method is rejected, not delivered."""

    async def node(connection: ServerConnection) -> None:
        request = await next_request(connection)
        await connection.send(result(request["id"], "s"))
        await connection.send(notification("chain_newHead", "s", {"wrong": 1}))
        await connection.send(notification(NOTE, "s", {"right": 1}))
        await connection.wait_closed()

    async with ws_node(node) as url, await _connect(url) as ws:
        sub = await ws.subscribe(SUB, [], notification=NOTE)
        assert await asyncio.wait_for(_take(sub, 1), WAIT_S) == [{"right": 1}]
        assert ws.malformed_frames == 1


async def test_huge_frame_fails_the_socket_and_is_counted() -> None:
    """A frame over max_frame_bytes closes the socket (1009): pending calls fail, count +1."""

    async def node(connection: ServerConnection) -> None:
        request = await next_request(connection)
        await connection.send(result(request["id"], "x" * 20_000))
        await connection.wait_closed()

    reasons: list[str] = []
    async with ws_node(node) as url:
        ws = await _connect(url, max_frame_bytes=4096, on_malformed=reasons.append)
        with pytest.raises(RpcTransportError, match="larger than 4096"):
            await asyncio.wait_for(ws.call("x"), WAIT_S)
        await asyncio.wait_for(ws.wait_closed(), WAIT_S)
        assert ws.closed and ws.malformed_frames == 1 and "larger than" in reasons[0]
        with pytest.raises(RpcTransportError):
            await ws.call("y")


@pytest.mark.parametrize("how", ["close_frame", "tcp_reset"])
async def test_socket_death_fails_pending_calls_and_iterators(how: str) -> None:
    """When the node closes or resets (F1), calls and subscriptions raise RpcTransportError.

    Notifications already received are still handed out before the error.
    """
    headers = [h.to_json() for h in make_chain(1, 2)]
    got_call = asyncio.Event()

    async def node(connection: ServerConnection) -> None:
        request = await next_request(connection)
        await connection.send(result(request["id"], "s"))
        for header in headers:
            await connection.send(notification(NOTE, "s", header))
        await next_request(connection)  # the pending call, never answered
        got_call.set()
        if how == "close_frame":
            await connection.close(code=1001, reason="going away")
        else:
            connection.transport.abort()

    async with ws_node(node) as url:
        ws = await _connect(url)
        sub = await ws.subscribe(SUB, [], notification=NOTE)
        call = asyncio.create_task(ws.call("pending", timeout_s=None))
        await asyncio.wait_for(got_call.wait(), WAIT_S)
        with pytest.raises(RpcTransportError):
            await asyncio.wait_for(call, WAIT_S)
        received = []
        with pytest.raises(RpcTransportError):
            async with asyncio.timeout(WAIT_S):
                async for item in sub:
                    received.append(item)
        assert received == headers
        assert ws.closed
        await asyncio.wait_for(ws.wait_closed(), WAIT_S)


async def test_half_open_socket_is_detected_by_keepalive() -> None:
    """A silent peer that never answers pings (F3) fails pending calls via ping timeout."""
    async with half_open_node() as url:
        ws = await WsRpc.connect(
            url,
            open_timeout_s=WAIT_S,
            ping_interval_s=0.05,
            ping_timeout_s=0.1,
            close_timeout_s=0.1,
        )
        sub_task = asyncio.create_task(ws.subscribe(SUB, [], notification=NOTE, timeout_s=None))
        with pytest.raises(RpcTransportError, match="keepalive"):
            await asyncio.wait_for(sub_task, WAIT_S)
        assert ws.closed


async def test_call_timeout_keeps_socket_usable_and_late_reply_is_ignored() -> None:
    """A call that times out raises RpcTransportError; its late reply is not counted malformed."""

    async def node(connection: ServerConnection) -> None:
        slow = await next_request(connection)
        fast = await next_request(connection)
        await connection.send(result(slow["id"], "late"))
        await connection.send(result(fast["id"], "fast"))
        await connection.wait_closed()

    async with ws_node(node) as url, await _connect(url) as ws:
        with pytest.raises(RpcTransportError, match="no response"):
            await ws.call("slow", timeout_s=0.05)
        assert await asyncio.wait_for(ws.call("fast"), WAIT_S) == "fast"
        assert ws.malformed_frames == 0 and not ws.closed


async def test_close_fails_pending_work_and_unsubscribe_is_sent() -> None:
    """aclose() unsubscribes; close() ends pending calls with RpcTransportError."""
    methods: list[str] = []
    got_never = asyncio.Event()

    async def node(connection: ServerConnection) -> None:
        async for frame in connection:
            body = json.loads(frame)
            methods.append(body["method"])
            if body["method"] == "never":
                got_never.set()
            if body["method"] == SUB:
                await connection.send(result(body["id"], "s"))
            elif body["method"] == UNSUB:
                await connection.send(result(body["id"], True))

    async with ws_node(node) as url:
        ws = await _connect(url)
        sub = await ws.subscribe(SUB, [], notification=NOTE, unsubscribe=UNSUB)
        await sub.aclose()
        assert [item async for item in sub] == []
        pending = asyncio.create_task(ws.call("never", timeout_s=None))
        await asyncio.wait_for(got_never.wait(), WAIT_S)
        await ws.close()
        with pytest.raises(RpcTransportError, match="closed by client"):
            await asyncio.wait_for(pending, WAIT_S)
        assert ws.closed
    assert methods[:2] == [SUB, UNSUB]


async def test_slow_consumer_drops_oldest_and_counts() -> None:
    """A subscriber that falls more than max_pending behind loses the oldest, counted."""

    async def node(connection: ServerConnection) -> None:
        request = await next_request(connection)
        await connection.send(result(request["id"], "s"))
        for n in range(10):
            await connection.send(notification(NOTE, "s", n))
        await connection.send(result(0, "marker"))  # unknown id: tells the test all arrived
        await connection.wait_closed()

    seen_marker = asyncio.Event()
    async with ws_node(node) as url:
        ws = await _connect(url, on_malformed=lambda reason: seen_marker.set())
        sub = await ws.subscribe(SUB, [], notification=NOTE, max_pending=4)
        await asyncio.wait_for(seen_marker.wait(), WAIT_S)
        assert sub.dropped == 6
        assert await asyncio.wait_for(_take(sub, 4), WAIT_S) == [6, 7, 8, 9]
        await ws.close()


async def test_connect_refused_is_transport_error() -> None:
    """Nothing listening: connect raises RpcTransportError quickly."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(RpcTransportError, match="failed"):
        await _connect(f"ws://127.0.0.1:{port}")


async def test_bad_url_is_config_error() -> None:
    """A URL that is not ws(s):// is a ConfigError, not a transport failure."""
    with pytest.raises(ConfigError):
        await _connect("http://127.0.0.1:1/secretsecretsecret1234")


async def test_refused_upgrade_carries_status_and_no_secret() -> None:
    """A handshake refused with HTTP 403 gives status=403; the API key never shows."""
    secret = "k3yAbCdEfGhIjKlMnOpQrStUv"

    def refuse(connection: ServerConnection, request: Any) -> Any:
        return connection.respond(HTTPStatus.FORBIDDEN, "forbidden\n")

    async with ws_node(_echo, process_request=refuse) as url:
        with pytest.raises(RpcTransportError) as info:
            await _connect(f"{url}/ws/{secret}?apikey={secret}")
    assert info.value.status == 403
    text = "".join(traceback.format_exception(info.value))
    assert secret not in text and "127.0.0.1" in text


async def test_socket_dying_during_send_leaves_no_unretrieved_error() -> None:
    """A call whose send fails because the socket just died raises RpcTransportError, and the
    failure the reader put on its future does not make asyncio log "never retrieved"."""
    kill = asyncio.Event()

    async def node(connection: ServerConnection) -> None:
        await kill.wait()
        connection.transport.abort()

    problems: list[str] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: problems.append(context["message"]))
    try:
        async with ws_node(node) as url:
            ws = await _connect(url)

            async def send_while_dying(_text: str) -> None:
                kill.set()  # the node hangs up while this frame is being written
                await ws.wait_closed()
                raise ConnectionClosed(None, None)

            ws._conn.send = send_while_dying  # type: ignore[method-assign]
            with pytest.raises(RpcTransportError):
                await asyncio.wait_for(ws.call("x", timeout_s=None), WAIT_S)
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert not [p for p in problems if "never retrieved" in p]


async def test_websockets_debug_log_never_shows_a_key_in_the_path(caplog) -> None:
    """The request line websockets logs at DEBUG has the API key in the path masked."""
    import logging

    import websockets

    from blockfeed.rpc import WsRpc

    key = "abcdef0123456789abcdef0123456789"

    async def handler(ws) -> None:
        async for _ in ws:
            pass

    async with websockets.serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        with caplog.at_level(logging.DEBUG, logger="websockets.client"):
            rpc = await WsRpc.connect(f"ws://127.0.0.1:{port}/ws/{key}?apikey={key}")
            await rpc.close()
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "GET /*** HTTP/1.1" in text
    assert key not in text
