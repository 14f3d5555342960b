"""Compare multi-seed experiments (`rnner experiment` output directories) as one Markdown table.

    python research/compare_seeds.py "REFERENCE=runs/a-seeds" "LABEL=runs/b-seeds" ...

The first experiment is the reference. Each row gives dev and test entity F1 (mean ± std over
seeds), the difference from the reference with Welch's t-test, the mean per-type test F1, and
the per-seed dev differences where both experiments ran the same seed: a lever that helps
should help on every seed, not only on the mean. Dev decides; test is shown, never used.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

from rnner.report import compare, method_note, pm


def load(directory: str) -> dict[int, dict[str, Any]]:
    """Seed -> {dev, test, per_type, wall} from each finished seed's metrics.json."""
    runs: dict[int, dict[str, Any]] = {}
    for metrics in sorted(Path(directory).glob("seed*/metrics.json")):
        m = json.loads(metrics.read_text())
        seed = int(metrics.parent.name.removeprefix("seed"))
        runs[seed] = {
            "dev": m["dev"]["entity"]["f1"],
            "test": m["test"]["entity"]["f1"] if "test" in m else None,
            "per_type": {
                t: v["f1"]
                for t, v in m.get("test", {}).get("entity", {}).get("per_type", {}).items()
            },
            "wall": m.get("train_seconds"),
        }
    if not runs:
        raise SystemExit(f"{directory}: no finished seed (seed*/metrics.json)")
    return runs


def main(argv: list[str]) -> int:
    if len(argv) < 2 or any("=" not in a for a in argv):
        raise SystemExit(__doc__)
    pairs = [a.split("=", 1) for a in argv]
    exps = [(label, load(path)) for label, path in pairs]
    ref = exps[0][1]
    types = sorted({t for _, e in exps for r in e.values() for t in r["per_type"]})
    print(
        "| config | seeds | dev F1 | Δ dev | p | test F1 | Δ test | "
        + " | ".join(f"test {t}" for t in types)
        + " | dev Δ per seed | train s |"
    )
    print("|---|---|---|---|---|---|---|" + "---|" * len(types) + "---|---|")
    for i, (label, exp) in enumerate(exps):
        dev = [r["dev"] for r in exp.values()]
        test = [r["test"] for r in exp.values() if r["test"] is not None]
        if i == 0:
            d_dev = d_test = p = "ref."
            per_seed = ""
        else:
            c_dev = compare(dev, [r["dev"] for r in ref.values()])
            c_test = compare(test, [r["test"] for r in ref.values() if r["test"] is not None])
            d_dev, p, d_test = c_dev.cell_diff(), c_dev.cell_p(), c_test.cell_diff()
            per_seed = " ".join(
                f"{round(100 * (exp[s]['dev'] - ref[s]['dev']), 2) or 0.0:+.2f}"
                for s in sorted(exp)
                if s in ref
            )
        type_cells = " | ".join(
            f"{100 * statistics.fmean(vals):.2f}"
            if (vals := [r["per_type"][t] for r in exp.values() if t in r["per_type"]])
            else "–"
            for t in types
        )
        walls = [r["wall"] for r in exp.values() if r["wall"] is not None]
        wall = f"{statistics.median(walls):.0f}" if walls else "–"
        print(
            f"| {label} | {len(exp)} | {pm(dev)} | {d_dev} | {p} | {pm(test)} | {d_test} | "
            f"{type_cells} | {per_seed} | {wall} |"
        )
    print(f"\np: {method_note()}.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
