"""Dev F1 against wall-clock seconds for one or more run directories (from their log.jsonl),
and the seconds each took to first reach a dev F1 threshold.

    python research/plot_curve.py --output docs/time_to_f1.png NAME=RUN_DIR [...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def curve(run: Path) -> list[tuple[float, float]]:
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [(r["elapsed_seconds"], 100 * r["dev_f1"]) for r in log]


def _epoch_table(runs: list[str], epochs: int) -> None:
    names = [r.split("=", 1)[0] for r in runs]
    curves = [curve(Path(r.split("=", 1)[1]))[:epochs] for r in runs]
    print("| epoch | " + " | ".join(f"dev F1 {n}" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for e in range(min(len(c) for c in curves)):
        print(f"| {e + 1} | " + " | ".join(f"{c[e][1]:.2f}" for c in curves) + " |")
    print("| best | " + " | ".join(f"{max(y for _, y in c):.2f}" for c in curves) + " |\n")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")
    p.add_argument("--output", required=True)
    p.add_argument("--threshold", type=float, default=90.0)
    p.add_argument(
        "--epochs",
        type=int,
        default=0,
        help="also print dev F1 per epoch for the first N epochs, side by side",
    )
    args = p.parse_args(argv)
    if args.epochs:
        _epoch_table(args.runs, args.epochs)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    print(f"| run | seconds to dev F1 >= {args.threshold:g} | best dev F1 | at seconds |")
    print("|---|---|---|---|")
    for item in args.runs:
        name, run = item.split("=", 1)
        points = curve(Path(run))
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", markersize=3, label=name)
        reach = next((x for x, y in points if y >= args.threshold), None)
        best = max(points, key=lambda p: p[1])
        reached = f"{reach:.0f}" if reach is not None else "never"
        print(f"| {name} | {reached} | {best[1]:.2f} | {best[0]:.0f} |")
    ax.axhline(args.threshold, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel("wall-clock seconds (training + dev evaluation)")
    ax.set_ylabel("dev entity F1")
    ax.set_ylim(bottom=max(0, min(ax.get_ylim()[0], args.threshold - 5)))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
