"""The signed webhook sink against a real HTTP receiver on 127.0.0.1 (and a mock transport)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sink_chain import BIG_AMOUNT, WindowStore, fast_delays, make_chain, with_contents
from webhook_receiver import SECRET, WAIT_S, Receiver

from blockfeed.errors import ConfigError
from blockfeed.sinks.webhook import WebhookSink, cursor_file_for, sign, verify_signature


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


def sink(url: str, **options: Any) -> WebhookSink:
    options.setdefault("reconnect_delays", fast_delays)
    options.setdefault("secret", SECRET)
    return WebhookSink(url, **options)


def numbers(accepted: list[dict[str, Any]]) -> list[int]:
    return [b["number"] for b in accepted]


async def test_each_block_is_posted_once_in_order_with_a_valid_signature(
    receiver: Receiver,
) -> None:
    """Every block reaches the receiver once, in order, signed, parent-linked."""
    chain = make_chain(50)
    async with sink(receiver.url) as s:
        for block in chain:
            await s.publish(block)
        assert await s.flush(WAIT_S)
    assert numbers(receiver.accepted) == [b.number for b in chain]
    assert [b["hash"] for b in receiver.accepted] == [b.hash for b in chain]
    got = receiver.accepted
    assert all(a["parent_hash"] == b["hash"] for b, a in itertools.pairwise(got))
    assert receiver.bad_signatures == 0 and receiver.requests == 50


async def test_the_payload_carries_contents(receiver: Receiver) -> None:
    """A block with contents is posted with them (big ints as text); header-only, without."""
    chain = make_chain(3, seed=13)
    blocks = with_contents(chain[:1]) + chain[1:]
    async with sink(receiver.url) as s:
        for block in blocks:
            await s.publish(block)
        assert await s.flush(WAIT_S)
    first, second = receiver.accepted[0], receiver.accepted[1]
    assert first["contents"]["spec_version"] == 218
    assert first["contents"]["events"][0]["fields"]["amount"] == str(BIG_AMOUNT)
    assert first["contents"]["extrinsics"][0]["call"] == "set"
    assert "contents" not in second and receiver.bad_signatures == 0


async def test_a_receiver_outage_delays_but_loses_nothing(receiver: Receiver) -> None:
    """5xx answers and a receiver that is gone are retried until every block is accepted once."""
    chain = make_chain(40)
    async with sink(receiver.url) as s:
        for block in chain[:10]:
            await s.publish(block)
        await receiver.wait_for(10)
        receiver.fail_with = 503
        for block in chain[10:20]:
            await s.publish(block)
        await asyncio.wait_for(_until(lambda: s.status()["errors"] >= 2), WAIT_S)
        receiver.fail_with = None
        await receiver.wait_for(20)
        port = receiver.port
        await receiver.stop()  # the receiver is down: connections refused
        for block in chain[20:]:
            await s.publish(block)
        await asyncio.wait_for(_until(lambda: not s.status()["connected"]), WAIT_S)
        receiver.port = port
        await receiver.start()
        assert await s.flush(WAIT_S)
    assert numbers(receiver.accepted) == [b.number for b in chain]


async def test_a_restart_resumes_after_the_cursor_file(receiver: Receiver, tmp_path: Path) -> None:
    """A new sink reads the cursor file and catches up from the store window, no repeats."""
    chain = make_chain(60)
    cursor = cursor_file_for(tmp_path, receiver.url)
    async with sink(receiver.url, cursor_path=cursor) as first:
        for block in chain[:25]:
            await first.publish(block)
        assert await first.flush(WAIT_S)
    assert cursor.read_text().strip() == str(chain[24].number)
    async with sink(receiver.url, cursor_path=cursor, store=WindowStore(chain)) as second:
        for block in chain[40:]:  # the feed resumed at its own checkpoint
            await second.publish(block)
        assert await second.flush(WAIT_S)
    assert numbers(receiver.accepted) == [b.number for b in chain]
    assert receiver.requests == 60


async def test_a_rejected_signature_is_reported_and_retried(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A 401 (wrong secret) is logged as an error and retried; nothing is skipped."""
    caplog.set_level(logging.ERROR)
    chain = make_chain(3)
    async with sink(receiver.url, secret=b"wrong", close_drain_s=0) as s:
        await s.publish(chain[0])
        await asyncio.wait_for(_until(lambda: receiver.bad_signatures >= 2), WAIT_S)
        assert "HTTP 401" in s.status()["last_error"]
        assert s.status()["last_published"] is None
    assert any("HTTP 401" in r.getMessage() for r in caplog.records)
    assert "wrong" not in json.dumps(s.status())


def test_the_secret_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a secret the sink refuses to start; the environment variable provides it."""
    monkeypatch.delenv("BLOCKFEED_WEBHOOK_SECRET", raising=False)
    with pytest.raises(ConfigError, match="BLOCKFEED_WEBHOOK_SECRET"):
        WebhookSink("https://example.test/hook")
    monkeypatch.setenv("BLOCKFEED_WEBHOOK_SECRET", "abc")
    assert WebhookSink("https://example.test/hook").kind == "webhook"
    with pytest.raises(ConfigError):
        WebhookSink("ftp://example.test/hook")


async def test_the_url_token_is_redacted_in_status_and_errors() -> None:
    """A token in the webhook URL never shows in status(), repr() or the last error."""
    token = "tok_abcdefghijklmnopqrstuvwxyz"

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}")

    url = f"https://hooks.example.test/in/{token}?key={token}"
    async with sink(url, transport=httpx.MockTransport(refuse), close_drain_s=0) as s:
        await s.publish(make_chain(1)[0])
        await asyncio.wait_for(_until(lambda: s.status()["errors"] >= 1), WAIT_S)
        assert token not in json.dumps(s.status()) and token not in repr(s)


def test_signature_verification_checks_key_body_and_age() -> None:
    """verify_signature accepts the right signature and refuses a changed body, key or old stamp."""
    body = b'{"number":1}'
    signature = sign(SECRET, 1000, body)
    assert verify_signature(SECRET, "1000", body, signature, now=1010)
    assert not verify_signature(SECRET, "1000", body + b" ", signature, now=1010)
    assert not verify_signature(b"other", "1000", body, signature, now=1010)
    assert not verify_signature(SECRET, "1000", body, signature, now=1000 + 301)
    assert not verify_signature(SECRET, "soon", body, signature, now=1000)


async def _until(predicate: Any) -> None:
    while not predicate():  # noqa: ASYNC110 - the state lives in the sink's task
        await asyncio.sleep(0.01)
