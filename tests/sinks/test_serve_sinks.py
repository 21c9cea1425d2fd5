"""The service with ``--sink``: blocks from a devnode reach PostgreSQL and a signed webhook,
and /status, /metrics show a row per sink with no secrets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from webhook_receiver import SECRET, WAIT_S, Receiver

from blockfeed.config import load_settings
from blockfeed.devnode import DevNode, DevNodeConfig
from blockfeed.errors import ConfigError
from blockfeed.gateway import create_app

pytestmark = pytest.mark.sinks

PASSWORD = "pg-pass-not-to-be-shown"


async def _count(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        have = await conn.fetchval("SELECT to_regclass('blockfeed.blocks') IS NOT NULL")
        return int(await conn.fetchval("SELECT count(*) FROM blockfeed.blocks")) if have else 0
    finally:
        await conn.close()


async def test_serve_writes_to_every_sink_and_reports_them(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each sink gets consecutive blocks; /status and /metrics list both, secrets masked."""
    monkeypatch.setenv("BLOCKFEED_WEBHOOK_SECRET", SECRET.decode())
    parts = urlsplit(pg_url)
    secret_pg = pg_url.replace(f"{parts.username}@", f"{parts.username}:{PASSWORD}@")
    receiver = Receiver()
    await receiver.start()
    try:
        async with DevNode(DevNodeConfig(block_time_s=0.05)) as node:
            settings = load_settings(
                endpoints=[node.ws_url], state=str(tmp_path / "s.sqlite"), block_time_s=0.05,
                sinks=[secret_pg, receiver.url],
            )  # fmt: skip
            app = create_app(settings)
            async with app.router.lifespan_context(app):
                await receiver.wait_for(10)

                async def rows_arrive() -> None:
                    while await _count(pg_url) < 10:  # noqa: ASYNC110 - rows in another process
                        await asyncio.sleep(0.05)

                await asyncio.wait_for(rows_arrive(), WAIT_S)
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                    status = (await http.get("/status")).json()
                    metrics = (await http.get("/metrics")).text
    finally:
        await receiver.stop()
    kinds = [row["kind"] for row in status["sinks"]]
    assert kinds == ["postgresql", "webhook"]
    assert all(row["errors"] == 0 for row in status["sinks"]), status["sinks"]
    assert PASSWORD not in str(status) and PASSWORD not in metrics
    assert 'blockfeed_sink_lag_blocks{kind="postgresql"' in metrics
    numbers = [b["number"] for b in receiver.accepted]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert receiver.bad_signatures == 0


def test_sink_urls_are_validated_and_redis_stays_a_synonym() -> None:
    """--sink takes the known schemes only; --redis joins the sink list once."""
    with pytest.raises(ConfigError, match="sink #1 must start with"):
        load_settings(endpoints=["ws://n:9944"], sinks=["ftp://x:secretsecret@h/"])
    settings = load_settings(endpoints=["ws://n:9944"], redis_url="redis://r:6379/0",
                             sinks=["postgresql://u:pw@db/x", "redis://r:6379/0"])  # fmt: skip
    assert settings.sink_urls() == ["postgresql://u:pw@db/x", "redis://r:6379/0"]
    assert "postgresql://u:pw@db/x" in settings.secret_urls()


def test_serve_without_a_webhook_secret_stops_with_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`serve --sink https://...` without the secret exits 2: one line, no traceback, no token."""
    from typer.testing import CliRunner

    from blockfeed.cli import app as cli_app

    monkeypatch.delenv("BLOCKFEED_WEBHOOK_SECRET", raising=False)
    token = "tok_abcdefghijklmnopqrstuvwxyz"
    args = ["serve", "ws://127.0.0.1:9", "--state", ":memory:",
            "--sink", f"https://hooks.example/in/{token}"]  # fmt: skip
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == 2
    assert "BLOCKFEED_WEBHOOK_SECRET" in result.output
    assert "Traceback" not in result.output and token not in result.output
