"""`blockfeed consume` as a user runs it (a real process): output lines, exit codes, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from redis_chain import make_chain

from blockfeed.sinks._stream_entries import entry_fields, stream_id
from blockfeed.types import Block
from conftest import RedisServer

pytestmark = pytest.mark.redis

CLI_TIMEOUT_S = 60.0


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``blockfeed consume ARGS`` and return its exit code, stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "blockfeed", "consume", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def put(server: RedisServer, stream: str, blocks: list[Block]) -> None:
    client = server.client()
    for block in blocks:
        client.xadd(stream, entry_fields(block), id=stream_id(block.number))


def json_line(block: Block) -> str:
    return json.dumps(block.to_dict(epoch_length=360), separators=(",", ":"))


def test_json_lines_match_watch_format_from_a_block_for_a_count(
    redis_server: RedisServer, stream_name: str
) -> None:
    """--json --from N --count K prints exactly K lines, Block.to_dict(epoch_length=360) each."""
    chain = make_chain(30)
    put(redis_server, stream_name, chain)
    result = run_cli(
        "--redis", redis_server.url, "--stream", stream_name, "--json",
        "--from", str(chain[5].number), "--count", "10",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [json_line(b) for b in chain[5:15]]
    assert "Traceback" not in result.stderr


def test_text_lines_and_from_zero_reads_the_oldest_block(
    redis_server: RedisServer, stream_name: str
) -> None:
    """Text lines carry number, epoch and block-in-epoch; --from 0 starts at the oldest entry."""
    chain = make_chain(3)
    put(redis_server, stream_name, chain)
    result = run_cli("--redis", redis_server.url, "--stream", stream_name, "--from", "0",
                     "--count", "3")  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    for line, block in zip(lines, chain, strict=True):
        epoch, index = divmod(block.number, 360)
        assert line.startswith(f"Block #{block.number} | Epoch {epoch} | Block {index}/360 | ")
        assert line.endswith(f"UTC | {block.source}")


def test_bad_flags_are_clear_errors_without_tracebacks(redis_server: RedisServer) -> None:
    """Half a group, a non-Redis URL and a negative --from exit 2 with a one-line reason."""
    half_group = run_cli("--redis", redis_server.url, "--group", "g")
    assert half_group.returncode == 2
    assert "--group and --consumer go together" in half_group.stderr
    not_redis = run_cli("--redis", "https://user:t0psecretkey@example.com/x")
    assert not_redis.returncode == 2
    assert "not a Redis URL" in not_redis.stderr and "t0psecretkey" not in not_redis.stderr
    negative = run_cli("--redis", redis_server.url, "--from", "-5")
    assert negative.returncode == 2 and "--from" in negative.stderr
    for result in (half_group, not_redis, negative):
        assert "Traceback" not in result.stderr and result.stdout == ""


def test_unreachable_redis_is_exit_1_with_a_redacted_url() -> None:
    """A dead port fails at once (exit 1), naming host and port but never the password."""
    result = run_cli("--redis", "redis://:hunter2hunter2@127.0.0.1:1/0", "--count", "1")
    assert result.returncode == 1
    assert "cannot reach Redis at redis://127.0.0.1:1/***" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_a_trimmed_stream_stops_with_a_hint_unless_gaps_are_allowed(
    redis_server: RedisServer, stream_name: str
) -> None:
    """Reading from a trimmed-away block exits 1 naming the gap; --allow-gaps goes on."""
    chain = make_chain(20)
    put(redis_server, stream_name, chain)
    redis_server.client().xtrim(stream_name, maxlen=10, approximate=False)
    args = ["--redis", redis_server.url, "--stream", stream_name, "--json",
            "--from", str(chain[2].number), "--count", "3"]  # fmt: skip
    strict = run_cli(*args)
    assert strict.returncode == 1
    assert f"blocks {chain[2].number}..{chain[9].number}" in strict.stderr
    assert "--allow-gaps" in strict.stderr and "Traceback" not in strict.stderr
    lenient = run_cli(*args, "--allow-gaps")
    assert lenient.returncode == 0, lenient.stderr
    assert lenient.stdout.splitlines() == [json_line(b) for b in chain[10:13]]


def test_group_mode_acknowledges_what_it_printed(
    redis_server: RedisServer, stream_name: str
) -> None:
    """Two runs as the same group consumer print consecutive, non-overlapping blocks."""
    chain = make_chain(12)
    put(redis_server, stream_name, chain)
    args = ["--redis", redis_server.url, "--stream", stream_name, "--json",
            "--from", str(chain[0].number), "--group", "g", "--consumer", "c1",
            "--count", "5"]  # fmt: skip
    first, second = run_cli(*args), run_cli(*args)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.splitlines() == [json_line(b) for b in chain[:5]]
    assert second.stdout.splitlines() == [json_line(b) for b in chain[5:10]]
    assert redis_server.client().xpending(stream_name, "g")["pending"] == 0
