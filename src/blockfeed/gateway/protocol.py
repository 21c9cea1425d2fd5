"""uvicorn's httptools protocol with bounded request heads and an abort handle for SSE.

(``limit_concurrency`` is applied to ``/stream`` requests only; see ``on_headers_complete``.)

uvicorn's httptools parser has no limit on the request line and headers: a header that never
ends is buffered whole (four unfinished 100 MB headers took the gateway from 78 to 510 MiB, and
a 20 MB header was answered 200). Here a head above ``MAX_HEAD_BYTES`` or with more than
``MAX_HEADERS`` fields is answered ``431 Request Header Fields Too Large`` and the connection is
closed, which frees the parser and its buffer.

Each request's scope also carries ``scope["extensions"]["blockfeed.abort"]``: closing a
transport waits until its buffer is flushed, which never happens for a client that stopped
reading, so a dropped SSE client would keep its descriptor. The SSE response aborts instead.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 32 * 1024
"""Request line plus headers (browsers send a few KiB; cookies for localhost stay far below)."""
MAX_HEADERS = 100
ABORT_EXTENSION = "blockfeed.abort"


class _HeadTooLarge(Exception):
    """Raised from a parser callback; httptools hands it back wrapped as a parser error."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` + head limits (431) + an abort handle in the ASGI scope."""

    max_head_bytes = MAX_HEAD_BYTES
    max_headers = MAX_HEADERS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._header_count = 0
        self._in_head = True
        self._too_large = False

    def data_received(self, data: bytes) -> None:
        if self._too_large:
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > self.max_head_bytes and not self._too_large:
            self._reject_head()

    def on_message_begin(self) -> None:
        # Bytes are counted in data_received, before the parser calls this: no reset here.
        super().on_message_begin()
        self._in_head = True
        self._header_count = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.max_headers:
            self._too_large = True
            raise _HeadTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        transport = self.transport
        self.scope["extensions"] = {ABORT_EXTENSION: {"abort": transport.abort}}
        limit = self.limit_concurrency
        if limit is None or self.url.startswith(b"/stream"):
            super().on_headers_complete()
            return
        # ``limit_concurrency`` is for streams, which hold a descriptor for hours. A short
        # request (/status, /health) on a connection that is already open needs no new one:
        # answering it beats a 503 while a swarm of surplus stream clients is being refused.
        self.limit_concurrency = None  # read by the call below
        try:
            super().on_headers_complete()
        finally:
            self.limit_concurrency = limit

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # the next bytes are the next request's head (keep-alive)
        self._head_bytes = 0

    def send_400_response(self, msg: str) -> None:
        # A callback error (too many headers) surfaces as a parse error: answer it as 431.
        if self._too_large:
            self._reject_head()
            return
        super().send_400_response(msg)

    def _reject_head(self) -> None:
        self._too_large = True
        if self.transport.is_closing():
            return
        body = (
            f"request head too large: at most {self.max_head_bytes} bytes and "
            f"{self.max_headers} header fields\n"
        ).encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self.transport.close()


def abort_handle(scope: Any) -> Any:
    """The transport abort of this request, when served by :class:`BoundedHttpToolsProtocol`."""
    extension = (scope.get("extensions") or {}).get(ABORT_EXTENSION)
    return extension.get("abort") if isinstance(extension, dict) else None

