"""Alert webhooks: feed events -> Slack, Discord or generic JSON, without ever blocking the feed.

The feed calls :meth:`AlertDispatcher.on_event` synchronously for every event. That method only
decides (is this kind alertable, is it rate-limited) and puts the alert on one bounded queue per
webhook; each webhook has its own background task doing the HTTP. A full queue drops the alert
for that webhook and counts it, so a dead webhook can never slow block delivery, and a slow or
hostile one never delays the others.

Each delivery attempt is bounded as a whole: ``timeout_s`` covers connect, request, status and
body (httpx's own timeouts restart with every chunk, so an endless body never trips them), and
at most ``MAX_RESPONSE_BYTES`` of the body are read before the connection is closed (an
endless 200 body once grew the process by 5.6 GiB in 25 s).

Flavors: a URL on ``hooks.slack.com`` (or prefixed ``slack+``) gets ``{"text": ...}``; one on
``discord.com/api/webhooks`` (or prefixed ``discord+``) gets ``{"content": ...}``; anything else
gets a JSON object with the event's fields. Webhook URLs are secrets (anyone holding one can post
to the channel): logs show them through ``redact_url`` and payload text is scrubbed of every
configured URL.

Retries: up to ``retries`` more attempts on a transport error, 429 or 5xx, waiting
``uniform(0, min(backoff_max_s, backoff_initial_s * 2**attempt))`` (full jitter) or the server's
``Retry-After`` when it is shorter than ``backoff_max_s``. Other 4xx answers are final.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from blockfeed.config import strip_webhook_prefix
from blockfeed.gateway.status import scrub
from blockfeed.types import FeedEvent, Mode, ModeChanged
from blockfeed.util.redact import redact_text, redact_url

log = logging.getLogger(__name__)

ALERT_KINDS = frozenset(
    {
        "mode_changed",
        "disconnected",
        "recovered",
        "finality_stalled",
        "endpoint_quarantined",
        "trigger_failed",
        "unavailable",
        "chain_diverged",
        "sink_wrong_chain",
    }
)
DEFAULT_MIN_INTERVAL_S = 60.0
"""At most one alert of each kind per minute; the next one says how many were suppressed."""
DEFAULT_QUEUE_SIZE = 100
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF_INITIAL_S = 1.0
DEFAULT_BACKOFF_MAX_S = 30.0
DEFAULT_TIMEOUT_S = 5.0
"""Total time for one delivery attempt: connect, send, status line, headers and body."""
MAX_RESPONSE_BYTES = 16 * 1024
"""Response body read at most (only the status matters; the rest is left unread)."""
DEFAULT_STOP_TIMEOUT_S = 3.0
DISCORD_MAX_CHARS = 2000

Flavor = Literal["generic", "slack", "discord"]


def alert_kind(event: FeedEvent) -> str | None:
    """The alert an event raises, or ``None``.

    The feed reports every transition as ``mode_changed``; the two that matter most get their
    own kind (and their own rate limit): entering ``disconnected``, and getting back to
    ``streaming`` from a degraded mode. Leaving ``starting`` for a working mode is routine.
    """
    if not isinstance(event, ModeChanged):
        return event.kind if event.kind in ALERT_KINDS else None
    if event.is_disconnect:
        return "disconnected"
    if event.old_mode == Mode.STARTING:
        return None
    if event.is_recovery:
        return "recovered"
    return "mode_changed"


@dataclass(frozen=True, slots=True)
class Webhook:
    """A destination; ``label`` is the only form of the URL that may be logged."""

    url: str
    flavor: Flavor
    label: str


def parse_webhook(raw: str) -> Webhook:
    """Recognise the flavor from a ``slack+``/``discord+`` prefix or the URL's host and path."""
    prefix, url = strip_webhook_prefix(raw)
    flavor: Flavor = "generic"
    if prefix in ("slack", "discord"):
        flavor = prefix  # type: ignore[assignment]
    else:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if host == "hooks.slack.com":
            flavor = "slack"
        elif host in ("discord.com", "discordapp.com") and parts.path.startswith("/api/webhooks"):
            flavor = "discord"
    return Webhook(url=url, flavor=flavor, label=redact_url(url))


def describe(event: FeedEvent, network: str, kind: str | None = None) -> str:
    """The human sentence for an event (Slack/Discord text, generic ``text`` field); ``kind``
    is its alert kind (default: :func:`alert_kind`, else the event's own)."""
    kind = kind or alert_kind(event) or event.kind
    when = datetime.fromtimestamp(event.at, tz=UTC).strftime("%H:%M:%S UTC")
    where = f"blockfeed [{network}]"
    reason = f" ({event.reason})" if event.reason else ""
    old_mode, new_mode = event.wire_modes()
    old = str(old_mode) if old_mode is not None else "?"
    new = str(new_mode) if new_mode is not None else "?"
    endpoint = f" {event.endpoint}" if event.endpoint else ""
    sentences = {
        "mode_changed": f"⚠️ {where}: mode {old} → {new}{reason}",
        "disconnected": f"🔴 {where}: DISCONNECTED, no endpoint answers{reason}",
        "recovered": f"✅ {where}: recovered, {old} → {new}{reason}",
        "finality_stalled": f"⏸️ {where}: chain finality stalled{reason}",
        "endpoint_quarantined": f"🚫 {where}: endpoint{endpoint} quarantined{reason}",
        "trigger_failed": f"❗ {where}: epoch trigger failed{reason}",
        "chain_diverged": f"❌ {where}: CHAIN DIVERGED, every endpoint serves another chain"
                          f"{reason}",
        "sink_wrong_chain": f"❌ {where}: a sink refused to write into a target of another "
                            f"chain{reason}",
    }
    text = sentences.get(kind, f"{where}: {kind}{reason}")
    return f"{text} at {when}"


@dataclass(frozen=True, slots=True)
class Alert:
    """An event ready to send: its text is already scrubbed; ``kind`` is its alert kind
    (``disconnected`` and ``recovered`` are mode changes with their own kind)."""

    event: FeedEvent
    kind: str
    text: str


class AlertDispatcher:
    """Rate-limits, queues and delivers alerts to every configured webhook."""

    def __init__(
        self,
        webhooks: Sequence[str],
        *,
        network: str,
        secrets: Sequence[str] = (),
        min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        retries: int = DEFAULT_RETRIES,
        backoff_initial_s: float = DEFAULT_BACKOFF_INITIAL_S,
        backoff_max_s: float = DEFAULT_BACKOFF_MAX_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.webhooks = [parse_webhook(url) for url in webhooks]
        self._network = network
        self._secrets = [*secrets, *webhooks, *(w.url for w in self.webhooks)]
        self._min_interval_s = min_interval_s
        self._retries = retries
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._timeout_s = timeout_s
        self._transport = transport
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._queues: list[asyncio.Queue[Alert]] = [
            asyncio.Queue(maxsize=queue_size) for _ in self.webhooks
        ]
        self._last_sent_at: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        self.counts: Counter[tuple[str, str]] = Counter()
        """(kind, outcome) -> count; outcome is sent, failed, suppressed or dropped."""
        self._client: httpx.AsyncClient | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._pending = 0
        """Alerts queued or being delivered, over every webhook."""
        self._idle = asyncio.Event()
        self._idle.set()

    # --- the feed side: synchronous, never blocks -----------------------------------------------

    def on_event(self, event: FeedEvent) -> None:
        """Feed event hook: queue an alert if ``event`` is an alert kind and not rate-limited."""
        if not self.webhooks:
            return
        kind = alert_kind(event)
        if kind is None:
            return
        now = self._clock()
        last = self._last_sent_at.get(kind)
        if last is not None and now - last < self._min_interval_s:
            self._suppressed[kind] += 1
            self.counts[(kind, "suppressed")] += 1
            return
        text = describe(event, self._network, kind)
        skipped = self._suppressed.pop(kind, 0)
        if skipped:
            text += f" ({skipped} similar alert{'s' if skipped != 1 else ''} suppressed)"
        alert = Alert(event=event, kind=kind, text=redact_text(text, self._secrets))
        self._last_sent_at[kind] = now
        for hook, queue in zip(self.webhooks, self._queues, strict=True):
            try:
                queue.put_nowait(alert)
            except asyncio.QueueFull:
                self.counts[(kind, "dropped")] += 1
                log.warning("alert queue of %s full; dropped a %s alert", hook.label, kind)
                continue
            self._pending += 1
            self._idle.clear()

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start one delivery task per webhook (no-op without webhooks)."""
        if not self.webhooks or self._workers:
            return
        self._client = httpx.AsyncClient(
            timeout=self._timeout_s, transport=self._transport, follow_redirects=False
        )
        self._workers = [
            asyncio.create_task(self._run(hook, queue), name=f"blockfeed-alerts-{index}")
            for index, (hook, queue) in enumerate(zip(self.webhooks, self._queues, strict=True))
        ]

    async def stop(self, *, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Give queued alerts ``timeout_s`` to go out, then stop."""
        if not self._workers:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wait_idle(), timeout_s)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> AlertDispatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def wait_idle(self) -> None:
        """Return once every queued alert has been delivered or given up on."""
        await self._idle.wait()

    # --- delivery -------------------------------------------------------------------------------

    async def _run(self, hook: Webhook, queue: asyncio.Queue[Alert]) -> None:
        """One webhook's worker: its alerts in order, whatever the other webhooks do."""
        while True:
            alert = await queue.get()
            try:
                await self._deliver(hook, alert)
            except Exception as exc:  # no traceback: its text could carry the webhook's URL
                log.error("alert %s to %s failed unexpectedly: %s",
                          alert.kind, hook.label, type(exc).__name__)
                self.counts[(alert.kind, "failed")] += 1
            finally:
                self._pending -= 1
                if self._pending == 0:
                    self._idle.set()

    def payload(self, hook: Webhook, alert: Alert) -> dict[str, Any]:
        """The JSON body for one destination."""
        if hook.flavor == "slack":
            return {"text": alert.text}
        if hook.flavor == "discord":
            return {"content": alert.text[:DISCORD_MAX_CHARS]}
        wire = alert.event.to_dict()
        body = {
            "kind": alert.kind,
            "text": alert.text,
            "network": self._network,
            "at": wire["at"],
            "reason": wire["reason"],
            "old_mode": wire["old_mode"],
            "new_mode": wire["new_mode"],
            "endpoint": redact_url(wire["endpoint"]) if wire["endpoint"] else None,
            "details": scrub(wire["details"]),
        }
        # Scrub the serialized form too, so no configured URL survives anywhere in the body.
        scrubbed: dict[str, Any] = json.loads(
            redact_text(json.dumps(body, default=str), self._secrets)
        )
        return scrubbed

    async def _deliver(self, hook: Webhook, alert: Alert) -> None:
        assert self._client is not None
        kind = alert.kind
        body = self.payload(hook, alert)
        for attempt in range(self._retries + 1):
            retry_after: float | None = None
            try:
                response = await self._post(hook.url, body)
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            except TimeoutError:
                outcome = f"no complete answer within {self._timeout_s:g} s"
            else:
                if response.is_success:
                    self.counts[(kind, "sent")] += 1
                    log.info("alert %s sent to %s", kind, hook.label)
                    return
                outcome = f"HTTP {response.status_code}"
                if response.status_code != 429 and response.status_code < 500:
                    log.warning("alert %s rejected by %s: %s", kind, hook.label, outcome)
                    break
                retry_after = _retry_after_s(response)
            if attempt == self._retries:
                log.warning("alert %s to %s failed after %d attempts: %s",
                            kind, hook.label, attempt + 1, outcome)
                break
            delay = self._backoff_s(attempt, retry_after)
            log.info("alert %s to %s failed (%s); retrying in %.1f s",
                     kind, hook.label, outcome, delay)
            await self._sleep(delay)
        self.counts[(kind, "failed")] += 1

    async def _post(self, url: str, body: dict[str, Any]) -> httpx.Response:
        """One attempt, bounded in time (``timeout_s``) and in body bytes read."""
        assert self._client is not None
        async with asyncio.timeout(self._timeout_s):
            async with self._client.stream("POST", url, json=body) as response:
                read = 0
                async for chunk in response.aiter_raw():
                    read += len(chunk)
                    if read >= MAX_RESPONSE_BYTES:
                        break  # leaving the block closes the connection; the rest stays unread
                return response

    def _backoff_s(self, attempt: int, retry_after_s: float | None) -> float:
        cap = min(self._backoff_max_s, self._backoff_initial_s * 2**attempt)
        if retry_after_s is not None and retry_after_s <= self._backoff_max_s:
            return retry_after_s
        return self._jitter() * cap


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
