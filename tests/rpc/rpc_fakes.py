"""Small scripted JSON-RPC nodes on loopback for the rpc tests.

``ws_node(handler)`` runs a real websockets server whose per-connection behaviour is the test's
``handler(connection)``; ``half_open_node()`` completes the WebSocket handshake by hand and then
never sends another byte (fault F3). Helpers build headers and JSON-RPC frames.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from blockfeed.codec import block_hash
from blockfeed.types import Header

Handler = Callable[[ServerConnection], Awaitable[None]]
WAIT_S = 10.0
"""Generous bound on waits for real events (the machine is shared and slow)."""


def make_header(number: int, parent: bytes = b"\x11" * 32) -> Header:
    """A valid header with recognisable roots."""
    return Header(
        parent_hash=parent,
        number=number,
        state_root=bytes([number % 256]) * 32,
        extrinsics_root=b"\x22" * 32,
        digest_logs=(b"\x06aura" + number.to_bytes(8, "little"),),
    )


def make_chain(start: int, count: int) -> list[Header]:
    """``count`` parent-linked headers starting at ``start``."""
    headers = [make_header(start)]
    for n in range(start + 1, start + count):
        parent = bytes.fromhex(block_hash(headers[-1])[2:])
        headers.append(make_header(n, parent))
    return headers


def result(request_id: Any, value: Any) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "result": value})


def error(request_id: Any, code: int, message: str, data: Any = None) -> str:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": err})


def notification(method: str, subscription: Any, value: Any) -> str:
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "method": method,
            "params": {"subscription": subscription, "result": value},
        }
    )


async def next_request(connection: ServerConnection) -> Any:
    """The next decoded request (or batch) the client sent."""
    return json.loads(await connection.recv())


@asynccontextmanager
async def ws_node(handler: Handler, **serve_kwargs: Any) -> AsyncIterator[str]:
    """Serve ``handler`` on a free loopback port; yields ``ws://127.0.0.1:PORT``."""

    async def guarded(connection: ServerConnection) -> None:
        try:
            await handler(connection)
        except Exception:  # a client that went away mid-script is expected in these tests
            pass

    async with serve(guarded, "127.0.0.1", 0, **serve_kwargs) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@asynccontextmanager
async def half_open_node() -> AsyncIterator[str]:
    """Accept the upgrade, then go silent forever: no pongs, no responses, no close (F3)."""
    writers: list[asyncio.StreamWriter] = []

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        request = await reader.readuntil(b"\r\n\r\n")
        key = ""
        for line in request.decode().split("\r\n"):
            if line.lower().startswith("sec-websocket-key:"):
                key = line.split(":", 1)[1].strip()
        accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        writer.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        while await reader.read(65536):
            pass  # swallow pings and requests

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()
