"""sd_notify: the plan on a fake clock, the socket with a datagram socket standing in for systemd,
and a real `blockfeed serve` process under a fake systemd."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from blockfeed.devnode import DevNode, DevNodeConfig
from blockfeed.ops.systemd import (
    NotifyPlan,
    SystemdNotifier,
    describe,
    notify_service,
    watchdog_interval_s,
)
from blockfeed.types import Block, Mode, Source

WAIT_S = 60.0
KEY = "k3yk3yk3yk3yk3yk3yk3yk3yk3yk3y"


@dataclasses.dataclass(frozen=True)
class Status:
    """The fields of FeedStatus the notifier reads."""

    mode: Mode = Mode.STARTING
    last_block: Block | None = None
    finality_stalled: bool = False
    endpoint: str | None = None
    error: str | None = None


def block(number: int) -> Block:
    return Block(number=number, hash=f"0x{number:064x}", parent_hash=f"0x{number - 1:064x}",
                 source=Source.WS, received_at=0.0)


STREAMING = Status(mode=Mode.STREAMING, last_block=block(7))


@pytest.fixture
def fake_systemd() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket in the abstract namespace, as systemd's notify socket; its address."""
    name = f"blockfeed-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.setblocking(False)
    yield sock, "@" + name
    sock.close()


async def receive(sock: socket.socket, timeout_s: float = WAIT_S) -> list[str]:
    """One datagram as its assignments (bounded wait)."""
    loop = asyncio.get_running_loop()
    data = await asyncio.wait_for(loop.sock_recv(sock, 4096), timeout_s)
    return data.decode().split("\n")


# ---------------------------------------------------------------- the plan, on a fake clock


def test_ready_once_with_the_first_block() -> None:
    """READY=1 waits for a delivered block and is sent exactly once."""
    plan = NotifyPlan(watchdog_interval_s=1.0)
    assert "READY=1" not in plan.step(Status(), 0.0)
    assert "READY=1" in plan.step(STREAMING, 0.5)
    assert "READY=1" not in plan.step(STREAMING, 1.0)


def test_status_sent_only_when_it_changes() -> None:
    """STATUS= carries the mode and last block, and is repeated only when the text changes."""
    plan = NotifyPlan(watchdog_interval_s=None)
    first = plan.step(STREAMING, 0.0)
    assert "STATUS=streaming | last block #7" in first
    assert plan.step(STREAMING, 1.0) == []
    polling = dataclasses.replace(STREAMING, mode=Mode.POLLING, finality_stalled=True)
    assert plan.step(polling, 2.0) == ["STATUS=polling | last block #7 | finality stalled"]


def test_watchdog_every_tick_within_half_the_period() -> None:
    """WATCHDOG_USEC=2 s: ticks every 0.5 s, each pinging, so pings are at most 1 s apart."""
    plan = NotifyPlan(watchdog_interval_s=watchdog_interval_s({"WATCHDOG_USEC": "2000000"}))
    assert plan.watchdog_interval_s == 1.0
    assert plan.next_tick_in() == 0.5
    now, pings = 0.0, []
    for _ in range(10):
        if "WATCHDOG=1" in plan.step(STREAMING, now):
            pings.append(now)
        now += plan.next_tick_in()
    assert len(pings) == 10
    assert max(b - a for a, b in itertools.pairwise(pings)) <= 1.0


def test_no_watchdog_without_watchdog_usec() -> None:
    """Without a watchdog, no WATCHDOG=1 is sent and the status is looked at every second."""
    plan = NotifyPlan(watchdog_interval_s=None)
    assert all("WATCHDOG=1" not in plan.step(STREAMING, float(t)) for t in range(5))
    assert plan.next_tick_in() == 1.0


def test_lasting_feed_error_stops_the_pings() -> None:
    """A feed error silences the watchdog once it has lasted unhealthy_after_s, not before."""
    plan = NotifyPlan(watchdog_interval_s=1.0, unhealthy_after_s=10.0)
    broken = dataclasses.replace(STREAMING, error="database or disk is full")
    assert "WATCHDOG=1" in plan.step(broken, 100.0)
    assert "WATCHDOG=1" in plan.step(broken, 109.0)
    assert "WATCHDOG=1" not in plan.step(broken, 110.0)
    assert "WATCHDOG=1" in plan.step(STREAMING, 111.0), "recovered: pings resume"
    assert "WATCHDOG=1" in plan.step(broken, 112.0), "a new problem starts a new grace period"


def test_unreadable_status_is_unhealthy() -> None:
    """When the status cannot be read, no ping is sent and the status says so."""
    plan = NotifyPlan(watchdog_interval_s=1.0)
    assert plan.step(None, 0.0) == ["STATUS=status unavailable"]


def test_status_text_redacts_the_endpoint() -> None:
    """An API key in the socket's URL or in an error never reaches systemd's status line."""
    text = describe(dataclasses.replace(
        STREAMING, endpoint=f"wss://node.example/ws/{KEY}",
        error=f"block #9 from wss://user:{KEY}@other.example:443 does not extend the checkpoint",
    ))
    assert KEY not in text
    assert "wss://node.example/***" in text
    assert "problem: block #9 from wss://other.example:443/*** does not extend" in text


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "2000000"}, 1.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "two seconds"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
    ],
)
def test_watchdog_interval_from_env(env: dict[str, str], expected: float | None) -> None:
    """Half of WATCHDOG_USEC; none for another process's watchdog or a malformed value."""
    assert watchdog_interval_s(env) == expected


# ---------------------------------------------------------------- the socket


def test_notifier_off_without_notify_socket_or_with_a_bad_one() -> None:
    """No NOTIFY_SOCKET means no notifier; a relative path is refused without raising."""
    assert SystemdNotifier.from_env({}) is None
    assert SystemdNotifier.from_env({"NOTIFY_SOCKET": "relative/path"}) is None


async def test_datagrams_reach_a_path_socket(tmp_path: Path) -> None:
    """A filesystem NOTIFY_SOCKET gets each message as one datagram of KEY=VALUE lines."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        notifier = SystemdNotifier(str(path))
        assert notifier.notify("READY=1", "STATUS=ok")
        assert await receive(sock) == ["READY=1", "STATUS=ok"]
        notifier.close()


def test_unreachable_socket_does_not_raise(tmp_path: Path) -> None:
    """A notify socket that went away loses the message and reports False, nothing more."""
    notifier = SystemdNotifier(str(tmp_path / "gone"))
    assert notifier.notify("WATCHDOG=1") is False
    assert notifier.notify("WATCHDOG=1") is False
    notifier.close()


async def test_notify_service_task(fake_systemd: tuple[socket.socket, str]) -> None:
    """The task sends READY=1, STATUS= and pings while running, and STOPPING=1 when it ends."""
    sock, address = fake_systemd
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"}
    got: list[str] = []
    async with notify_service(lambda: STREAMING, environ=env) as plan:
        assert plan is not None
        while got.count("WATCHDOG=1") < 3:
            got += await receive(sock)
    while "STOPPING=1" not in got:
        got += await receive(sock)
    assert got.count("READY=1") == 1
    assert "STATUS=streaming | last block #7" in got


async def test_notify_service_is_a_no_op_outside_systemd() -> None:
    """Without NOTIFY_SOCKET the context manager yields None and starts nothing."""
    before = len(asyncio.all_tasks())
    async with notify_service(lambda: STREAMING, environ={}) as plan:
        assert plan is None
        assert len(asyncio.all_tasks()) == before


# ---------------------------------------------------------------- a real `blockfeed serve`


async def test_serve_under_fake_systemd(fake_systemd: tuple[socket.socket, str]) -> None:
    """`serve` with NOTIFY_SOCKET and WATCHDOG_USEC=2000000: READY=1, pings at least every
    second, STOPPING=1 on SIGTERM."""
    sock, address = fake_systemd
    async with DevNode(DevNodeConfig(block_time_s=0.1)) as node:
        env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "2000000",
               "BLOCKFEED_BLOCK_TIME_S": "0.1", "NO_COLOR": "1"}
        env.pop("WATCHDOG_PID", None)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "blockfeed", "serve", node.ws_url, "--port", "0",
            "--state", ":memory:", "--network", "local",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
        )
        got: list[tuple[float, str]] = []
        try:
            async with asyncio.timeout(WAIT_S):
                while not any(line == "READY=1" for _, line in got):
                    got += [(time.monotonic(), line) for line in await receive(sock)]
                pings_after_ready = 0
                while pings_after_ready < 6:
                    lines = await receive(sock)
                    got += [(time.monotonic(), line) for line in lines]
                    pings_after_ready += lines.count("WATCHDOG=1")
                proc.send_signal(signal.SIGTERM)
                while not any(line == "STOPPING=1" for _, line in got):
                    got += [(time.monotonic(), line) for line in await receive(sock)]
                code = await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            assert proc.stderr is not None
            stderr = (await proc.stderr.read()).decode()
    assert code == 0, stderr
    lines = [line for _, line in got]
    assert lines.count("READY=1") == 1
    assert any(line.startswith("STATUS=streaming") for line in lines), lines
    pings = [at for at, line in got if line == "WATCHDOG=1"]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    # Sent every 0.5 s: typically well under a second apart. systemd's limit is 2 s; the hard
    # bound leaves room for a loaded machine.
    assert sorted(gaps)[len(gaps) // 2] <= 1.0, gaps
    assert max(gaps) < 2.0, gaps
