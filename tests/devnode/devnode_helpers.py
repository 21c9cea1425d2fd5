"""Clients and config shared by the devnode tests: real websockets/httpx on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from blockfeed.devnode import DevNodeConfig

START_BLOCK = 6_940_000
WAIT_S = 5.0
"""Generous bound for waits on real events (loaded 2-core machine)."""
QUIET_S = 0.3
"""How long "nothing arrives" is watched for; long against loopback round trips (< 5 ms)."""


def make_config(**overrides: Any) -> DevNodeConfig:
    """A small deterministic node: manual blocks (node.advance), no finality jumps."""
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "block_time_s": 0.05,
        "finality_lag": 2,
        "finality_jumps": 0.0,
        "start_block": START_BLOCK,
        "seed": 1,
        "auto_produce": False,
        "tempos": {1: 360, 7: 99},
    }
    values.update(overrides)
    return DevNodeConfig(**values)


def request(method: str, params: Any = None, request_id: int | str = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


async def http_call(url: str, method: str, params: Any = None) -> Any:
    """One JSON-RPC call over HTTP; returns the whole response object."""
    async with httpx.AsyncClient(trust_env=False, timeout=WAIT_S) as client:
        reply = await client.post(url, json=request(method, params))
        assert reply.status_code == 200, reply.text
        return reply.json()


class WsClient:
    """JSON-RPC over a real websockets connection; notifications kept apart from answers."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.answers: asyncio.Queue[Any] = asyncio.Queue()
        self.notifications: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed = asyncio.Event()
        self._next_id = 1
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                message = json.loads(frame)
                if isinstance(message, dict) and "method" in message:
                    await self.notifications.put(message)
                else:
                    await self.answers.put(message)
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()

    async def send(self, message: Any) -> None:
        await self.ws.send(message if isinstance(message, str) else json.dumps(message))

    async def call(self, method: str, params: Any = None, timeout_s: float = WAIT_S) -> Any:
        """Send one request and return its whole answer (one call at a time)."""
        request_id = self._next_id
        self._next_id += 1
        await self.send(request(method, params, request_id))
        answer = await asyncio.wait_for(self.answers.get(), timeout_s)
        assert answer.get("id") == request_id, answer
        return answer

    async def subscribe(self, method: str = "chain_subscribeFinalizedHeads") -> str:
        answer = await self.call(method)
        assert "result" in answer, answer
        return str(answer["result"])

    async def notification(self, timeout_s: float = WAIT_S) -> dict[str, Any]:
        return await asyncio.wait_for(self.notifications.get(), timeout_s)

    async def silent_for(self, seconds: float = QUIET_S) -> bool:
        """True when no notification arrives within ``seconds``."""
        try:
            await asyncio.wait_for(self.notifications.get(), seconds)
        except TimeoutError:
            return True
        return False

    async def aclose(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
        await self.ws.close()


@contextlib.asynccontextmanager
async def ws_client(url: str, **options: Any) -> AsyncIterator[WsClient]:
    options.setdefault("ping_interval", None)
    options.setdefault("open_timeout", WAIT_S)
    options.setdefault("close_timeout", 1)
    async with connect(url, proxy=None, **options) as ws:
        client = WsClient(ws)
        try:
            yield client
        finally:
            await client.aclose()


def number_of(notification: dict[str, Any]) -> int:
    return int(notification["params"]["result"]["number"], 16)
