"""Training throughput of one process against `rnner train --nproc 2` on this machine.

    python benchmarks/ddp_throughput.py [--config configs/conll03.toml] [--sentences 1000]
        [--epochs 3] [--repeats 1]

Each setting trains the same config from scratch; the figure is the median over epochs of
`sentences_per_s` in log.jsonl (training only: rank 0's dev evaluation is not in it; with
several ranks it counts the sentences of all of them). `--nproc 2` doubles the sentences per
optimizer step, so one process with twice the batch is measured too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (label, processes, torch threads per process, batch size per process)
SETTINGS = [
    ("1 process, 1 thread", 1, 1, 32),
    ("1 process, 2 threads", 1, 2, 32),
    ("1 process, 2 threads, batch 64", 1, 2, 64),
    ("--nproc 2, 1 thread each", 2, 1, 32),
]


def measure(
    config: Path, sentences: int, epochs: int, nproc: int, threads: int, batch: int
) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="rnner-ddp-") as tmp:
        out = Path(tmp) / "run"
        cmd = [
            sys.executable,
            "-m",
            "rnner.cli",
            "train",
            str(config),
            "--output",
            str(out),
            "--quiet",
            "--epochs",
            str(epochs),
            "--nproc",
            str(nproc),
            "--set",
            f"data.max_sentences={sentences}",
            "--set",
            f"train.batch_size={batch}",
            "--set",
            f"train.threads={threads}",
            "--set",
            "train.patience=0",
            "--set",
            "train.device=cpu",
        ]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        f1 = json.loads((out / "metrics.json").read_text())["dev"]["entity"]["f1"]
    return statistics.median(r["sentences_per_s"] for r in log), f1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "conll03.toml")
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--only", help="comma-separated numbers (1-4) of the settings to run")
    args = ap.parse_args(argv)
    chosen = [SETTINGS[int(i) - 1] for i in args.only.split(",")] if args.only else SETTINGS
    rows = []
    for label, nproc, threads, batch in chosen:
        rates, f1s = [], []
        for _ in range(args.repeats):
            rate, f1 = measure(args.config, args.sentences, args.epochs, nproc, threads, batch)
            rates.append(rate)
            f1s.append(f1)
            print(f"{label}: {rate:.0f} sentences/s", flush=True)
        rows.append((label, statistics.median(rates), statistics.median(f1s)))
    print(
        f"\n{args.config.name}, {args.sentences} training sentences, {args.epochs} epochs, "
        f"{os.cpu_count()} CPUs; median over epochs (and {args.repeats} repeat(s))\n"
    )
    print(f"| setting | train sentences/s | vs the first | dev F1 after {args.epochs} epochs |")
    print("|---|---|---|---|")
    base = rows[0][1]
    for label, rate, f1 in rows:
        print(f"| {label} | {rate:.0f} | {rate / base:.2f}× | {100 * f1:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
