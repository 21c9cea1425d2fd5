"""Run every benchmark in ``bench/`` and print one combined table of figures against DESIGN.md.

Benchmarks (each its own script, run as a subprocess so they never share a process or a port):

- ``recovery.py``  recovery per fault class vs the first fix, polling mode, per-block overhead;
- ``fanout.py``    SSE fan-out delay for 1,000 (quick) or 1,000 and 10,000 clients;
- ``backfill.py``  backfill throughput against a local devnode;
- ``request_storm.py`` 15 s of errors on every channel: requests and ERROR lines it costs;
- ``soak.py``      only with ``--soak``: many blocks under every fault class, RSS growth.

Quick mode is the default (a few minutes in all; the soak adds ~2.5 min); ``--full`` runs each
benchmark with its own defaults (recovery ~5 min, fan-out ~1 min, the full soak ~35 min).
Each benchmark's JSON lands in ``--results-dir`` (``bench/results`` by default) under its own
name, and everything is collected into ``summary.json`` there.

Usage::

    .venv/bin/python bench/run_all.py                    # quick, without the soak
    .venv/bin/python bench/run_all.py --soak             # quick, with the quick soak
    .venv/bin/python bench/run_all.py --full --soak      # the real figures (~45 min)
    .venv/bin/python bench/run_all.py --only backfill,fanout
    .venv/bin/python bench/run_all.py --collect-only     # table + summary from existing JSON
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fmt, markdown_table

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
SUMMARY_NAME = "summary.json"

Row = tuple[str, Any, str, bool | None]
"""(figure, value, target text, met? -- None when there is no target)."""


@dataclass(frozen=True)
class Bench:
    name: str
    quick_args: tuple[str, ...]
    full_args: tuple[str, ...]
    figures: Callable[[dict[str, Any]], list[Row]]
    needs_flag: str | None = None
    """Only run when this run_all flag is given (the soak)."""


def _get(data: Any, *path: Any) -> Any:
    """``data[path[0]][path[1]]...`` or None when any step is missing."""
    for key in path:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _at_most(value: Any, limit: float) -> bool | None:
    return None if value is None else value <= limit


def recovery_figures(result: dict[str, Any]) -> list[Row]:
    T = _get(result, "meta", "block_time_s") or 1.0
    rows: list[Row] = []
    faults = result.get("faults", {})
    for fault_class, entry in faults.items():
        bf = entry.get("blockfeed", {})
        first_s = bf.get("first_block_after_fault_s")
        if fault_class == "F1":
            target, met = "<= 1 s", _at_most(first_s, 1.0)
        elif fault_class in ("F3", "F4"):
            target, met = "<= 1.5 T + 1 s", _at_most(first_s, 1.5 * T + 1.0)
        else:
            target, met = "", None
        rows.append((f"{fault_class} first block after fault, s (T = {T:g} s)", first_s,
                     target, met))
    bad = sum((_get(e, "blockfeed", k) or 0) for e in faults.values()
              for k in ("lost", "duplicated", "out_of_order", "wrong"))
    rows.append(("lost + duplicated + out of order + wrong, all faults", bad, "0", bad == 0))
    halt = _get(faults, "F7", "blockfeed", "reconnects")
    rows.append(("F7 reconnects during a finality halt", halt, "0",
                 None if halt is None else halt == 0))
    polling = _get(result, "polling", "blockfeed") or {}
    rows.append(("polling delay p50, T", polling.get("delay_p50_T"), "<= 0.15 T",
                 _at_most(polling.get("delay_p50_T"), 0.15)))
    rows.append(("polling delay p99, T", polling.get("delay_p99_T"), "<= 0.35 T",
                 _at_most(polling.get("delay_p99_T"), 0.35)))
    rows.append(("polling requests per block", polling.get("requests_per_block"), "<= 3",
                 _at_most(polling.get("requests_per_block"), 3)))
    overhead = _get(result, "overhead", "median_ms")
    rows.append(("overhead vs a bare socket, median ms", overhead, "<= 1 ms",
                 _at_most(overhead, 1.0)))
    return rows


FANOUT_TARGETS_MS = {1_000: 100.0, 10_000: 1_000.0}


def fanout_figures(result: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for run in result.get("runs", []):
        clients = run.get("clients")
        limit = FANOUT_TARGETS_MS.get(clients)
        rows.append((f"SSE {clients} clients p99 ms", run.get("delay_p99_ms"),
                     "" if limit is None else f"<= {limit:g} ms",
                     None if limit is None else _at_most(run.get("delay_p99_ms"), limit)))
        every = run.get("clients_with_every_block")
        rows.append((f"SSE {clients} clients that got every block", every, f"{clients}",
                     None if every is None else every == clients))
    return rows


def backfill_figures(result: dict[str, Any]) -> list[Row]:
    target = result.get("target_blocks_per_s", 2_000)
    rows: list[Row] = []
    for variant, entry in result.get("summary", {}).items():
        low = entry.get("blocks_per_s_total_min")
        rows.append((f"backfill blocks/s, {variant.replace('_', ' ')} (min of "
                     f"{entry.get('runs')})", low, f">= {target}",
                     None if low is None else low >= target))
        rows.append((f"backfill correct, {variant.replace('_', ' ')}", entry.get("all_correct"),
                     "True", entry.get("all_correct") is True))
    return rows


def soak_figures(result: dict[str, Any]) -> list[Row]:
    delivery = result.get("delivery", {})
    config = result.get("config", {})
    targets = result.get("targets", {})
    injected = result.get("faults_injected", {})
    fewest = min(injected.values()) if injected else None
    bad = sum(delivery.get(k, 0) for k in ("gap_blocks", "repeats", "broken_links",
                                           "wrong_hashes"))
    growth = _get(result, "rss", "growth_mib")
    rows: list[Row] = []
    for figure, value, asked, wanted in (
        ("soak blocks delivered", delivery.get("delivered"), config.get("blocks", 0),
         targets.get("blocks", 0)),
        ("soak fewest faults of one class", fewest, config.get("faults_per_class", 0),
         targets.get("faults_per_class", 0)),
    ):
        if asked < wanted:  # a shortened run: it cannot meet the full-run count, nor miss it
            rows.append((f"{figure} (shortened run)", value, f"full run: >= {wanted}", None))
        else:
            rows.append((figure, value, f">= {wanted}", None if value is None
                         else value >= min(asked, wanted)))
    rows.append(("soak lost + repeated + broken links + wrong", bad, "0", bad == 0))
    rows.append((f"soak feed RSS growth MiB ({config.get('blocks')} blocks)", growth,
                 f"<= {targets.get('rss_growth_mib')} MiB",
                 _at_most(growth, targets.get("rss_growth_mib", 10.0))))
    return rows


def request_storm_figures(result: dict[str, Any]) -> list[Row]:
    total = result.get("requests_in_window_total")
    errors = result.get("error_lines_in_window")
    sound = all(result.get(k) for k in ("consecutive", "linked", "canonical"))
    return [
        ("requests during 15 s of errors on every channel", total, "<= 150", _at_most(total, 150)),
        ("ERROR lines during them", errors, "<= 20", _at_most(errors, 20)),
        ("every block after them, once, in order, linked", sound, "yes", sound),
    ]


BENCHES = (
    Bench("recovery", ("--quick",), (), recovery_figures),
    Bench("fanout", ("--clients", "1000", "--blocks", "10"), (), fanout_figures),
    Bench("backfill", ("--quick",), (), backfill_figures),
    Bench("request_storm", (), (), request_storm_figures),
    Bench("soak", ("--blocks", "12000", "--faults-per-class", "100"), (), soak_figures,
          needs_flag="soak"),
)


def run_bench(bench: Bench, *, full: bool, results_dir: Path) -> dict[str, Any]:
    """Run one benchmark script; its own output streams through; returns its summary entry."""
    out = results_dir / f"{bench.name}.json"
    argv = [sys.executable, str(BENCH_DIR / f"{bench.name}.py"),
            *(bench.full_args if full else bench.quick_args), "--out", str(out)]
    print(f"\n=== {bench.name}: {' '.join(argv[1:])}", flush=True)
    started = time.monotonic()
    stale = out.stat().st_mtime if out.exists() else None
    code = subprocess.call(argv)
    entry: dict[str, Any] = {"command": argv[1:], "exit_code": code,
                             "elapsed_s": round(time.monotonic() - started, 1)}
    if out.exists() and out.stat().st_mtime != stale:
        entry["result"] = json.loads(out.read_text())
    else:
        entry["error"] = f"{bench.name}.py wrote no result (exit code {code})"
    return entry


def collect_bench(bench: Bench, *, results_dir: Path) -> dict[str, Any]:
    """The summary entry of a benchmark from the JSON it saved earlier (nothing is run)."""
    out = results_dir / f"{bench.name}.json"
    if not out.exists():
        return {"command": None, "exit_code": None, "error": f"no {out.name} in {results_dir}"}
    return {"command": None, "exit_code": None, "collected_from": str(out),
            "result": json.loads(out.read_text())}


def combined_rows(entries: dict[str, dict[str, Any]]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    by_name = {bench.name: bench for bench in BENCHES}
    for name, entry in entries.items():
        if "result" not in entry:
            rows.append([name, entry.get("error", "no result"), "-", "-", "FAILED"])
            continue
        for figure, value, target, met in by_name[name].figures(entry["result"]):
            verdict = "" if met is None else ("met" if met else "MISSED")
            rows.append([name, figure, fmt(value, 3), target or "-", verdict])
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true",
                        help="each benchmark with its own (long) defaults instead of quick mode")
    parser.add_argument("--soak", action="store_true", help="also run soak.py")
    parser.add_argument("--only", default="", help="comma list of benchmark names to run")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--collect-only", action="store_true",
                        help="run nothing: build the table and summary from the saved JSON")
    args = parser.parse_args(argv)
    known = {bench.name for bench in BENCHES}
    args.only_names = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = args.only_names - known
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; "
                     f"known: {', '.join(sorted(known))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    entries: dict[str, dict[str, Any]] = {}
    for bench in BENCHES:
        if args.only_names and bench.name not in args.only_names:
            continue
        if args.collect_only:
            entry = collect_bench(bench, results_dir=args.results_dir)
            if "result" in entry or not bench.needs_flag:
                entries[bench.name] = entry
            continue
        if not args.only_names and bench.needs_flag and not getattr(args, bench.needs_flag):
            continue
        entries[bench.name] = run_bench(bench, full=args.full, results_dir=args.results_dir)
    rows = combined_rows(entries)
    summary = {
        "mode": "collected" if args.collect_only else ("full" if args.full else "quick"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "figures": [dict(zip(("bench", "figure", "value", "target", "verdict"), row,
                             strict=True)) for row in rows],
        "benches": entries,
    }
    path = args.results_dir / SUMMARY_NAME
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print("\n" + markdown_table(["bench", "figure", "value", "target", "verdict"], rows))
    print(f"\nsaved {path}")
    failed = [name for name, entry in entries.items()
              if entry["exit_code"] not in (0, None) or "result" not in entry]
    if failed:
        print(f"benchmarks that failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
