"""Two (or more) versions of rnner benchmarked side by side: `rnner bench --json` run from
each source tree in turn, round after round, so that a busier spell of the machine falls on
all of them; medians over the rounds, and each version's ratio to the first.

python benchmarks/ab_bench.py before=/path/to/old/src after=src --rounds 3 -- --quick --threads 1

Each NAME=DIR puts DIR first on PYTHONPATH (a `git worktree` of the old commit gives its
src). Arguments after `--` go to every `rnner bench`. `--json FILE` keeps every run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROWS = [
    ("train sentences/s", lambda d: d["train_sentences_per_s"]),
    ("train step, ms", lambda d: d["train_step_ms"]),
    ("floor sentences/s", lambda d: d.get("floor_sentences_per_s")),
    ("train / floor", lambda d: d.get("train_floor_fraction")),
    ("latency b=1, ms (median)", lambda d: d["latency_ms_batch1"]["median"]),
    (
        "latency b=1, 1 thread, ms",
        lambda d: (d.get("latency_ms_batch1_one_thread") or {}).get("median"),
    ),
    ("infer tokens/s, largest batch", lambda d: d["infer_tokens_per_s"]),
    ("matmul GFLOP/s", lambda d: d["matmul_gflops"]),
]


def run_once(src: str, bench_args: list[str]) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(Path(src).resolve()))
    out = subprocess.run(
        [sys.executable, "-m", "rnner.cli", "bench", "--json", *bench_args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("versions", nargs="+", metavar="NAME=SRC_DIR")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", help="write every run's result here")
    args, rest = p.parse_known_args(argv)
    bench_args = rest[1:] if rest[:1] == ["--"] else rest
    versions = [v.split("=", 1) for v in args.versions]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in versions}
    for r in range(args.rounds):
        for name, src in versions if r % 2 == 0 else versions[::-1]:
            runs[name].append(run_once(src, bench_args))
            print(f"round {r + 1}: {name} done", file=sys.stderr, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1) + "\n", encoding="utf-8")
    names = [name for name, _ in versions]
    first = names[0]
    print(
        f"medians of {args.rounds} interleaved rounds; `rnner bench --json {' '.join(bench_args)}`"
    )
    print(
        "| measurement | "
        + " | ".join(names)
        + " | "
        + " | ".join(f"{n} / {first}" for n in names[1:])
        + " |"
    )
    print("|---|" + "---|" * (2 * len(names) - 1))
    for label, get in ROWS:
        med = {}
        for name in names:
            values = [v for v in map(get, runs[name]) if v is not None]
            med[name] = statistics.median(values) if values else None
        cells = [f"{med[n]:.3g}" if med[n] is not None else "-" for n in names]
        ratios = [
            f"{med[n] / med[first]:.2f}" if med[n] is not None and med[first] else "-"
            for n in names[1:]
        ]
        print(f"| {label} | " + " | ".join(cells + ratios) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
