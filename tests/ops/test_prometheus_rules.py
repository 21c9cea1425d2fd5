"""The shipped alert rules: promtool's own unit tests pass, and every metric they use exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from ops_exported import exported_sample_names

PROM = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = PROM / "blockfeed-rules.yml"
METRIC = re.compile(r"\b(blockfeed_[a-z0-9_]+)")
promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    promtool is None, reason="needs promtool (Debian prometheus; scripts/system-deps.sh)"
)


@needs_promtool
def test_rules_are_valid() -> None:
    """promtool accepts the rule file."""
    assert promtool is not None
    result = subprocess.run([promtool, "check", "rules", str(RULES)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_rule_unit_tests_pass() -> None:
    """Every rule fires in its firing case and stays quiet in its quiet case."""
    assert promtool is not None
    tests = sorted(str(p) for p in PROM.glob("*_test.yml"))
    assert tests
    result = subprocess.run([promtool, "test", "rules", *tests],
                            capture_output=True, text=True, timeout=120, check=False, cwd=PROM)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test() -> None:
    """Each alert in the rule file is named in an alert_rule_test."""
    alerts = set(re.findall(r"^\s*- alert: (\w+)", RULES.read_text(), re.M))
    tested = set()
    for path in PROM.glob("*_test.yml"):
        tested |= set(re.findall(r"alertname: (\w+)", path.read_text()))
    assert alerts, "no alerts found"
    assert alerts <= tested, alerts - tested


async def test_rules_use_only_exported_metrics() -> None:
    """Every blockfeed_* series the rules read is exported by a real gateway's /metrics."""
    used = set(METRIC.findall(RULES.read_text()))
    assert used
    exported = await exported_sample_names()
    assert used <= exported, used - exported
