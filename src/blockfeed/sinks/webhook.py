"""Signed webhooks: one POST per block, strictly in order, to an HTTP(S) endpoint.

Each request carries the block as JSON and these headers:

* ``Blockfeed-Timestamp``: Unix seconds when the request was signed.
* ``Blockfeed-Signature``: ``v1=`` + hex HMAC-SHA256 over ``<timestamp>.<body>`` with the shared
  secret (from the environment, ``BLOCKFEED_WEBHOOK_SECRET`` by default). Signing the timestamp
  with the body lets a receiver refuse replays older than a few minutes.
* ``Idempotency-Key`` and ``Blockfeed-Block-Number``: the block number. A retry after a lost
  reply repeats the same number, so a receiver that stores by number sees each block once.

Delivery: the next block is sent only after the receiver answered 2xx for the previous one (409
also counts as "already have it"). 5xx, 408, 429, timeouts and connection errors are retried
with exponential backoff and full jitter; other 4xx (a bad signature, say) are reported loudly
and retried with the same backoff, since an operator can fix the receiver. The receiver has no
way to tell blockfeed where it is, so the sink keeps its cursor in a small file (``cursor_path``;
``blockfeed serve`` puts it beside the state database) and resumes after it on restart,
catching up from the feed store's block window.

:func:`verify_signature` is what a receiver (in Python) needs; the docs show a whole receiver.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from blockfeed.contents.wire import contents_of
from blockfeed.errors import ConfigError
from blockfeed.sinks.base import CursorSink, SinkRefused, block_row
from blockfeed.types import Block
from blockfeed.util.redact import redact_url

DEFAULT_SECRET_ENV = "BLOCKFEED_WEBHOOK_SECRET"
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_TOLERANCE_S = 300.0
"""A receiver should refuse signatures older (or newer) than this."""
SIGNATURE_HEADER = "Blockfeed-Signature"
TIMESTAMP_HEADER = "Blockfeed-Timestamp"
_RETRYABLE_STATUS = frozenset({408, 429})


class WebhookRetry(Exception):
    """The receiver answered with a status worth retrying (5xx, 408, 429)."""


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``Blockfeed-Signature`` value: ``v1=`` + hex HMAC-SHA256(secret, ``ts.body``)."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify_signature(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """True if ``signature`` signs ``body`` at ``timestamp`` and the timestamp is recent."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature or "")


def check_webhook_url(url: str) -> str:
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"not a webhook URL: {redact_url(str(url))} (expected https://...)")
    return url


class WebhookSink(CursorSink):
    """POSTs every block, signed, strictly one after the other, resuming from a cursor file.

    * ``secret``: the HMAC key; by default read from the environment variable ``secret_env``.
    * ``cursor_path``: file holding the last number the receiver accepted (``None``: memory).
    * ``transport``: an ``httpx`` transport (tests pass ``httpx.MockTransport``).
    """

    kind = "webhook"

    def __init__(
        self,
        url: str,
        *,
        secret: str | bytes | None = None,
        secret_env: str = DEFAULT_SECRET_ENV,
        cursor_path: str | Path | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
        clock_wall: Any = time.time,
        **options: Any,
    ) -> None:
        options.setdefault("batch_size", 100)
        super().__init__(check_webhook_url(url), **options)
        if secret is None:
            secret = os.environ.get(secret_env)
        if not secret:
            raise ConfigError(
                f"the webhook sink needs a signing secret: set {secret_env} in the environment"
            )
        self._secret = secret.encode() if isinstance(secret, str) else bytes(secret)
        self._cursor_path = Path(cursor_path) if cursor_path is not None else None
        self._timeout_s = timeout_s
        self._transport = transport
        self._wall = clock_wall
        self._client: httpx.AsyncClient | None = None
        self._memory_cursor: int | None = None
        self._transient = (OSError, TimeoutError, httpx.TransportError, WebhookRetry)

    async def _connect(self) -> int | None:
        self._client = httpx.AsyncClient(
            transport=self._transport, timeout=self._timeout_s, follow_redirects=False
        )
        if self._cursor_path is None:
            return self._memory_cursor
        return await asyncio.to_thread(_read_cursor, self._cursor_path)

    async def _write(self, blocks: list[Block]) -> None:
        for block in blocks:
            await self._post(block)
            self._memory_cursor = block.number
            if self._cursor_path is not None:
                await asyncio.to_thread(_write_cursor, self._cursor_path, block.number)
            self._written([block])

    async def _post(self, block: Block) -> None:
        assert self._client is not None
        row = block_row(block)
        row["source"] = str(block.source)
        contents = contents_of(block)
        if contents is not None:
            row["contents"] = contents
        body = json.dumps(row, separators=(",", ":")).encode()
        timestamp = int(self._wall())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            "Idempotency-Key": str(block.number),
            "Blockfeed-Block-Number": str(block.number),
        }
        response = await self._client.post(self._secret_url, content=body, headers=headers)
        status = response.status_code
        if 200 <= status < 300 or status == 409:
            return
        if status >= 500 or status in _RETRYABLE_STATUS:
            raise WebhookRetry(f"the receiver answered {status} for block {block.number}")
        raise SinkRefused(
            f"webhook {self.url} refused block {block.number} with HTTP {status}; "
            "check the receiver (signature secret, URL)"
        )

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _read_cursor(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the webhook cursor file {path}: {exc.strerror}") from None
    return int(text) if text.isdigit() else None


def _write_cursor(path: Path, number: int) -> None:
    """Replace the cursor file atomically (write a temporary file, then rename over it)."""
    path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)  # beside the state: private
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{number}\n")
    os.replace(tmp, path)


def cursor_file_for(state_dir: str | Path, url: str) -> Path:
    """Where ``serve`` keeps a webhook's cursor: named by a hash of the URL (no secret in it)."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(state_dir) / f"webhook-{digest}.cursor"
