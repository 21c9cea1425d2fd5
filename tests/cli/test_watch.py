"""``blockfeed watch`` as users run it: a real subprocess against a devnode on loopback."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from blockfeed.devnode import DevNode, DevNodeConfig

BLOCK_TIME_S = 0.1
WAIT_S = 60.0
"""Bound on every wait: generous, since a loaded 2-core machine starts Python slowly."""
SECRET = "k3yAbCdEfGhIjKlMnOpQrStUv"


@pytest.fixture
async def node() -> AsyncIterator[DevNode]:
    config = DevNodeConfig(block_time_s=BLOCK_TIME_S, seed=7, finality_jumps=0.2)
    async with DevNode(config) as running:
        running.advance(60)  # history to start --from in, without waiting for it
        yield running


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["NO_COLOR"] = "1"
    env.pop("BLOCKFEED_CONFIG", None)
    return env


async def _start(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "blockfeed",
        "watch",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )


async def _run(*args: str) -> tuple[int, str, str]:
    """Run ``blockfeed watch ARGS`` to completion (bounded); returns (code, stdout, stderr)."""
    process = await _start(*args)
    try:
        out, err = await asyncio.wait_for(process.communicate(), WAIT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _assert_chain(blocks: list[dict[str, Any]], node: DevNode) -> None:
    """Consecutive numbers, each parent-linked and equal to the node's canonical chain."""
    for before, after in itertools.pairwise(blocks):
        assert after["number"] == before["number"] + 1
        assert after["parent_hash"] == before["hash"]
    for block in blocks:
        assert block["hash"] == node.chain.hash_of(block["number"])


async def test_json_count_prints_exactly_n_linked_blocks(node: DevNode) -> None:
    """--json --count 8: eight JSON objects, consecutive, parent-linked, canonical; exit 0."""
    code, out, err = await _run(
        node.ws_url, "--json", "--count", "8", "--block-time", str(BLOCK_TIME_S)
    )
    assert code == 0, err
    blocks = _json_lines(out)
    assert len(blocks) == 8
    _assert_chain(blocks, node)
    first = blocks[0]
    assert set(first) >= {
        "number",
        "hash",
        "parent_hash",
        "source",
        "epoch",
        "block_in_epoch",
        "received_at",
    }
    assert first["epoch"] == first["number"] // 360
    assert first["block_in_epoch"] == first["number"] % 360
    assert "Traceback" not in err


async def test_from_starts_at_the_given_block_and_backfills(node: DevNode) -> None:
    """--from N (already finalized) starts exactly at N, backfilled, in order."""
    start = node.chain.finalized_number - 20
    code, out, err = await _run(
        node.ws_url,
        "--json",
        "--from",
        str(start),
        "--count",
        "25",
        "--block-time",
        str(BLOCK_TIME_S),
        "--epoch-length",
        "100",
    )
    assert code == 0, err
    blocks = _json_lines(out)
    assert [b["number"] for b in blocks] == list(range(start, start + 25))
    _assert_chain(blocks, node)
    assert blocks[0]["source"] == "backfill"
    assert blocks[0]["block_in_epoch"] == start % 100


async def test_state_resumes_after_the_last_printed_block(node: DevNode, tmp_path: Path) -> None:
    """--state: a second run starts right after the last block the first run printed."""
    state = str(tmp_path / "watch.sqlite")
    start = node.chain.finalized_number - 30
    common = ["--json", "--state", state, "--block-time", str(BLOCK_TIME_S)]
    code, out, err = await _run(node.ws_url, *common, "--from", str(start), "--count", "3")
    assert code == 0, err
    first_run = _json_lines(out)
    code, out, err = await _run(node.ws_url, *common, "--count", "4")
    assert code == 0, err
    second_run = _json_lines(out)
    assert [b["number"] for b in first_run] == [start, start + 1, start + 2]
    assert [b["number"] for b in second_run] == list(range(start + 3, start + 7))
    _assert_chain(first_run + second_run, node)


async def test_text_lines_have_the_familiar_shape(node: DevNode) -> None:
    """Without --json: 'Block #N | Epoch E | Block k/L | ...' lines, no emoji off a terminal."""
    code, out, err = await _run(node.ws_url, "--count", "2", "--block-time", str(BLOCK_TIME_S))
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2
    number = int(lines[0].split("#")[1].split(" ")[0])
    assert lines[0].startswith(f"Block #{number} | Epoch {number // 360} | ")
    assert f"Block {number % 360}/360" in lines[0]
    assert "📦" not in out


async def test_ctrl_c_stops_cleanly(node: DevNode) -> None:
    """SIGINT after the first block: exit 0, a 'stopped' note on stderr, no traceback."""
    process = await _start(node.ws_url, "--json", "--block-time", str(BLOCK_TIME_S))
    try:
        assert process.stdout is not None
        first = await asyncio.wait_for(process.stdout.readline(), WAIT_S)
        assert json.loads(first)["number"] > 0
        process.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(process.communicate(), WAIT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    assert "stopped after" in err.decode()
    assert "Traceback" not in err.decode()
    blocks = _json_lines(first.decode() + out.decode())
    _assert_chain(blocks, node)


async def test_log_format_json_puts_json_logs_on_stderr(node: DevNode) -> None:
    """--log-format json: every stderr line is a JSON object; stdout has only block lines."""
    code, out, err = await _run(
        node.ws_url, "--json", "--count", "2", "--log-format", "json", "--block-time", "0.1"
    )
    assert code == 0, err
    logs = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert logs and all({"level", "msg"} <= set(entry) for entry in logs)
    assert len(_json_lines(out)) == 2


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--count", "0"], "--count"),
        (["--count", "many"], "--count"),
        (["--from", "-5"], "--from"),
        (["--block-time", "0"], "--block-time"),
        (["--log-format", "xml"], "--log-format"),
        (["--epoch-length", "0"], "--epoch-length"),
        (["--no-such-flag"], "no-such-flag"),
        (["--network", "nowhere"], "unknown network"),
        (["--log-level", "loud"], "--log-level"),
        ([f"http://127.0.0.1:9/{SECRET}"], "ws://"),
    ],
)
async def test_bad_flags_exit_2_with_a_clear_message(args: list[str], needle: str) -> None:
    """Bad flags and endpoints: exit 2, the problem named, no traceback, no secret echoed."""
    code, out, err = await _run(*args)
    assert code == 2
    assert needle in err
    assert "Traceback" not in err
    assert SECRET not in err and out == ""


async def test_unreachable_endpoint_exits_1_without_leaking_the_key() -> None:
    """Nothing listening: exit 1 after --startup-timeout, endpoint redacted, no traceback."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    code, out, err = await _run(
        f"ws://127.0.0.1:{port}/ws/{SECRET}", "--startup-timeout", "1.5", "--block-time", "0.1"
    )
    assert code == 1
    assert "no block from" in err and f"127.0.0.1:{port}" in err
    assert SECRET not in err and SECRET not in out
    assert "Traceback" not in err


async def test_debug_log_level_shows_library_lines_without_secrets(node: DevNode) -> None:
    """--log-level debug lets websockets and httpx log, with the URL's secrets masked."""
    password, jwt = "PW9zqhunter2", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4eXoifQ.c2lnbmF0dXJl"
    url = f"ws://alice:{password}@127.0.0.1:{node.port}/v1/{SECRET};k=v?key=Qz8&t={jwt}"
    code, out, err = await _run(url, "--count", "3", "--block-time", "0.1", "--log-level", "debug")
    assert code == 0, err
    assert len(out.splitlines()) == 3
    assert "DEBUG websockets.client: > GET /*** HTTP/1.1" in err
    assert "Authorization: ***" in err
    for secret in (password, SECRET, "Qz8", *jwt.split("."), "alice"):
        assert secret not in err and secret not in out, secret


def test_help_explains_the_flags() -> None:
    """--help lists every flag with its meaning."""
    from typer.testing import CliRunner

    from blockfeed.cli import app

    result = CliRunner().invoke(app, ["watch", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in (
        "--json",
        "--count",
        "--from",
        "--state",
        "--network",
        "--block-time",
        "--log-format",
        "--epoch-length",
        "--startup-timeout",
    ):
        assert flag in result.output
    assert "exactly once" in result.output


async def test_state_of_another_chain_exits_1_with_the_reason(tmp_path: Path) -> None:
    """--state written on one chain, then pointed at another chain: exit 1 saying so."""
    state = str(tmp_path / "watch.sqlite")
    other_config = DevNodeConfig(block_time_s=BLOCK_TIME_S, seed=8, finality_jumps=0.2)
    async with DevNode(DevNodeConfig(block_time_s=BLOCK_TIME_S, seed=7)) as first:
        code, _out, err = await _run(first.ws_url, "--json", "--state", state, "--count", "2",
                                     "--block-time", str(BLOCK_TIME_S))
        assert code == 0, err
    async with DevNode(other_config) as other:
        code, out, err = await _run(other.ws_url, "--json", "--state", state, "--count", "2",
                                    "--block-time", str(BLOCK_TIME_S))
    assert code == 1 and out == ""
    final = err.strip().splitlines()[-1]
    assert final.startswith("blockfeed watch: state file") and "belongs to the chain" in final
    assert "Traceback" not in err


async def test_state_whose_checkpoint_the_node_does_not_extend_exits_1(tmp_path: Path) -> None:
    """Same genesis, another history (devnodes with different first blocks): the block after
    the checkpoint does not link to it, so watch stops at once (exit 1) naming the checkpoint,
    long before the startup timeout, and prints nothing."""
    state = str(tmp_path / "watch.sqlite")
    base = {"block_time_s": BLOCK_TIME_S, "seed": 7, "finality_jumps": 0.0}
    async with DevNode(DevNodeConfig(start_block=5_000, **base)) as first:
        first.advance(20)
        code, out, err = await _run(first.ws_url, "--json", "--state", state, "--count", "3",
                                    "--from", "5005", "--block-time", str(BLOCK_TIME_S))
        assert code == 0, err
        assert [b["number"] for b in _json_lines(out)] == [5005, 5006, 5007]
    async with DevNode(DevNodeConfig(start_block=5_001, **base)) as forked:
        forked.advance(20)
        began = asyncio.get_running_loop().time()
        code, out, err = await _run(forked.ws_url, "--json", "--state", state,
                                    "--startup-timeout", "40", "--block-time",
                                    str(BLOCK_TIME_S))
        took = asyncio.get_running_loop().time() - began
    assert code == 1 and out == ""
    assert "does not extend the checkpoint #5007" in err, err
    assert "Traceback" not in err
    assert took < 30  # it did not wait for the 40 s startup timeout


async def test_from_below_the_nodes_history_exits_1_with_the_reason() -> None:
    """--from N below the node's first block: after --startup-timeout, exit 1 and say that the
    block is below the node's history (the feed kept retrying meanwhile)."""
    config = DevNodeConfig(block_time_s=BLOCK_TIME_S, seed=7, start_block=6_940_000)
    async with DevNode(config) as node:
        node.advance(30)
        code, out, err = await _run(node.ws_url, "--json", "--from", "1000", "--startup-timeout",
                                    "3", "--block-time", str(BLOCK_TIME_S))
    assert code == 1 and out == ""
    assert "block #1000 is not available" in err and "below that node's history" in err, err
    assert "Traceback" not in err


async def test_state_acknowledges_exactly_the_printed_lines_on_ctrl_c(tmp_path: Path) -> None:
    """--state + Ctrl-C: the next run starts right after the last line the first run printed
    (nothing repeated, nothing skipped)."""
    state = str(tmp_path / "watch.sqlite")
    async with DevNode(DevNodeConfig(block_time_s=BLOCK_TIME_S, seed=7)) as node:
        process = await _start(node.ws_url, "--json", "--state", state, "--block-time",
                               str(BLOCK_TIME_S))
        try:
            assert process.stdout is not None
            lines = [await asyncio.wait_for(process.stdout.readline(), WAIT_S) for _ in range(4)]
            process.send_signal(signal.SIGINT)
            rest, err = await asyncio.wait_for(process.communicate(), WAIT_S)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.returncode == 0, err.decode()
        first_run = _json_lines(b"".join(lines).decode() + rest.decode())
        code, out, err2 = await _run(node.ws_url, "--json", "--state", state, "--count", "3",
                                     "--block-time", str(BLOCK_TIME_S))
        assert code == 0, err2
        second_run = _json_lines(out)
        assert second_run[0]["number"] == first_run[-1]["number"] + 1
        _assert_chain(first_run + second_run, node)
