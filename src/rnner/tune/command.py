"""`rnner tune SWEEP.toml`: the command line of sweeps."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ..config import ConfigError
from .backend import STALE_AFTER_SECONDS
from .runner import tune


def add_tune_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("tune", help="run, resume or join a hyperparameter sweep")
    p.add_argument("sweep", help="sweep TOML (see configs/sweeps/)")
    p.add_argument(
        "--trials",
        type=int,
        help="target number of finished trials in the study "
        "(default: the sweep's `trials`, or the grid)",
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    p.add_argument(
        "--storage",
        help="sqlite:///PATH, postgresql://..., mysql://... or "
        "journal:PATH (default sqlite:///OUTPUT/study.db)",
    )
    p.add_argument("--study", help="study name (default: the sweep's name)")
    p.add_argument("--output", help="directory for study.db and trials/ (default runs/sweeps/NAME)")
    p.add_argument("--keep-models", action="store_true", help="keep each run's weights")
    p.add_argument(
        "--stale-after",
        type=float,
        default=STALE_AFTER_SECONDS,
        metavar="SECONDS",
        help="retry a RUNNING trial of another machine after this long without a "
        "heartbeat (trials of this machine are retried once their process is "
        "gone)",
    )
    p.add_argument("--quiet", action="store_true", help="no per-trial lines")
    p.set_defaults(func=cmd_tune)
    return p


def cmd_tune(args: argparse.Namespace) -> int:
    try:
        summary = tune(
            args.sweep,
            trials=args.trials,
            workers=args.workers,
            storage=args.storage,
            study_name=args.study,
            output=args.output,
            keep_models=args.keep_models,
            stale_after=args.stale_after,
            quiet=args.quiet,
        )
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    c = summary["counts"]
    # another machine's last trials: this worker's part is done and theirs finish the study
    running = f", {c['RUNNING']} running in other workers" if c.get("RUNNING") else ""
    print(
        f"study {summary['study']}: {summary['finished']}/{summary['target']} finished "
        f"({c.get('COMPLETE', 0)} complete, {c.get('PRUNED', 0)} pruned, "
        f"{c.get('FAIL', 0)} failed{running}) in {summary['seconds']:.0f} s; "
        f"storage {summary['storage']}"
    )
    if "best" in summary:
        b = summary["best"]
        test = f", test {100 * b['test_f1']:.2f}" if b.get("test_f1") is not None else ""
        print(f"best: trial {b['number']} dev F1 {100 * b['dev_f1']:.2f}{test}  {b['params']}")
    bad = [c for c in summary["exit_codes"] if c != 0]
    if bad:
        print(
            f"{len(bad)} worker(s) stopped early (exit codes {bad}); see their messages above",
            file=sys.stderr,
        )
    print(f"report: rnner report {summary['output']}")
    return 0 if summary["finished"] + c.get("RUNNING", 0) >= summary["target"] else 1


def main_tune(argv: Sequence[str] | None = None) -> int:
    """`rnner tune` on its own (the CLI wires `add_tune_parser` in instead)."""
    parser = argparse.ArgumentParser(prog="rnner")
    add_tune_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["tune", *(argv or [])])
    try:
        return args.func(args)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
