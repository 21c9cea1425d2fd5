"""`blockfeed serve` as an operator runs it: flags, errors, and a real process against devnode."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from blockfeed.cli import app as cli_app
from blockfeed.devnode import DevNode, DevNodeConfig

WAIT_S = 60.0
KEY = "k3yk3yk3yk3yk3yk3yk3yk3yk3yk3y"
URL_LINE = re.compile(r"blockfeed serve: (http://127\.0\.0\.1:\d+)/ \(dashboard\)")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No BLOCKFEED_* from the shell; in-process runs may reconfigure logging: restore it."""
    for name in list(os.environ):
        if name.startswith("BLOCKFEED_"):
            monkeypatch.delenv(name)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    uvicorn_filters = list(logging.getLogger("uvicorn.error").filters)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("uvicorn.error").filters[:] = uvicorn_filters


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["serve", f"http://user:{KEY}@node.example"], "endpoint #1 must start with ws://, wss://"),
        (["serve", "--port", "99999"], "Invalid value for '--port'"),
        (["serve", "--alert-webhook", f"ftp://hooks.example/{KEY}"], "alert webhook #1"),
        (["serve", "--config", "/nonexistent/blockfeed.toml"], "does not exist"),
        (["serve", "--redis", f"http://{KEY}@r.example"], "redis URL must start with redis://"),
        (["serve", "--log-level", "loud"], "--log-level must be one of debug, info"),
    ],
)
def test_bad_input_exits_2_without_secrets(args: list[str], expected: str) -> None:
    """Every bad flag or file ends with exit code 2 and a message that names it, no secret."""
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert KEY not in result.output


def test_log_level_reaches_root_and_every_record_is_masked() -> None:
    """configure_logging(level) sets the root level; its handler masks secrets of any logger."""
    from blockfeed.cli.serve import configure_logging

    configure_logging("text", "debug")
    root = logging.getLogger()
    assert root.level == logging.DEBUG
    record = logging.LogRecord(
        "someone.else", logging.DEBUG, __file__, 1, "GET %s", (f"wss://u:{KEY}@h/x",), None
    )
    assert all(f.filter(record) for f in root.handlers[0].filters)
    assert KEY not in record.getMessage() and "wss://h/***" in record.getMessage()


def test_unwritable_state_is_a_clear_error(tmp_path: Path) -> None:
    """A state path that cannot be used stops the service before it listens, with a reason."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = CliRunner().invoke(
        cli_app, ["serve", "ws://127.0.0.1:9", "--port", "0", "--state", str(blocker / "s.db")]
    )
    assert result.exit_code == 1, result.output
    assert "blockfeed serve:" in result.output
    assert "Traceback" not in result.output


async def test_serve_process_follows_devnode_and_stops_cleanly(tmp_path: Path) -> None:
    """A real `blockfeed serve` process serves blocks, logs JSON, and exits 0 on SIGTERM."""
    state = tmp_path / "state.sqlite"
    async with DevNode(DevNodeConfig(block_time_s=0.1)) as node:
        env = {**os.environ, "BLOCKFEED_BLOCK_TIME_S": "0.1", "BLOCKFEED_LOG_FORMAT": "json",
               "BLOCKFEED_ADMIN_TOKEN": "cli-admin-token-1", "NO_COLOR": "1"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "blockfeed", "serve", node.ws_url, "--port", "0",
            "--state", str(state), "--network", "local",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )
        assert proc.stderr is not None
        lines: list[str] = []
        try:
            async with asyncio.timeout(WAIT_S):
                base = None
                while base is None:
                    line = (await proc.stderr.readline()).decode()
                    assert line, "serve exited early:\n" + "".join(lines)
                    lines.append(line)
                    if match := URL_LINE.search(line):
                        base = match.group(1)
                async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                    while (latest := await http.get("/blocks/latest")).status_code != 200:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                    number = latest.json()["number"]
                    assert latest.json()["hash"] == node.chain.hash_of(number)
                    admin = await http.post(
                        "/admin/reconnect", headers={"Authorization": "Bearer cli-admin-token-1"}
                    )
                    assert admin.status_code == 202
                proc.send_signal(signal.SIGTERM)
                rest = (await proc.stderr.read()).decode()
                code = await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    log = "".join(lines) + rest
    assert code == 0, log
    assert "Traceback" not in log
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(r["msg"].startswith("Block #") for r in records)
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    assert state.exists()


async def test_genesis_mismatch_is_one_line_and_same_exit_as_watch(tmp_path: Path) -> None:
    """A state file of another chain stops serve and watch alike: exit 1, one clear line."""
    from blockfeed.store import open_store

    state = tmp_path / "other-chain.sqlite"
    store = open_store(str(state))
    store.bind_chain("0x" + "ab" * 32)
    store.close()
    results: dict[str, tuple[int, str]] = {}
    async with DevNode(DevNodeConfig(block_time_s=0.1)) as node:
        env = {**os.environ, "BLOCKFEED_BLOCK_TIME_S": "0.1", "NO_COLOR": "1"}
        for command, extra in (("serve", ["--port", "0", "--network", "local"]),
                               ("watch", ["--block-time", "0.1"])):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "blockfeed", command, node.ws_url, "--state", str(state),
                *extra, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
            )
            try:
                _, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            assert proc.returncode is not None
            results[command] = (proc.returncode, err.decode())
    for command, (code, err) in results.items():
        assert code == 1, err
        assert "Traceback" not in err
        verdict = [line for line in err.splitlines() if line.startswith(f"blockfeed {command}:")]
        assert len(verdict) == 1 and "belongs to the chain with genesis 0xabab" in verdict[0]
