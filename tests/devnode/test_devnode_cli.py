"""``blockfeed devnode``: help text, bad flags, and a real run stopped with Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from blockfeed.cli.devnode import register
from blockfeed.devnode import FAULT_SPECS

FLAGS = (
    "--host",
    "--port",
    "--block-time",
    "--slot-duration",
    "--finality-lag",
    "--finality-jumps",
    "--start-block",
    "--seed",
    "--tempo",
    "--control-port",
    "--control-host",
    "--scenario",
    "--log-level",
)
# A local app with a callback keeps "devnode" a subcommand however many commands exist.
LAUNCH = (
    "import typer; from blockfeed.cli.devnode import register; app = typer.Typer(); "
    "app.callback()(lambda: None); register(app); app()"
)


def _app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    return app


def test_help_explains_every_flag_and_fault() -> None:
    """--help lists every flag, every fault kind with its class and every option."""
    result = CliRunner().invoke(_app(), ["devnode", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in FLAGS:
        assert flag in result.output
    for spec in FAULT_SPECS.values():
        assert f"{spec.kind} ({spec.fault_class})" in result.output
        for option in spec.options:
            assert f"{option.name}=" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--block-time", "0.01"], "0.05"),
        (["--finality-jumps", "2"], "finality-jumps"),
        (["--tempo", "abc"], "--tempo expects NETUID=TEMPO"),
        (["--log-level", "loud"], "--log-level must be one of"),
        (["--scenario", "/nonexistent/x.json"], "cannot read scenario"),
        (["--port", "-5"], "port"),
        (["--slot-duration", "0"], "slot-duration"),
        (["--slot-duration", "1e9"], "slot_duration_s must be a number from"),
    ],
)
def test_bad_flags_fail_cleanly(args: list[str], message: str) -> None:
    """Bad flags exit non-zero with a clear message and no traceback."""
    result = CliRunner().invoke(_app(), ["devnode", *args])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


def test_bad_scenario_file_is_rejected_up_front(tmp_path: Path) -> None:
    """A scenario with a bad step is refused before the node starts, naming the step."""
    scenario = tmp_path / "s.json"
    scenario.write_text(json.dumps([{"at": 1, "kind": "restart"}, {"at": 2, "kind": "nap"}]))
    result = CliRunner().invoke(_app(), ["devnode", "--scenario", str(scenario)])
    assert result.exit_code == 2
    assert "step 2: unknown fault kind 'nap'" in result.output


def test_runs_prints_urls_serves_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """A real process prints one line with the URLs (and the declared slot), serves RPC and
    control, exits 0 on SIGINT."""
    scenario = tmp_path / "s.json"
    scenario.write_text(json.dumps([{"at": 0, "kind": "finality_halt", "seconds": 60}]))
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            LAUNCH,
            "devnode",
            "--port",
            "0",
            "--control-port",
            "0",
            "--block-time",
            "0.05",
            "--slot-duration",
            "3",
            "--log-level",
            "warning",
            "--tempo",
            "3=50",
            "--scenario",
            str(scenario),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # bounded by the pytest timeout
        if not line:
            pytest.fail(f"devnode exited early: {process.communicate(timeout=5)}")
        assert line.startswith("blockfeed devnode: ws ws://127.0.0.1:")
        assert "declared slot 3000 ms" in line
        parts = dict(part.strip().split(" ", 1) for part in line.split("|")[:3])
        http_url = parts["http"].strip()
        control_url = parts["control"].strip().removesuffix("/faults")
        with httpx.Client(trust_env=False, timeout=5) as client:
            rpc = {"jsonrpc": "2.0", "id": 1, "method": "system_health"}
            health = client.post(http_url, json=rpc)
            assert health.json()["result"]["peers"] == 8
            slot = {**rpc, "method": "state_call", "params": ["AuraApi_slot_duration", "0x"]}
            assert client.post(http_url, json=slot).json()["result"] == "0xb80b000000000000"
            deadline = time.monotonic() + 5
            while not client.get(f"{control_url}/faults").json()["faults"]:
                assert time.monotonic() < deadline, "scenario step never injected"
                time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert "stopped" in stdout


def test_port_in_use_is_a_clear_error() -> None:
    """A taken port gives a one-line error and exit code 1, not a traceback."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(_app(), ["devnode", "--port", str(port)])
    assert result.exit_code == 1
    assert "cannot listen on 127.0.0.1" in result.output
    assert "Traceback" not in result.output


def test_debug_log_masks_the_keys_clients_send() -> None:
    """At --log-level debug the handshake is logged with the client's path and query masked."""
    import asyncio

    import websockets

    key = "k3yAbCdEfGhIjKlMnOpQrStUv"
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "devnode", "--port", "0", "--log-level", "debug"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # bounded by the pytest timeout
        if not line:
            pytest.fail(f"devnode exited early: {process.communicate(timeout=5)}")
        ws_url = line.split("|")[0].split(" ws ", 1)[1].strip()

        async def connect() -> None:
            async with websockets.connect(f"{ws_url}/ws/{key}?apikey={key}"):
                pass

        asyncio.run(asyncio.wait_for(connect(), 10))
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert "GET /*** HTTP/1.1" in stderr
    assert key not in stderr
