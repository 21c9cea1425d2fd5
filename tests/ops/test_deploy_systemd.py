"""The shipped systemd unit and environment file: what the watchdog needs, and valid settings."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from blockfeed.config import ENV_PREFIX, Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "systemd"


def unit_entries(text: str) -> dict[str, list[str]]:
    """``Section.Key`` -> values (systemd allows a key more than once)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key}", []).append(value)
    return out


def test_unit_is_a_notify_service_with_a_watchdog() -> None:
    """Type=notify, WatchdogSec, Restart=on-failure, its own state directory and user."""
    unit = unit_entries((DEPLOY / "blockfeed.service").read_text())
    assert unit["Service.Type"] == ["notify"]
    assert float(unit["Service.WatchdogSec"][0]) > 0
    assert unit["Service.Restart"] == ["on-failure"]
    assert unit["Service.StateDirectory"] == ["blockfeed"]
    assert unit["Service.DynamicUser"] == ["yes"]
    assert "${STATE_DIRECTORY}" in unit["Service.ExecStart"][0]
    for option in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp"):
        assert f"Service.{option}" in unit, option


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd itself accepts every directive (paths pointed at this machine's files)."""
    text = (DEPLOY / "blockfeed.service").read_text()
    blockfeed = Path(sys.executable).with_name("blockfeed")
    text = text.replace("/opt/blockfeed/.venv/bin/blockfeed", str(blockfeed))
    text = text.replace("EnvironmentFile=/", "EnvironmentFile=-/")
    unit = tmp_path / "blockfeed.service"
    unit.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
        check=False,
    )
    complaints = [line for line in result.stderr.splitlines() if "blockfeed.service" in line]
    assert not complaints, result.stderr


def test_env_example_names_real_settings() -> None:
    """Every BLOCKFEED_* variable in the example (set or commented out) is a serve setting."""
    names = set()
    for raw in (DEPLOY / "blockfeed.env.example").read_text().splitlines():
        line = raw.lstrip("#").strip()
        if line.startswith(ENV_PREFIX) and "=" in line:
            names.add(line.partition("=")[0][len(ENV_PREFIX):].lower())
    assert names, "the example sets nothing"
    assert names <= set(Settings.model_fields), names - set(Settings.model_fields)
