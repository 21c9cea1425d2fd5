"""The shipped Grafana dashboard: only exported metric names, valid PromQL, a sane layout."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ops_exported import exported_sample_names

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "blockfeed.json"
METRIC = re.compile(r"\b(blockfeed_[a-z0-9_]+)")
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "6h", "$instance": ".*",
                     "$epoch_length": "360"}


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def exprs(dashboard: dict[str, Any]) -> Iterator[str]:
    """Every PromQL expression: panel targets and template variable queries."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable.get("type") == "query":
            yield variable["definition"]


async def test_dashboard_uses_only_exported_metrics() -> None:
    """Every blockfeed_* series any panel or variable reads is exported by /metrics."""
    used = {name for expr in exprs(load()) for name in METRIC.findall(expr)}
    assert len(used) >= 10, used
    exported = await exported_sample_names()
    assert used <= exported, used - exported


def test_dashboard_covers_what_operators_watch() -> None:
    """Mode over time, uptime, delay histogram, reconnects, endpoints, epoch and sink lag."""
    titles = " | ".join(p["title"].lower() for p in load()["panels"])
    for topic in ("mode over time", "uptime", "gap between block arrivals", "reconnects",
                  "endpoint health", "epoch progress", "sink lag"):
        assert topic in titles, topic


def test_panel_ids_unique_and_layout_in_grid() -> None:
    """Panel ids are unique and every panel fits Grafana's 24-column grid without overlap."""
    panels = load()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in panels:
        pos = p["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool")
def test_every_expression_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses every panel expression (Grafana's variables replaced by examples)."""
    rules = []
    for index, expr in enumerate(exprs(load())):
        for variable, example in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, example)
        if expr.startswith("label_values("):
            continue  # Grafana's own query function, not PromQL
        rules.append({"record": f"dashboard:expr_{index}", "expr": expr})
    assert rules
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(["promtool", "check", "rules", str(path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
