"""Just enough HTTP/1.1 for a JSON-RPC endpoint and the control API, on asyncio streams.

websockets' own HTTP parser refuses request bodies (it only does handshakes), so devnode reads
the request head itself, serves POST bodies here, and hands ``Upgrade: websocket`` requests to
the websockets sans-I/O protocol (see ``server.py``).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
"""Like a node's default request size cap (15 MiB) with some slack."""


class HttpProtocolError(Exception):
    """The peer sent something that is not an HTTP/1.1 request we accept; carries the status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A parsed request head; ``raw_head`` is kept to hand a WebSocket upgrade over verbatim."""

    method: str
    path: str
    version: str
    headers: dict[str, str]
    """Lower-cased names; repeated headers joined with ``", "``."""
    raw_head: bytes

    @property
    def is_websocket_upgrade(self) -> bool:
        return self.method == "GET" and self.headers.get("upgrade", "").lower() == "websocket"

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


async def read_request(reader: asyncio.StreamReader) -> HttpRequest | None:
    """Read one request head; None on a clean EOF before any byte, ``HttpProtocolError`` if bad."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise HttpProtocolError(400, "incomplete HTTP request head") from None
        return None
    except asyncio.LimitOverrunError:
        raise HttpProtocolError(431, "request head too large") from None
    try:
        text = raw.decode("latin-1")
        request_line, *header_lines = text.split("\r\n")
        method, path, version = request_line.split(" ", 2)
    except ValueError:
        raise HttpProtocolError(400, "malformed HTTP request line") from None
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HttpProtocolError(505, f"unsupported HTTP version {version[:20]!r}")
    headers: dict[str, str] = {}
    for line in header_lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise HttpProtocolError(400, "malformed HTTP header line")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return HttpRequest(method=method, path=path, version=version, headers=headers, raw_head=raw)


async def read_body(
    reader: asyncio.StreamReader, request: HttpRequest, writer: asyncio.StreamWriter | None = None
) -> bytes:
    """The request body (``Content-Length`` only; chunked bodies are refused with 411).

    Answers ``Expect: 100-continue`` (curl sends it for bodies over 1 KiB and would otherwise
    wait a second) when ``writer`` is given.
    """
    if "transfer-encoding" in request.headers:
        raise HttpProtocolError(411, "chunked bodies are not supported; send Content-Length")
    length_text = request.headers.get("content-length", "0")
    if not length_text.isdigit():
        raise HttpProtocolError(400, "invalid Content-Length")
    length = int(length_text)
    if length > MAX_BODY_BYTES:
        raise HttpProtocolError(413, f"request body larger than {MAX_BODY_BYTES} bytes")
    if length == 0:
        return b""
    if writer is not None and request.headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise HttpProtocolError(400, "connection closed inside the request body") from None


def encode_response(
    status: int,
    body: bytes,
    *,
    content_type: str = "application/json; charset=utf-8",
    keep_alive: bool = True,
    extra_headers: dict[str, str] | None = None,
) -> bytes:
    """A complete HTTP/1.1 response."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Status"
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
    ]
    for name, value in (extra_headers or {}).items():
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def json_response(status: int, payload: Any, *, keep_alive: bool = True) -> bytes:
    """A JSON response (control API, errors)."""
    return encode_response(status, json.dumps(payload).encode(), keep_alive=keep_alive)


def text_response(status: int, text: str, *, keep_alive: bool = False) -> bytes:
    """A plain-text response (protocol errors)."""
    return encode_response(
        status, text.encode(), content_type="text/plain; charset=utf-8", keep_alive=keep_alive
    )
