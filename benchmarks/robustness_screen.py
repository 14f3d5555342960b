"""The robustness screen of docs/robustness.md (issue 20): augmentation mixes x seeds, each
trained and then scored on dev and its perturbed copies with `rnner robustness`.

A run is `rnner train CONFIG --seed S --epochs E --set KEY=VALUE...` into
runs/robust/ARM-seedS, then `rnner robustness RUN --data DEV --json` into
docs/robustness/ARM-seedS-dev.json. The arms and the budget are in
benchmarks/robustness_screen.toml. Rerunning skips every report that exists (an interrupted
training resumes from its checkpoint), so the screen survives the end of a session once its
reports are committed.

    python benchmarks/robustness_screen.py --lanes 2            # run or resume every arm
    python benchmarks/robustness_screen.py --arm case50 --plan  # what would run
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "benchmarks" / "robustness_screen.toml"
sys.path.insert(0, str(ROOT / "src"))
from rnner.data import resolve_split  # noqa: E402
from rnner.files import write_text  # noqa: E402

THREADS = 1  # torch threads per run: --lanes runs side by side, one core each


def jobs(spec: dict, only: list[str]) -> list[tuple[str, int, list[str]]]:
    out = []
    for seed in spec["seeds"]:  # seed 1 of every arm first, so a short session still compares
        for name, arm in spec["arms"].items():
            if only and name not in only:
                continue
            sets = [f"{k}={v}" for k, v in arm.get("set", {}).items()]
            out.append((name, seed, sets))
    return out


def run(name: str, seed: int, sets: list[str], spec: dict, args: argparse.Namespace) -> str:
    report = args.reports / f"{name}-seed{seed}-dev.json"
    if report.exists():
        return f"{report.name}: done before"
    run_dir = args.runs / f"{name}-seed{seed}"
    rnner = [sys.executable, "-m", "rnner"]
    nice = ["nice", "-n", str(spec.get("nice", 10))]
    if (run_dir / "checkpoint.safetensors").exists() and not (run_dir / "metrics.json").exists():
        train = [*rnner, "train", "--resume", str(run_dir)]
    elif (run_dir / "metrics.json").exists():
        train = []
    else:
        config = ROOT / spec["config"]  # relative to the checkout, or absolute
        train = [*rnner, "train", str(config), "--seed", str(seed)]
        train += ["--epochs", str(spec["epochs"]), "--output", str(run_dir)]
        for s in [f"train.threads={THREADS}", *sets]:
            train += ["--set", s]
    if train:
        quiet = ["--quiet"] if args.quiet else []
        subprocess.run([*nice, *train, *quiet], check=True, stdout=subprocess.DEVNULL)
    dev = args.dev or resolve_split("conll2003", "dev")  # RNNER_DATA, as rnner finds it
    cmd = [*rnner, "robustness", str(run_dir), "--data", str(dev), "--json"]
    cmd += ["--threads", str(THREADS)]
    out = subprocess.run([*nice, *cmd], check=True, capture_output=True, text=True).stdout
    report.parent.mkdir(parents=True, exist_ok=True)
    write_text(report, out)  # atomic: a report exists only whole
    return f"{report.name}: written"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lanes", type=int, default=1, help="runs at once (one thread each)")
    ap.add_argument("--quiet", action="store_true", help="no training progress bars")
    ap.add_argument("--arm", action="append", default=[], help="only this arm (repeatable)")
    ap.add_argument("--spec", type=Path, default=SPEC)
    ap.add_argument("--plan", action="store_true", help="print the queue and stop")
    ap.add_argument("--reports", type=Path, default=ROOT / "docs" / "robustness")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "robust")
    ap.add_argument("--dev", type=Path, help="the dev file (default: CoNLL-2003's)")
    args = ap.parse_args(argv)
    spec = tomllib.loads(args.spec.read_text(encoding="utf-8"))
    queue = jobs(spec, args.arm)
    if args.plan:
        for name, seed, sets in queue:
            print(name, seed, " ".join(sets))
        return 0
    with ThreadPoolExecutor(args.lanes) as pool:
        futures = [pool.submit(run, n, s, sets, spec, args) for n, s, sets in queue]
        for f in futures:
            print(f.result(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
