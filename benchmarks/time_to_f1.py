"""Time to a good model: the wall seconds a training run took until its dev F1 first reached a
threshold (94.0 by default, the default config's quality), read from its log.jsonl.

    python benchmarks/time_to_f1.py RUN_DIR [NAME=RUN_DIR ...] [--threshold 94.0] [--json]

`elapsed_seconds` in the log counts from the first training step (data, vocabularies and
embeddings are ready by then) and includes each epoch's dev scoring. With several runs of one
name (`NAME=DIR` repeated), also their mean and standard deviation. Best dev F1 and the test
F1 of the kept model come from metrics.json when the run finished.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any


def time_to(run: Path, threshold: float) -> dict[str, Any]:
    """The first epoch whose dev F1 (in %) reaches `threshold`, and its elapsed seconds (None
    when no epoch did); the run's best dev F1 and test F1."""
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line]
    hit = next((r for r in log if 100 * r["dev_f1"] >= threshold), None)
    out: dict[str, Any] = {
        "run": str(run),
        "epoch": hit["epoch"] if hit else None,
        "seconds": hit["elapsed_seconds"] if hit else None,
        "epochs_logged": len(log),
        "seconds_per_epoch": log[0]["elapsed_seconds"] if log else None,
        "best_dev_f1": max(100 * r["dev_f1"] for r in log) if log else None,
        "test_f1": None,
    }
    if len(log) > 1:
        steps = [
            b["elapsed_seconds"] - a["elapsed_seconds"]
            for a, b in zip(log[:-1], log[1:], strict=True)
        ]
        out["seconds_per_epoch"] = statistics.median([log[0]["elapsed_seconds"], *steps])
    metrics = run / "metrics.json"
    if metrics.is_file():
        m = json.loads(metrics.read_text())
        out["test_f1"] = 100 * m["test"]["entity"]["f1"]
        out["best_dev_f1"] = 100 * m["dev"]["entity"]["f1"]
    return out


def _mean_std(xs: list[float]) -> str:
    if not xs:
        return "-"
    if len(xs) == 1:
        return f"{xs[0]:.2f}"
    return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f}"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", metavar="[NAME=]RUN_DIR")
    p.add_argument("--threshold", type=float, default=94.0, help="dev F1 in %% (default 94.0)")
    p.add_argument("--json", action="store_true", help="one JSON object per run")
    args = p.parse_args(argv)
    rows = []
    for item in args.runs:
        name, _, path = item.rpartition("=")
        row = time_to(Path(path), args.threshold)
        rows.append({"name": name or path, **row})
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(
        f"| run | epoch reaching dev F1 {args.threshold} | seconds | s/epoch "
        "| best dev F1 | test F1 |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        cells = [
            r["name"],
            str(r["epoch"]) if r["epoch"] else f"not in {r['epochs_logged']}",
            f"{r['seconds']:.1f}" if r["seconds"] is not None else "-",
            f"{r['seconds_per_epoch']:.1f}" if r["seconds_per_epoch"] else "-",
            f"{r['best_dev_f1']:.2f}" if r["best_dev_f1"] is not None else "-",
            f"{r['test_f1']:.2f}" if r["test_f1"] is not None else "-",
        ]
        print("| " + " | ".join(cells) + " |")
    names = list(dict.fromkeys(r["name"] for r in rows))
    if len(names) < len(rows):
        print("\n| name | runs | seconds to threshold | best dev F1 | test F1 |")
        print("|---|---|---|---|---|")
        for n in names:
            group = [r for r in rows if r["name"] == n]
            secs = [r["seconds"] for r in group if r["seconds"] is not None]
            reached = f"{_mean_std(secs)} ({len(secs)} of {len(group)} reached it)"
            dev = _mean_std([r["best_dev_f1"] for r in group if r["best_dev_f1"] is not None])
            test = _mean_std([r["test_f1"] for r in group if r["test_f1"] is not None])
            print(f"| {n} | {len(group)} | {reached} | {dev} | {test} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
