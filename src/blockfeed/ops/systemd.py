"""sd_notify: tell systemd when the service is ready, what it is doing, and that it is alive.

``blockfeed serve`` runs under ``Type=notify`` with ``WatchdogSec=``. systemd passes the socket in
``NOTIFY_SOCKET`` (a path, or ``@name`` for the Linux abstract namespace) and the watchdog period
in ``WATCHDOG_USEC``. The protocol is one datagram of ``KEY=VALUE`` lines per message; nothing
comes back. Without ``NOTIFY_SOCKET`` everything here is a no-op.

Two parts, as in the rest of blockfeed: :class:`NotifyPlan` decides what to say from a status
snapshot and a time (pure, driven by a fake clock in the tests), and :func:`notify_service` is the
asyncio task around it that sends. The task runs on the same event loop as the feed, so a wedged
loop (a handler that blocks) stops the pings and systemd restarts the process. A feed that stopped
with an error, or cannot deliver for a lasting reason, stops them too once the problem has lasted
``unhealthy_after_s``: a restart re-resolves endpoints and reopens the store, and ``RestartSec``
paces the retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from blockfeed.gateway.protocols import StatusLike
from blockfeed.types import Mode
from blockfeed.util.redact import redact_url

__all__ = [
    "DEFAULT_STATUS_TICK_S",
    "DEFAULT_UNHEALTHY_AFTER_S",
    "NotifyPlan",
    "SystemdNotifier",
    "notify_service",
    "watchdog_interval_s",
]

log = logging.getLogger("blockfeed.systemd")

DEFAULT_STATUS_TICK_S = 1.0
"""How often the status is looked at when there is no watchdog (or a slow one)."""
DEFAULT_UNHEALTHY_AFTER_S = 60.0
"""How long the feed may report an error before the watchdog pings stop."""
_STATUS_MAX_CHARS = 200
_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s,;'\"]+", re.I)


class SystemdNotifier:
    """Sends sd_notify datagrams to one socket. Never raises: a lost message is logged once."""

    def __init__(self, address: str) -> None:
        if not address or address[0] not in "/@":
            raise ValueError("NOTIFY_SOCKET must be an absolute path or start with @")
        # "@name" is Linux's abstract namespace: the name starts with a NUL byte on the wire.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.setblocking(False)
        self._warned = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier | None:
        """The notifier systemd asked for; ``None`` outside systemd or when misconfigured."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if not address:
            return None
        try:
            return cls(address)
        except ValueError as exc:
            log.warning("ignoring NOTIFY_SOCKET: %s", exc)
            return None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; ``False`` if it could not be sent."""
        payload = "\n".join(assignments).encode("utf-8", "replace")
        try:
            self._sock.sendto(payload, self._address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot reach systemd's notify socket: %s", exc.strerror or exc)
            return False
        return True

    def close(self) -> None:
        self._sock.close()


def watchdog_interval_s(
    environ: Mapping[str, str] | None = None, *, pid: int | None = None
) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds (systemd's advice), or ``None`` for no watchdog.

    ``WATCHDOG_PID``, when set, names the process the watchdog is for; another process (a child)
    must not ping. A malformed value disables the watchdog with a warning rather than failing.
    """
    env = os.environ if environ is None else environ
    raw = env.get("WATCHDOG_USEC", "").strip()
    if not raw:
        return None
    owner = env.get("WATCHDOG_PID", "").strip()
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", raw[:32])
        return None
    if usec <= 0:
        log.warning("ignoring WATCHDOG_USEC=%d: not positive", usec)
        return None
    return usec / 2_000_000


def describe(status: StatusLike) -> str:
    """The one-line ``STATUS=`` text: mode, last block, finality, the feed's error if any."""
    parts = [str(status.mode)]
    if status.last_block is not None:
        parts.append(f"last block #{status.last_block.number}")
    elif status.mode == Mode.STARTING:
        parts.append("waiting for the first block")
    if status.finality_stalled:
        parts.append("finality stalled")
    if status.endpoint:
        parts.append(f"socket {redact_url(status.endpoint)}")
    error = getattr(status, "error", None)
    if error:  # errors name endpoints; mask any URL in them, as everywhere else
        parts.append("problem: " + _URL.sub(lambda m: redact_url(m.group(0)), str(error)))
    text = " | ".join(parts).replace("\n", " ")
    return text[:_STATUS_MAX_CHARS]


@dataclass
class NotifyPlan:
    """What to tell systemd, decided from status snapshots at given times (no I/O, no clock).

    Call :meth:`step` on every tick; it returns the assignments to send now. READY=1 goes out
    once, with the first delivered block; STATUS= whenever its text changes; WATCHDOG=1 on every
    tick while healthy. Ticks come at half the ping period systemd recommends (a quarter of
    ``WATCHDOG_USEC``), so a tick delayed by a loaded machine still pings within the period.
    """

    watchdog_interval_s: float | None
    unhealthy_after_s: float = DEFAULT_UNHEALTHY_AFTER_S
    ready_sent: bool = False
    last_status: str | None = None
    last_ping_at: float | None = None
    problem_since: float | None = None

    def step(self, status: StatusLike | None, now: float) -> list[str]:
        """Assignments to send at ``now``; ``status`` is ``None`` when it could not be read."""
        out: list[str] = []
        text = "status unavailable" if status is None else describe(status)
        if not self.ready_sent and status is not None and status.last_block is not None:
            self.ready_sent = True
            out.append("READY=1")
        if text != self.last_status:
            self.last_status = text
            out.append(f"STATUS={text}")
        if self.healthy(status, now) and self.watchdog_interval_s is not None:
            self.last_ping_at = now
            out.append("WATCHDOG=1")
        return out

    def next_tick_in(self) -> float:
        """Seconds until :meth:`step` should run again."""
        if self.watchdog_interval_s is None:
            return DEFAULT_STATUS_TICK_S
        return min(DEFAULT_STATUS_TICK_S, self.watchdog_interval_s / 2)

    def healthy(self, status: StatusLike | None, now: float) -> bool:
        """Whether the feed counts as alive at ``now`` (see the module docstring)."""
        if status is None:
            return False
        if not getattr(status, "error", None):
            self.problem_since = None
            return True
        if self.problem_since is None:
            self.problem_since = now
        return now - self.problem_since < self.unhealthy_after_s


@contextlib.asynccontextmanager
async def notify_service(
    status: Callable[[], StatusLike],
    *,
    environ: Mapping[str, str] | None = None,
    unhealthy_after_s: float = DEFAULT_UNHEALTHY_AFTER_S,
) -> AsyncIterator[NotifyPlan | None]:
    """Run the sd_notify task for the body of the ``async with``; STOPPING=1 when it ends.

    Yields the plan (for inspection), or ``None`` when ``NOTIFY_SOCKET`` is not set.
    """
    notifier = SystemdNotifier.from_env(environ)
    if notifier is None:
        yield None
        return
    plan = NotifyPlan(watchdog_interval_s(environ), unhealthy_after_s=unhealthy_after_s)
    task = asyncio.create_task(_run(notifier, plan, status), name="blockfeed-sd-notify")
    try:
        yield plan
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        notifier.notify("STOPPING=1", "STATUS=stopping")
        notifier.close()


async def _run(
    notifier: SystemdNotifier, plan: NotifyPlan, status: Callable[[], StatusLike]
) -> None:
    loop = asyncio.get_running_loop()
    while True:
        try:
            snapshot: StatusLike | None = status()
        except Exception:
            log.exception("cannot read the feed's status for systemd")
            snapshot = None
        messages = plan.step(snapshot, loop.time())
        if messages:
            notifier.notify(*messages)
        await asyncio.sleep(plan.next_tick_in())
