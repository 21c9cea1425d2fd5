"""Two ``run_all.py`` summaries side by side: each figure before and after, and their ratio.

Run the quick benchmarks on two commits back to back (same machine, same load), then::

    .venv/bin/python bench/compare.py BEFORE/summary.json AFTER/summary.json \
        --out bench/results/compare.json

A ratio below 1 is smaller after (better for delays and request counts, worse for
throughputs); the target column says which way is good.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import markdown_table


def _ratio(before: str, after: str) -> float | None:
    try:
        old, new = float(before), float(after)
    except (TypeError, ValueError):
        return None
    return None if old == 0 else round(new / old, 2)


def compare(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per figure present in both summaries, in the order of ``before``."""
    later = {(f["bench"], f["figure"]): f for f in after["figures"]}
    rows = []
    for figure in before["figures"]:
        match = later.get((figure["bench"], figure["figure"]))
        if match is None:
            continue
        rows.append({
            "bench": figure["bench"], "figure": figure["figure"],
            "before": figure["value"], "after": match["value"],
            "ratio": _ratio(figure["value"], match["value"]),
            "target": match["target"], "verdict_before": figure["verdict"],
            "verdict_after": match["verdict"],
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--out", type=Path, help="save the rows as JSON here")
    args = parser.parse_args(argv)
    try:
        before, after = (json.loads(path.read_text()) for path in (args.before, args.after))
        rows = compare(before, after)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        parser.error(f"cannot read the summaries: {exc}")
    print(markdown_table(
        ["bench", "figure", "before", "after", "after/before", "target", "verdict (b / a)"],
        [[r["bench"], r["figure"], r["before"], r["after"],
          "-" if r["ratio"] is None else r["ratio"], r["target"],
          f"{r['verdict_before'] or '-'} / {r['verdict_after'] or '-'}"] for r in rows],
    ))
    if args.out is not None:
        args.out.write_text(json.dumps({"before": str(args.before), "after": str(args.after),
                                        "rows": rows}, indent=2) + "\n")
        print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
