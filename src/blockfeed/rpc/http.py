"""JSON-RPC over HTTP: the poller's transport, one keep-alive connection pool per endpoint.

Every failure leaves here as one of three errors: :class:`RpcTransportError` (refused, reset,
timed out, HTTP 429/5xx or any other non-2xx status, with ``status`` set when there was one),
:class:`RpcServerError` (the node answered with an error object) or :class:`MalformedFrame`
(the body is not JSON-RPC). Messages name the endpoint only through ``redact_url``.

A request whose connection breaks mid-way (a pooled keep-alive connection the node just closed)
is retried once on a fresh connection, within the same deadline; refused connections and
timeouts are not retried here (the caller's backoff decides).

httpx logs every request's full URL at INFO (``HTTP Request: POST https://host/<key> ...``), and
httpcore traces at DEBUG; an API key in an endpoint URL would reach the application's logs. Every
:class:`HttpRpc` therefore installs :func:`blockfeed.util.logmask.install_log_redaction`, which
masks those loggers' records (and websockets' and uvicorn's) at every level.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from blockfeed.errors import ConfigError, MalformedFrame, RpcServerError, RpcTransportError
from blockfeed.rpc import jsonrpc
from blockfeed.rpc._errors import describe, safe_cause
from blockfeed.util.logmask import LIBRARY_LOGGERS, RedactFilter, install_log_redaction
from blockfeed.util.redact import redact_url

DEFAULT_TIMEOUT_S = 5.0
"""Whole-request deadline (connect + send + wait + read), not per network operation."""
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
"""Bodies larger than this are refused: a finalized-header poll never needs more."""
DEFAULT_MAX_CONNECTIONS = 8
_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


_DROPPED = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
"""The connection broke mid-request: typically a pooled keep-alive connection the node (or a
proxy) had just closed. Every method blockfeed sends is a read, so one retry on a fresh
connection is safe; it saves a spurious "HTTP failing" mode change after each node restart."""


class _DroppedConnection(Exception):
    """Internal: retry this request once."""


HTTP_LIBRARY_LOGGERS = LIBRARY_LOGGERS
"""Every logger that gets the redacting filter (see :mod:`blockfeed.util.logmask`)."""
RedactUrlFilter = RedactFilter
"""The filter's former name here; it now lives in :mod:`blockfeed.util.logmask`."""


def _retry_after_s(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds only; a date or junk is ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None


def _check_http_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(f"not an http(s):// endpoint URL: {redact_url(url)}")


class HttpRpc:
    """A JSON-RPC client for one HTTP endpoint (``call`` and ``batch``).

    ``transport`` replaces the network (``httpx.MockTransport`` in tests); ``headers`` are sent
    with every request (e.g. an ``Authorization`` header, never logged).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        if timeout_s <= 0:
            raise ConfigError("timeout_s must be positive")
        _check_http_url(url)
        install_log_redaction()
        self._url = url
        self.redacted_url = redact_url(url)
        """The endpoint as it may appear in logs and errors."""
        self._timeout_s = timeout_s
        self._max_response_bytes = max_response_bytes
        self._ids = jsonrpc.RequestIds()
        self._client = httpx.AsyncClient(
            transport=transport,
            headers={**_JSON_HEADERS, **(headers or {})},
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            follow_redirects=False,
        )

    async def __aenter__(self) -> HttpRpc:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def call(
        self, method: str, params: jsonrpc.Params = None, *, timeout_s: float | None = None
    ) -> Any:
        """Send one request and return its result (raises the node's error as RpcServerError)."""
        request_id = self._ids.next()
        body = await self._post(jsonrpc.encode_request(request_id, method, params), timeout_s)
        response = jsonrpc.parse_response(body)
        if response.id is not None and response.id != request_id:
            raise MalformedFrame("response id does not match the request id")
        return response.unwrap()

    async def batch(
        self, calls: Sequence[jsonrpc.Call], *, timeout_s: float | None = None
    ) -> list[Any | RpcServerError]:
        """Send ``calls`` as one JSON-RPC batch (one POST); results in the same order.

        A request the node answered with an error yields that ``RpcServerError`` in its place.
        """
        if not calls:
            return []
        request_ids = [self._ids.next() for _ in calls]
        payload = [
            jsonrpc.encode_request(rid, method, params)
            for rid, (method, params) in zip(request_ids, calls, strict=True)
        ]
        body = await self._post(payload, timeout_s)
        return jsonrpc.match_batch(body, request_ids)

    async def _post(self, payload: Any, timeout_s: float | None) -> Any:
        deadline_s = self._timeout_s if timeout_s is None else timeout_s
        content = jsonrpc.dumps(payload).encode()
        try:
            async with asyncio.timeout(deadline_s):
                try:
                    raw = await self._exchange(content, deadline_s, retrying=False)
                except _DroppedConnection:
                    raw = await self._exchange(content, deadline_s, retrying=True)
        except TimeoutError:
            raise RpcTransportError(
                f"HTTP request to {self.redacted_url} timed out after {deadline_s:g} s"
            ) from None
        return jsonrpc.decode_json(raw)

    async def _exchange(self, content: bytes, deadline_s: float, *, retrying: bool) -> bytes:
        try:
            async with self._client.stream(
                "POST", self._url, content=content, timeout=httpx.Timeout(deadline_s)
            ) as response:
                if not 200 <= response.status_code < 300:
                    raise RpcTransportError(
                        f"HTTP {response.status_code} from {self.redacted_url}",
                        status=response.status_code,
                        retry_after_s=_retry_after_s(response.headers.get("retry-after")),
                    )
                return await self._read_capped(response)
        except httpx.TimeoutException as exc:
            raise TimeoutError from exc
        except _DROPPED as exc:
            if not retrying:
                raise _DroppedConnection from exc
            raise RpcTransportError(
                f"HTTP request to {self.redacted_url} failed twice ({describe(exc, self._url)})"
            ) from safe_cause(exc, self._url)
        except httpx.HTTPError as exc:
            raise RpcTransportError(
                f"HTTP request to {self.redacted_url} failed ({describe(exc, self._url)})"
            ) from safe_cause(exc, self._url)

    async def _read_capped(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_response_bytes:
            raise MalformedFrame(
                f"response body of {declared} bytes exceeds {self._max_response_bytes} bytes"
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self._max_response_bytes:
                raise MalformedFrame(f"response body exceeds {self._max_response_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
