"""Real PostgreSQL and nats-server processes on free loopback ports, for the sink tests and bench.

PostgreSQL refuses to run as root, so when the tests run as root the cluster is created and run
as ``nobody`` (``initdb`` into a fresh directory under /tmp that ``nobody`` owns). Both kinds
start within a bounded wait and are stopped (then their directories removed) by ``stop()``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
NOBODY = 65534


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def postgres_bindir() -> Path | None:
    """Where Debian's ``postgresql`` put initdb/postgres (newest version), or None."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    return Path(candidates[-1]).parent if candidates else None


def nats_binary() -> str | None:
    return shutil.which("nats-server")


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-800:]
    except OSError:
        return "(no log)"


class PostgresServer:
    """A throwaway PostgreSQL cluster; ``url(db)`` connects as the trust-authenticated superuser.

    ``durable=False`` turns fsync off (tests: the data is thrown away anyway); the benchmark
    runs with PostgreSQL's defaults.
    """

    USER = "blockfeed"

    def __init__(self, *, durable: bool = False) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL binaries not found (Debian package postgresql)")
        self.bindir = bindir
        self.durable = durable
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="blockfeed-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self._as_nobody = os.geteuid() == 0
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/{database}"

    def _user(self) -> dict[str, int]:
        return {"user": NOBODY, "group": NOBODY} if self._as_nobody else {}

    def start(self) -> None:
        if self._as_nobody:
            os.chown(self.dir, NOBODY, NOBODY)
        if not self.data.exists():
            subprocess.run(
                [str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.USER, "-A",
                 "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.dir,
                timeout=START_TIMEOUT_S, **self._user(),
            )  # fmt: skip
        options = ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
                   "-c", "max_connections=50"]  # fmt: skip
        if not self.durable:
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off",
                        "-c", "full_page_writes=off"]  # fmt: skip
        logfile = open(self.log, "ab")
        if self._as_nobody:
            os.chown(self.log, NOBODY, NOBODY)
        self._proc = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port), *options],
            stdout=logfile, stderr=subprocess.STDOUT, cwd=self.dir, **self._user(),
        )  # fmt: skip
        logfile.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited at start: {_tail(self.log)}")
            ready = subprocess.run(
                [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
            )  # fmt: skip
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"postgres did not get ready within {START_TIMEOUT_S} s")

    def stop(self, *, remove: bool = True) -> None:
        """Fast shutdown (SIGINT: disconnect clients, roll back, stop); then remove the files."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)


class NatsServer:
    """One ``nats-server -js`` with its own store directory; optionally a cluster member."""

    def __init__(
        self,
        *,
        name: str = "n1",
        store: Path | None = None,
        cluster_port: int | None = None,
        routes: list[int] | None = None,
    ) -> None:
        binary = nats_binary()
        if binary is None:
            raise RuntimeError("nats-server not found (Debian package nats-server)")
        self.binary = binary
        self.name = name
        self.port = free_port()
        self.dir = store or Path(tempfile.mkdtemp(prefix="blockfeed-nats-"))
        self.log = self.dir / f"{name}.log"
        self.cluster_port = cluster_port
        self.routes = routes or []
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-n", self.name,
                "-sd", str(self.dir / f"js-{self.name}"), "-l", str(self.log)]  # fmt: skip
        if self.cluster_port is not None:
            args += ["--cluster_name", "blockfeed-test",
                     "--cluster", f"nats://127.0.0.1:{self.cluster_port}",
                     "--routes", ",".join(f"nats://127.0.0.1:{p}" for p in self.routes),
                     ]  # fmt: skip
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"nats-server exited at start: {_tail(self.log)}")
            if _port_open(self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nats-server did not listen within {START_TIMEOUT_S} s")

    def kill(self) -> None:
        """SIGKILL (a crashed server)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)

    def stop(self, *, remove: bool = True) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)
        if remove:
            with contextlib.suppress(OSError):
                shutil.rmtree(self.dir, ignore_errors=True)
