"""Print a Markdown table of finished run directories, so that docs quote numbers that a
command produced rather than numbers typed by hand.

    python research/runs_table.py NAME=RUN_DIR [NAME=RUN_DIR ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def row(name: str, run: Path) -> str:
    m = json.loads((run / "metrics.json").read_text())
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    rate = sorted(r["sentences_per_s"] for r in log)[len(log) // 2]
    dev, test = m["dev"]["entity"], m["test"]["entity"]
    types = " | ".join(f"{100 * test['per_type'][t]['f1']:.2f}" for t in sorted(test["per_type"]))
    return (
        f"| {name} | {100 * dev['f1']:.2f} | {100 * test['f1']:.2f} | {types} | "
        f"{m['best_epoch']}/{m['epochs_run']} | {m['train_seconds']:.0f} | {rate:.0f} |"
    )


def main(argv: list[str]) -> int:
    pairs = [a.split("=", 1) for a in argv]
    first = Path(pairs[0][1])
    kinds = sorted(json.loads((first / "metrics.json").read_text())["test"]["entity"]["per_type"])
    print(
        "| run | dev F1 | test F1 | "
        + " | ".join(f"test {k}" for k in kinds)
        + " | best/run epochs | train s | median sent/s |"
    )
    print("|---|---|---|" + "---|" * len(kinds) + "---|---|---|")
    for name, run in pairs:
        print(row(name, Path(run)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
