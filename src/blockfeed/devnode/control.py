"""The control API: inject and list faults over HTTP (``blockfeed devnode --control-port``).

::

    POST   /faults        {"kind": "restart", "seconds": 5, ...options}  -> 201 {fault}
                          bad input -> 400 {"error": "..."}
    GET    /faults        -> 200 {"faults": [...], "kinds": {kind: {...}}}
    DELETE /faults        -> 200 {"cleared": n}          (end every fault now)
    DELETE /faults/<id>   -> 200 {"cleared": 1} | 404    (an id like "f3", or a kind)
    GET    /status        -> 200 {best, finalized, urls, faults, stats}

It listens on its own port so a ``restart`` fault never takes it down, on loopback unless
``--control-host`` says otherwise. It has no authentication, so it keeps web pages out: a POST
must say ``Content-Type: application/json`` (a browser cannot send that cross-origin without a
preflight, which is refused), a request whose ``Origin`` is not this server is refused (403), and
so is one whose ``Host`` is a name other than ``localhost`` or the address it listens on (a
DNS-rebinding page names its own host).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from blockfeed.devnode.faults import FAULT_SPECS, InvalidFault
from blockfeed.devnode.http import (
    MAX_HEAD_BYTES,
    HttpProtocolError,
    json_response,
    read_body,
    read_request,
)

if TYPE_CHECKING:
    from blockfeed.devnode.node import DevNode

MAX_CONTROL_BODY_BYTES = 64 * 1024
STOP_GRACE_S = 2.0
DEFAULT_CONTROL_HOST = "127.0.0.1"
"""Loopback: anything that can reach the control port can inject faults."""
_log = logging.getLogger("blockfeed.devnode")


def _kinds() -> dict[str, Any]:
    return {
        spec.kind: {
            "class": spec.fault_class,
            "summary": spec.summary,
            "default_seconds": spec.default_seconds,
            "options": {
                option.name: list(option.default) if option.type is tuple else option.default
                for option in spec.options
            },
        }
        for spec in FAULT_SPECS.values()
    }


class ControlServer:
    """A tiny HTTP server driving ``node.faults``."""

    def __init__(self, node: DevNode, *, host: str, port: int) -> None:
        self._node = node
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    async def start(self) -> None:
        """Listen (``OSError`` if the port is taken)."""
        self._server = await asyncio.start_server(
            self._on_client, self._host, self._port, limit=MAX_HEAD_BYTES
        )
        if self._port == 0 and self._server.sockets:
            self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        if self._tasks:  # let handlers end by themselves (see DevNode.stop)
            await asyncio.wait(list(self._tasks), timeout=STOP_GRACE_S)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        try:
            while True:
                try:
                    request = await read_request(reader)
                    if request is None:
                        return
                    length = request.headers.get("content-length", "0")
                    if length.isdigit() and int(length) > MAX_CONTROL_BODY_BYTES:
                        raise HttpProtocolError(413, "control request body too large")
                    body = await read_body(reader, request, writer)
                except (HttpProtocolError, ValueError) as exc:
                    status = exc.status if isinstance(exc, HttpProtocolError) else 400
                    writer.write(json_response(status, {"error": str(exc)}, keep_alive=False))
                    await writer.drain()
                    return
                status, payload = self.handle(
                    request.method, request.path, body, request.headers
                )
                writer.write(json_response(status, payload, keep_alive=request.keep_alive))
                await writer.drain()
                if not request.keep_alive:
                    return
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        except Exception:
            _log.exception("devnode control: handler failed")
        finally:
            self._writers.discard(writer)
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    def handle(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        """Route one request; returns (status, JSON payload). Never raises.

        ``headers`` have lower-cased names, as :func:`read_request` gives them.
        """
        refused = self._refusal(method, headers or {})
        if refused is not None:
            return refused
        path = path.split("?", 1)[0].rstrip("/") or "/"
        node = self._node
        now = node.faults.now()
        if path == "/faults":
            if method == "GET":
                return 200, {
                    "faults": [fault.to_dict(now) for fault in node.faults.active()],
                    "kinds": _kinds(),
                }
            if method == "POST":
                return self._inject(body)
            if method == "DELETE":
                return 200, {"cleared": node.faults.clear()}
            return 405, {"error": "use GET, POST or DELETE on /faults"}
        if path.startswith("/faults/"):
            which = path.removeprefix("/faults/")
            if method != "DELETE":
                return 405, {"error": "use DELETE on /faults/<id or kind>"}
            cleared = node.faults.clear(which)
            if not cleared:
                return 404, {"error": f"no active fault with id or kind {which!r}"}
            return 200, {"cleared": cleared}
        if path in ("/", "/status"):
            if method != "GET":
                return 405, {"error": "use GET on /status"}
            return 200, {
                "ws_url": node.ws_url,
                "http_url": node.http_url,
                "best": node.chain.best_number,
                "finalized": node.chain.finalized_number,
                "genesis_hash": node.chain.genesis_hash,
                "faults": [fault.to_dict(now) for fault in node.faults.active()],
                "stats": node.stats.to_dict(),
            }
        return 404, {"error": f"unknown path {path[:100]!r}; try /faults or /status"}

    def _refusal(self, method: str, headers: Mapping[str, str]) -> tuple[int, Any] | None:
        """Why a request that may come from a web page is refused, or None to serve it."""
        host = headers.get("host", "")
        if host and not self._host_allowed(host):
            return 403, {"error": f"Host {host[:100]!r} is not this control server"}
        origin = headers.get("origin")
        if origin is not None and origin != f"http://{host}":
            return 403, {"error": "cross-origin requests are refused"}
        if method == "POST":
            media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media_type != "application/json":
                return 415, {"error": "POST needs Content-Type: application/json"}
        return None

    def _host_allowed(self, host_header: str) -> bool:
        """A Host header naming an IP address, localhost or the configured host."""
        name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
        name = name.strip("[]").lower()
        if name in ("localhost", self._host.lower()):
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    def _inject(self, body: bytes) -> tuple[int, Any]:
        try:
            request = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return 400, {"error": 'body must be JSON like {"kind": "restart", "seconds": 5}'}
        if not isinstance(request, dict):
            return 400, {"error": "body must be a JSON object with kind, seconds and options"}
        if "kind" not in request:
            return 400, {"error": "missing 'kind'"}
        options = {key: value for key, value in request.items() if key not in ("kind", "seconds")}
        try:
            fault = self._node.faults.inject(
                request["kind"], seconds=request.get("seconds"), **options
            )
        except InvalidFault as exc:
            return 400, {"error": str(exc)}
        return 201, fault.to_dict(self._node.faults.now())
