"""Multi-seed experiments: the same config trained with N seeds (in parallel processes),
summarised as mean, std, min and max of dev and test entity F1, overall and per type.

Accuracy claims in this project are means over seeds: a single run's F1 on CoNLL-2003 moves
by several tenths of a point with the seed alone (Reimers & Gurevych, 2017).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import checkpoint, files
from .config import Config, ConfigError
from .multirun import pool


class SeedInterrupted(Exception):
    """Seeds stopped by SIGINT/SIGTERM after writing their checkpoints (or never started)."""


def _seed_config(config_path: str | Path, overrides: list[str], seed: int, threads: int) -> Config:
    return Config.load(config_path, [*overrides, f"train.seed={seed}", f"train.threads={threads}"])


def _run_one(
    config_path: str, overrides: list[str], seed: int, output: str, threads: int, resume: bool
) -> dict[str, Any]:
    """One seed, in a pool worker; a stop (SIGINT/SIGTERM) leaves its checkpoint."""
    from .training import Interrupted, fit

    cfg = _seed_config(config_path, overrides, seed, threads)
    t0 = time.perf_counter()
    try:
        metrics = fit(cfg, output, progress=False, resume=resume)
    except Interrupted:  # it takes a path and would not unpickle in the parent
        raise pool.Stopped from None
    return {
        "seed": seed,
        "output": output,
        "wall_seconds": round(time.perf_counter() - t0, 1),
        **metrics,
    }


def _resumable(run_dir: Path, cfg: Config) -> bool:
    """An interrupted seed continues from its checkpoint, if it is the same run."""
    if not (run_dir / checkpoint.NAME).is_file():
        return False
    saved = Config.load(run_dir / "config.json")
    saved.train.threads = cfg.train.threads  # any thread count may carry on
    if saved.to_dict() != cfg.to_dict():
        raise ConfigError(
            "experiment",
            f"{run_dir} holds an unfinished run of another config: "
            "remove it, or rerun with the settings it was started with",
        )
    return True


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over seeds; the best-dev run is the one a user should keep (never best-test)."""
    out: dict[str, Any] = {"seeds": [r["seed"] for r in runs], "n": len(runs)}
    for split in ("dev", "test"):
        if not all(split in r for r in runs):
            continue
        f1 = [r[split]["entity"]["f1"] for r in runs]
        types = sorted(runs[0][split]["entity"]["per_type"])
        out[split] = {
            "f1": _stats(f1),
            "per_type": {
                t: _stats([r[split]["entity"]["per_type"].get(t, {"f1": 0.0})["f1"] for r in runs])
                for t in types
            },
        }
    best = max(runs, key=lambda r: r["dev"]["entity"]["f1"])
    out["best_dev_run"] = best["output"]
    out["best_epochs"] = [r["best_epoch"] for r in runs]
    out["wall_seconds"] = _stats([r["wall_seconds"] for r in runs])
    out["device"] = runs[0]["device"]
    out["runs"] = [
        {
            "seed": r["seed"],
            "output": r["output"],
            "best_epoch": r["best_epoch"],
            "dev_f1": r["dev"]["entity"]["f1"],
            "test_f1": r.get("test", {}).get("entity", {}).get("f1"),
            "wall_seconds": r["wall_seconds"],
        }
        for r in runs
    ]
    return out


def markdown(summary: dict[str, Any], title: str) -> str:
    def pm(s: dict[str, float]) -> str:
        return f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}"

    lines = [
        f"## {title}",
        "",
        f"{summary['n']} seeds on {summary['device']}; "
        f"best epochs {summary['best_epochs']}; wall time per run "
        f"{summary['wall_seconds']['mean']:.0f} s (mean)",
        "",
        "| split | F1 mean ± std | min | max | " + " | ".join(summary["dev"]["per_type"]) + " |",
        "|---|---|---|---|" + "---|" * len(summary["dev"]["per_type"]),
    ]
    for split in ("dev", "test"):
        if split in summary:
            s = summary[split]
            lines.append(
                f"| {split} | {pm(s['f1'])} | {100 * s['f1']['min']:.2f} | "
                f"{100 * s['f1']['max']:.2f} | "
                + " | ".join(pm(v) for v in s["per_type"].values())
                + " |"
            )
    lines += ["", "| seed | best epoch | dev F1 | test F1 | wall s |", "|---|---|---|---|---|"]
    for r in summary["runs"]:
        test = f"{100 * r['test_f1']:.2f}" if r["test_f1"] is not None else "-"
        lines.append(
            f"| {r['seed']} | {r['best_epoch']} | {100 * r['dev_f1']:.2f} | {test} | "
            f"{r['wall_seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def train_runs(
    config_path: str,
    jobs: list[tuple[list[str], int, Path]],
    workers: int = 0,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train each (overrides, seed, run directory) job of one config in parallel processes.

    Finished runs are not trained again (their metrics are returned as they are) and
    interrupted ones resume from their checkpoints. `on_done` sees each run as it finishes.
    Raises SeedInterrupted once every run has finished or stopped, if any stopped.
    """
    workers = workers or max(1, min(len(jobs), pool.cpu_count()))
    # The cores are shared out among the workers unless the config or --set fixes
    # train.threads: more threads than cores makes every run crawl.
    first = jobs[0][0] if jobs else []
    threads = Config.load(config_path, first).train.threads or pool.share_cores(workers)
    runs: list[dict[str, Any]] = []
    todo = []
    for overrides, seed, run_dir in jobs:
        finished = run_dir / "metrics.json"
        if finished.is_file():
            metrics = json.loads(finished.read_text())
            wall = metrics.get("train_seconds", 0.0)
            runs.append({"seed": seed, "output": str(run_dir), "wall_seconds": wall, **metrics})
        else:
            cfg = _seed_config(config_path, overrides, seed, threads)
            todo.append(
                (config_path, overrides, seed, str(run_dir), threads, _resumable(run_dir, cfg))
            )
    if not todo:
        return runs

    def done(index: int, r: dict[str, Any]) -> None:
        runs.append(r)
        if on_done is not None:
            on_done(r)

    outcome = pool.run(_run_one, todo, workers, threads, on_result=done)
    if outcome.errors:
        raise outcome.errors[0][1]
    if outcome.stopped or outcome.interrupted:  # a seed that finished as we stopped is on disk
        stopped = ", ".join(sorted(f"seed {todo[i][2]}" for i in outcome.stopped))
        raise SeedInterrupted(
            f"interrupted ({stopped or 'between seeds'}); rerun the same command to resume"
        )
    return runs


def run(
    config_path: str, seeds: list[int], output: str | Path, overrides: list[str], workers: int = 0
) -> dict[str, Any]:
    """Train every seed and write the summary.

    Rerunning the same command skips finished seeds and resumes interrupted ones from their
    checkpoints, so an experiment stopped by Ctrl-C or SIGTERM loses at most a batch per seed.
    """
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)

    def report(r: dict[str, Any]) -> None:
        print(
            f"seed {r['seed']}: dev F1 {100 * r['dev']['entity']['f1']:.2f}"
            + (f", test F1 {100 * r['test']['entity']['f1']:.2f}" if "test" in r else "")
            + f" ({r['wall_seconds']:.0f} s)",
            flush=True,
        )

    runs = train_runs(
        config_path, [(overrides, s, out / f"seed{s}") for s in seeds], workers, report
    )
    runs.sort(key=lambda r: r["seed"])
    summary = summarise(runs)
    summary["config"] = str(config_path)
    summary["overrides"] = overrides
    files.write_json(out / "summary.json", summary)
    files.write_text(out / "summary.md", markdown(summary, f"{config_path} {' '.join(overrides)}"))
    return summary
