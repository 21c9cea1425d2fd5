"""Real redis-server processes for the Redis tests, on free loopback ports.

Each test module shares one server (``redis_server``); tests that stop and restart Redis get
their own (``own_redis``, ``persistent_redis``). Streams are named per test, so tests sharing a
server never see each other's entries. Without the ``redis-server`` binary these tests are
skipped with the reason; the pure tests in this folder still run.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import redis

REDIS_BINARY = shutil.which("redis-server")
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
_PORT_ATTEMPTS = 3


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server child process; ``stop()`` and ``start()`` keep the same port."""

    def __init__(self, workdir: Path, *, persistent: bool = False) -> None:
        self.workdir = workdir
        self.persistent = persistent
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A synchronous client for arranging and inspecting the stream in tests."""
        return redis.Redis(
            host="127.0.0.1", port=self.port, decode_responses=True, socket_timeout=5
        )

    def start(self) -> None:
        """Start the server (a new free port the first time) and wait until PING answers."""
        if self.port:
            self._launch()
            return
        for attempt in range(_PORT_ATTEMPTS):
            self.port = _free_port()
            try:
                self._launch()
                return
            except RuntimeError:
                if attempt == _PORT_ATTEMPTS - 1:
                    raise

    def _launch(self) -> None:
        assert REDIS_BINARY is not None
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.persistent
            else ["--appendonly", "no"]
        )
        log = self.workdir / f"redis-{self.port}.log"
        self._proc = subprocess.Popen(
            [
                REDIS_BINARY,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                *persistence,
                "--dir",
                str(self.workdir),
                "--daemonize",
                "no",
                "--logfile",
                str(log),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited at start: {_tail(log)}")
            with contextlib.suppress(redis.RedisError), self.client() as probe:
                if probe.ping():
                    return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING within {START_TIMEOUT_S} s")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and wait until it has exited."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-500:]
    except OSError:
        return "(no log)"


def _server(tmp_path_factory: pytest.TempPathFactory, *, persistent: bool) -> Iterator[RedisServer]:
    if REDIS_BINARY is None:
        pytest.skip(
            "redis-server binary not found (Debian package redis-server; see "
            "scripts/system-deps.sh)"
        )
    server = RedisServer(tmp_path_factory.mktemp("redis"), persistent=persistent)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server shared by one test module (never stopped by a test)."""
    yield from _server(tmp_path_factory, persistent=False)


@pytest.fixture
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server for one test that may stop and restart it (no persistence)."""
    yield from _server(tmp_path_factory, persistent=False)


@pytest.fixture
def persistent_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server with an fsync-always append-only file: data survives a restart."""
    yield from _server(tmp_path_factory, persistent=True)


@pytest.fixture
def stream_name(request: pytest.FixtureRequest) -> str:
    """A stream name no other test uses."""
    return f"test:{request.node.name}:{uuid.uuid4().hex[:8]}"
