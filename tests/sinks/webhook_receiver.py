"""A minimal HTTP/1.1 webhook receiver on 127.0.0.1 for the sink tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from blockfeed.sinks.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

SECRET = b"s3cret-for-tests"
WAIT_S = 30.0


class Receiver:
    """A minimal HTTP/1.1 receiver: verifies signatures, stores blocks by number, can fail."""

    def __init__(self) -> None:
        self.accepted: list[dict[str, Any]] = []
        self.requests = 0
        self.bad_signatures = 0
        self.fail_with: int | None = None
        self.changed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/blocks"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                pairs = (line.partition(":") for line in lines[1:] if line)
                headers = {k.lower(): v.strip() for k, _, v in pairs}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status = self._handle(headers, body)
                writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def _handle(self, headers: dict[str, str], body: bytes) -> int:
        self.requests += 1
        self.changed.set()
        if self.fail_with is not None:
            return self.fail_with
        ok = verify_signature(SECRET, headers.get(TIMESTAMP_HEADER.lower(), ""), body,
                              headers.get(SIGNATURE_HEADER.lower(), ""))  # fmt: skip
        if not ok:
            self.bad_signatures += 1
            return 401
        block = json.loads(body)
        assert headers["idempotency-key"] == str(block["number"])
        if any(b["number"] == block["number"] for b in self.accepted[-5:]):
            return 200  # a retry of a block already stored: acknowledge, store once
        self.accepted.append(block)
        return 200

    async def wait_for(self, count: int) -> None:
        async def loop() -> None:
            while len(self.accepted) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), WAIT_S)
