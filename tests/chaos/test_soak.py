"""The soak (bench/soak.py), shortened: every fault class many times, nothing lost, flat RSS.

``make soak`` runs this, then the full soak. The shortened run keeps the full run's fault
density (a fault every ~0.1 s, overlapping, on two endpoints) over 3,000 blocks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"
BLOCKS = 3_000
FAULTS_PER_CLASS = 25
FAULT_CLASSES = [f"F{n}" for n in range(1, 12)]
BOUND_S = 300.0
"""Bound on the whole run (it takes ~35 s; a loaded 2-core machine may be much slower)."""


@pytest.mark.slow
@pytest.mark.timeout(BOUND_S + 30)
def test_shortened_soak_loses_nothing_and_keeps_memory_flat(tmp_path: Path) -> None:
    """3,000 blocks under 25 faults of every class: nothing lost or wrong, RSS growth <= 10 MiB."""
    out = tmp_path / "soak.json"
    completed = subprocess.run(
        [sys.executable, str(SOAK), "--blocks", str(BLOCKS), "--faults-per-class",
         str(FAULTS_PER_CLASS), "--out", str(out)],
        capture_output=True, text=True, timeout=BOUND_S, check=False,
    )
    assert out.exists(), completed.stderr[-3000:]
    result = json.loads(out.read_text())
    print(completed.stdout)
    delivery = result["delivery"]
    assert result["faults_injected"] == {c: FAULTS_PER_CLASS for c in FAULT_CLASSES}
    assert delivery["gap_blocks"] == 0
    assert delivery["repeats"] == 0
    assert delivery["broken_links"] == 0
    assert delivery["wrong_hashes"] == 0
    assert delivery["delivered"] == delivery["last"] - delivery["first"] + 1
    assert delivery["delivered"] >= BLOCKS
    assert delivery["last"] >= delivery["head"]
    assert result["feed_status"]["error"] is None
    assert result["rss"]["growth_mib"] <= 10.0
    assert result["verdict"]["pass"] is True
    assert completed.returncode == 0, completed.stdout[-2000:]
