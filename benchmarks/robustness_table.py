"""Markdown table of `rnner robustness --json` reports, one row per configuration (mean ± std
over its seeds' reports), so docs/robustness.md quotes numbers a command produced.

    python benchmarks/robustness_table.py NAME=REPORT.json[,REPORT.json...] [NAME=...]

The last column is the selection score of docs/robustness.md: the unweighted mean of the
six F1s (clean and the five perturbations).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

COLUMNS = ("clean", "lower", "upper", "title", "typos", "mentions")


def cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def change(delta: float) -> str:
    return f" ({'+' if delta >= 0 else '−'}{abs(delta):.2f})"


def main(argv: list[str]) -> int:
    print("| configuration | seeds | " + " | ".join(COLUMNS) + " | mean of six |")
    print("|---|---|" + "---|" * (len(COLUMNS) + 1))
    for arg in argv:
        name, paths = arg.split("=", 1)
        reports = [json.loads(Path(p).read_text()) for p in paths.split(",")]
        rows = [r["results"] for r in reports]
        cols = [[100 * r[c]["f1"] for r in rows] for c in COLUMNS if all(c in r for r in rows)]
        score = [
            statistics.mean(100 * r[c]["f1"] for c in COLUMNS)
            for r in rows
            if all(c in r for c in COLUMNS)
        ]
        clean = statistics.mean(cols[0])
        drops = [
            cell(col) + ("" if i == 0 else change(statistics.mean(col) - clean))
            for i, col in enumerate(cols)
        ]
        print(
            f"| {name} | {len(rows)} | "
            + " | ".join(drops)
            + f" | {cell(score) if score else '-'} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
