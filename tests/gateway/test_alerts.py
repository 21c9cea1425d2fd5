"""Alert webhooks sent to a real receiver on loopback: flavors, rate limit, retry, redaction."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from gateway_fakes import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from blockfeed.gateway.alerts import AlertDispatcher, alert_kind, describe, parse_webhook
from blockfeed.types import (
    EndpointQuarantined,
    FeedEvent,
    FinalityResumed,
    FinalityStalled,
    Mode,
    ModeChanged,
    Reconnect,
    SinkWrongChain,
    TriggerFailed,
)

WAIT_S = 20.0
KEY = "K3yK3yK3yK3yK3yK3yK3yK3yK3yK3y99"
HOOK_TOKEN = "T0k3nT0k3nT0k3nT0k3nT0k3nT0k3n"


class Receiver:
    """A webhook endpoint that records bodies and answers with scripted status codes."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, Any]] = []
        self.statuses: list[int] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: Request) -> Response:
        self.bodies.append((request.url.path, json.loads(await request.body())))
        self.arrived.set()
        status = self.statuses.pop(0) if self.statuses else 200
        return Response(status_code=status)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self.handle, methods=["POST"])])

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(WAIT_S):
            while len(self.bodies) < count:
                self.arrived.clear()
                await self.arrived.wait()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    async with serve(rec.app()) as url:
        yield rec, url


def mode_event(new: Mode = Mode.POLLING, reason: str = "socket silent for 18 s") -> FeedEvent:
    return ModeChanged(at=1_700_000_000.0, reason=reason, old_mode=Mode.STREAMING, new_mode=new,
                       endpoint=f"wss://node.example/ws/{KEY}")


async def no_sleep(_: float) -> None:
    await asyncio.sleep(0)


def test_flavor_detection() -> None:
    """Slack and Discord URLs (or slack+/discord+ prefixes) get their flavor; others are generic."""
    assert parse_webhook("https://hooks.slack.com/services/T/B/x").flavor == "slack"
    assert parse_webhook("https://discord.com/api/webhooks/1/abc").flavor == "discord"
    assert parse_webhook("https://discord.com/other").flavor == "generic"
    prefixed = parse_webhook("slack+http://127.0.0.1:9/hook")
    assert prefixed.flavor == "slack" and prefixed.url == "http://127.0.0.1:9/hook"
    assert parse_webhook("discord+https://x.example/h").flavor == "discord"
    assert parse_webhook("https://ops.example/hook").flavor == "generic"
    assert HOOK_TOKEN not in parse_webhook(f"https://hooks.slack.com/services/{HOOK_TOKEN}").label


def test_describe_sentences() -> None:
    """Each alert kind reads as a sentence with the network, reason and UTC time."""
    text = describe(mode_event(), "finney")
    expected = "⚠️ blockfeed [finney]: mode streaming → polling (socket silent for 18 s)"
    assert text.startswith(expected)
    assert text.endswith("UTC")
    stalled = FinalityStalled(at=0.0, reason="no finality for 72 s")
    assert "finality stalled (no finality for 72 s)" in describe(stalled, "test")


async def test_generic_slack_and_discord_payloads(receiver: tuple[Receiver, str]) -> None:
    """One event reaches each flavor of webhook with the right body shape."""
    rec, url = receiver
    hooks = [f"{url}/generic", f"slack+{url}/slack", f"discord+{url}/discord"]
    async with AlertDispatcher(hooks, network="finney") as alerts:
        alerts.on_event(mode_event())
        await rec.wait_for(3)
        await asyncio.wait_for(alerts.wait_idle(), WAIT_S)
    by_path = dict(rec.bodies)
    generic = by_path["/generic"]
    assert generic["kind"] == "mode_changed" and generic["new_mode"] == "polling"
    assert generic["network"] == "finney" and generic["reason"] == "socket silent for 18 s"
    assert set(by_path["/slack"]) == {"text"} and "streaming → polling" in by_path["/slack"]["text"]
    assert set(by_path["/discord"]) == {"content"}
    assert alerts.counts[("mode_changed", "sent")] == 3


async def test_non_alert_kinds_are_ignored(receiver: tuple[Receiver, str]) -> None:
    """Events that are not alert kinds (reconnect, finality_resumed) send nothing."""
    rec, url = receiver
    async with AlertDispatcher([url + "/h"], network="finney") as alerts:
        alerts.on_event(Reconnect(at=0.0, reason="x", attempt=1))
        alerts.on_event(FinalityResumed(at=0.0, reason="x"))
        alerts.on_event(ModeChanged(at=0.0, reason="socket back",
                                    old_mode=Mode.POLLING, new_mode=Mode.STREAMING))
        await rec.wait_for(1)
        await asyncio.wait_for(alerts.wait_idle(), WAIT_S)
    assert [body["kind"] for _, body in rec.bodies] == ["recovered"]


async def test_rate_limit_per_kind(receiver: tuple[Receiver, str]) -> None:
    """Within min_interval_s a kind is sent once; the next one says how many were suppressed."""
    rec, url = receiver
    clock = Clock()
    async with AlertDispatcher([url + "/h"], network="finney", min_interval_s=60.0,
                               clock=clock) as alerts:
        alerts.on_event(mode_event(Mode.POLLING))
        alerts.on_event(mode_event(Mode.POLLING, "again"))  # suppressed (same kind, 0 s later)
        clock.now += 30
        alerts.on_event(mode_event(Mode.POLLING, "and again"))  # suppressed
        alerts.on_event(FinalityStalled(at=0.0, reason="x"))  # other kind
        await rec.wait_for(2)
        clock.now += 31  # 61 s after the first one
        alerts.on_event(mode_event(Mode.POLLING, "flap"))
        await rec.wait_for(3)
        await asyncio.wait_for(alerts.wait_idle(), WAIT_S)
    kinds = [body["kind"] for _, body in rec.bodies]
    assert sorted(kinds) == ["finality_stalled", "mode_changed", "mode_changed"]
    assert rec.bodies[-1][1]["text"].endswith("(2 similar alerts suppressed)")
    assert alerts.counts[("mode_changed", "suppressed")] == 2


def test_alert_kinds_from_mode_changes() -> None:
    """Entering disconnected and returning to streaming get their own kinds; startup is quiet."""
    def change(old: Mode, new: Mode) -> FeedEvent:
        return ModeChanged(at=0.0, reason="r", old_mode=old, new_mode=new)

    assert alert_kind(change(Mode.STREAMING, Mode.DISCONNECTED)) == "disconnected"
    assert alert_kind(change(Mode.STARTING, Mode.DISCONNECTED)) == "disconnected"
    assert alert_kind(change(Mode.POLLING, Mode.STREAMING)) == "recovered"
    assert alert_kind(change(Mode.STREAMING, Mode.POLLING)) == "mode_changed"
    assert alert_kind(change(Mode.STARTING, Mode.STREAMING)) is None
    assert alert_kind(Reconnect(at=0.0, reason="r", attempt=2)) is None
    failed = TriggerFailed(at=0.0, reason="r", name="t", epoch=1, block_number=360, late=False,
                           attempts=3, error="boom")
    assert alert_kind(failed) == "trigger_failed"


async def test_retry_with_backoff_then_success(receiver: tuple[Receiver, str]) -> None:
    """500 and 429 answers are retried with growing, jittered delays until the webhook accepts."""
    rec, url = receiver
    rec.statuses = [500, 429, 503]
    delays: list[float] = []

    async def record_sleep(seconds: float) -> None:
        delays.append(seconds)
        await asyncio.sleep(0)

    async with AlertDispatcher([url + "/h"], network="finney", retries=3,
                               backoff_initial_s=1.0, backoff_max_s=30.0,
                               sleep=record_sleep, jitter=lambda: 0.5) as alerts:
        alerts.on_event(mode_event())
        await rec.wait_for(4)
        await asyncio.wait_for(alerts.wait_idle(), WAIT_S)
    assert delays == [0.5, 1.0, 2.0]  # jitter 0.5 x min(30, 1 * 2**attempt)
    assert alerts.counts[("mode_changed", "sent")] == 1
    assert alerts.counts[("mode_changed", "failed")] == 0


async def test_gives_up_after_retries_and_on_4xx(receiver: tuple[Receiver, str]) -> None:
    """After 1 + retries failures the alert counts as failed; a 400 is never retried."""
    rec, url = receiver
    rec.statuses = [500, 500, 500, 400]
    async with AlertDispatcher([url + "/h"], network="finney", retries=2, sleep=no_sleep,
                               min_interval_s=0.0) as alerts:
        alerts.on_event(mode_event())
        await rec.wait_for(3)
        alerts.on_event(ModeChanged(at=0.0, reason="x", old_mode=Mode.POLLING,
                                    new_mode=Mode.DISCONNECTED))
        await rec.wait_for(4)
        await asyncio.wait_for(alerts.wait_idle(), WAIT_S)
    assert alerts.counts[("mode_changed", "failed")] == 1
    assert alerts.counts[("disconnected", "failed")] == 1
    assert len(rec.bodies) == 4


async def test_unreachable_webhook_is_retried_then_failed() -> None:
    """A refused connection is a transport error: retried, then counted as failed, no crash."""
    with socket_closed_port() as port:
        async with AlertDispatcher([f"http://127.0.0.1:{port}/h"], network="finney",
                                   retries=2, sleep=no_sleep) as alerts:
            alerts.on_event(mode_event())
            await asyncio.wait_for(alerts.wait_idle(), WAIT_S)
    assert alerts.counts[("mode_changed", "failed")] == 1


def socket_closed_port() -> Any:
    import contextlib
    import socket

    @contextlib.contextmanager
    def closed() -> Any:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()  # nothing listens there now
        yield port

    return closed()


async def test_secrets_never_in_payloads_or_logs(
    receiver: tuple[Receiver, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Webhook tokens and endpoint keys appear neither in bodies nor in log lines."""
    rec, url = receiver
    caplog.set_level(logging.DEBUG, logger="blockfeed")
    rec.statuses = [500]
    hook = f"{url}/hooks/{HOOK_TOKEN}"
    endpoint = f"wss://node.example/ws/{KEY}"
    event = EndpointQuarantined(
        at=0.0, reason=f"parent hash mismatch from {endpoint}", endpoint=endpoint,
        for_s=300.0, others_usable=1,
    )
    # A sink's event carries URLs in its details (stream, redis): masked there too.
    wrong_chain = SinkWrongChain(
        at=0.0, reason=f"stream of another chain at {hook}", stream=f"via {hook}",
        stream_genesis="0x" + "11" * 32, genesis="0x" + "22" * 32,
        redis=f"redis://u:{KEY}@x.example:6379/0",
    )
    async with AlertDispatcher([hook, f"slack+{hook}"], network="finney", secrets=[endpoint],
                               sleep=no_sleep) as alerts:
        alerts.on_event(event)
        alerts.on_event(wrong_chain)
        await rec.wait_for(5)
        await asyncio.wait_for(alerts.wait_idle(), WAIT_S)
    everything = json.dumps([body for _, body in rec.bodies]) + caplog.text
    assert KEY not in everything
    assert HOOK_TOKEN not in everything
    assert "node.example" in everything  # the host is kept so people can tell endpoints apart
    assert alerts.counts[("endpoint_quarantined", "sent")] == 2
    generic = next(body for _, body in rec.bodies if body.get("kind") == "endpoint_quarantined")
    assert generic["endpoint"] == "wss://node.example/***"
    assert generic["details"] == {"for_s": 300.0, "others_usable": 1}
    sink = next(body for _, body in rec.bodies if body.get("kind") == "sink_wrong_chain")
    assert sink["details"]["redis"].startswith("redis://")
    assert "x.example" in sink["details"]["redis"]


async def test_full_queue_drops_without_blocking() -> None:
    """With the sender stuck, on_event stays instant and extra alerts are dropped and counted."""
    gate = asyncio.Event()

    async def stuck(request: httpx.Request) -> httpx.Response:
        await gate.wait()
        return httpx.Response(200)

    alerts = AlertDispatcher(["https://ops.example/h"], network="finney", queue_size=2,
                             min_interval_s=0.0, transport=httpx.MockTransport(stuck))
    await alerts.start()
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(50):
            alerts.on_event(ModeChanged(at=0.0, reason=f"flap {i}", old_mode=Mode.STREAMING,
                                        new_mode=Mode.POLLING))
            await asyncio.sleep(0)
        assert loop.time() - started < 5.0  # never waited on the stuck webhook
        assert alerts.counts[("mode_changed", "dropped")] >= 45
    finally:
        gate.set()
        await alerts.stop(timeout_s=WAIT_S)


async def test_no_webhooks_means_no_task() -> None:
    """Without webhooks the dispatcher starts nothing and ignores events."""
    alerts = AlertDispatcher([], network="finney")
    async with alerts:
        alerts.on_event(mode_event())
    assert not alerts.counts
