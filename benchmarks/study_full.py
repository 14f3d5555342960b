"""The full-data hyperparameter study (issue 22): a resumable queue of `rnner train` runs.

Every sweep in configs/study-full/NN_*.toml is a base config, fixed overrides ([set]) and a
grid of levels ([grid], a cartesian product), each trained once per seed on the full
CoNLL-2003 data under the budget of configs/study-full/study.toml. Each finished run becomes
one row of docs/study-full/SWEEP.csv (written atomically, committed as it comes), and its
per-epoch log is copied to docs/study-full/curves/. Rerunning skips every run those files hold;
a run that was interrupted resumes from its checkpoint (`rnner train --resume`). The runs call
the `rnner` CLI, one process each, so the study does not depend on the package's internals.

    python benchmarks/study_full.py --lanes 1            # run or resume the study
    python benchmarks/study_full.py --plan               # the queue and the CPU-hour estimate
    python benchmarks/study_full.py --lanes 1 --max-runs 3

Runs with the same resolved configuration and seed are trained once: a sweep whose grid
contains the default's values copies the default's rows (column `trained_for` names the sweep
that trained it). The queue takes seed 1 of every level first (sweeps by `priority`), then
seed 2, then seed 3, then the 5-seed comparisons; `[extend]` adds a learning rate beyond a
grid's edge where the best rate of a row sits there; `combine` builds the best levels'
configuration once its sweeps are complete and freezes that choice in combined.json.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ctypes
import dataclasses
import datetime as dt
import fcntl
import fnmatch
import functools
import hashlib
import io
import itertools
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]  # the checkout this script is in; results go there
sys.path.insert(0, str(ROOT / "src"))
from rnner.files import write_json, write_text  # noqa: E402  (atomic writes)

COLUMNS_HEAD = ["sweep", "run_id", "seed"]
COLUMNS_TAIL = [
    "level",
    "overrides",
    "best_epoch",
    "epochs_run",
    "dev_f1",
    "test_f1",
    "dev_f1_by_epoch",
    "curve",
    "train_seconds",
    "cpu_seconds",
    "wall_seconds",
    "cpu_seconds_per_epoch",
    "machine",
    "lanes",
    "commit",
    "finished",
    "trained_for",
]
# Seconds per epoch on one core before anything is measured: the default at batch 32 took
# 716 s for 27 epochs (docs/results.md); smaller batches cost more steps (the reduced study:
# batch 4 ~2.7x batch 32). s(b) = A + B / b fits both.
PRIOR_A, PRIOR_B = 20.5, 192.0
WEIGHTS = ("checkpoint.safetensors", "model.safetensors")


class StudyError(ValueError):
    """A bad sweep file: `path: what is wrong`."""


# --- sweep definitions ----------------------------------------------------------------------


@dataclasses.dataclass
class Sweep:
    name: str
    path: Path
    title: str
    base: Path
    seeds: list[int]
    priority: int
    group: str
    factor: str
    set: dict[str, Any]
    grid: dict[str, list[Any]]
    extend: dict[str, Any] | None
    combine: list[str] | None

    @property
    def keys(self) -> list[str]:
        return list(self.grid)

    def grid_levels(self) -> list[dict[str, Any]]:
        if not self.grid:
            return [{}]
        return [
            dict(zip(self.grid, vals, strict=True))
            for vals in itertools.product(*self.grid.values())
        ]


def _check_key(path: Path, key: str) -> None:
    parts = key.split(".")
    if len(parts) != 2 or parts[0] not in ("data", "model", "train"):
        raise StudyError(f"{path}: {key!r} is not a data./model./train. key")


def read_sweep(path: Path) -> Sweep:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise StudyError(f"{path}: not valid TOML: {e}") from None
    known = {
        "title",
        "base",
        "seeds",
        "priority",
        "group",
        "factor",
        "set",
        "grid",
        "extend",
        "combine",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise StudyError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    if "base" not in raw:
        raise StudyError(f'{path}: no base config (base = "../conll03.toml")')
    base = (path.parent / raw["base"]).resolve()
    if not base.is_file():
        raise StudyError(f"{path}: base {raw['base']!r} does not exist")
    grid = dict(raw.get("grid", {}))
    for key in [*raw.get("set", {}), *grid]:
        _check_key(path, key)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise StudyError(f"{path}: grid {key!r} must be a non-empty list")
    extend = raw.get("extend")
    if extend is not None:
        if extend.get("key") not in grid:
            raise StudyError(f"{path}: extend.key must be one of the grid's keys")
        if float(extend.get("factor", 0)) <= 1:
            raise StudyError(f"{path}: extend.factor must be > 1")
    seeds = raw.get("seeds", [1, 2, 3])
    if not seeds or not all(isinstance(s, int) for s in seeds):
        raise StudyError(f"{path}: seeds must be a non-empty list of integers")
    return Sweep(
        name=path.stem,
        path=path,
        title=raw.get("title", path.stem),
        base=base,
        seeds=list(seeds),
        priority=int(raw.get("priority", 10)),
        group=raw.get("group", ""),
        factor=raw.get("factor", path.stem),
        set=dict(raw.get("set", {})),
        grid=grid,
        extend=extend,
        combine=raw.get("combine"),
    )


def read_sweeps(directory: Path) -> tuple[dict[str, Any], list[Sweep]]:
    """study.toml's shared [set] and the sweeps, by priority then name."""
    study = directory / "study.toml"
    shared = {}
    if study.is_file():
        shared = tomllib.loads(study.read_text(encoding="utf-8")).get("set", {})
    sweeps = [read_sweep(p) for p in sorted(directory.glob("[0-9]*.toml"))]
    if not sweeps:
        raise StudyError(f"{directory}: no sweep files (NN_name.toml)")
    return shared, sorted(sweeps, key=lambda s: (s.priority, s.name))


# --- run identity ---------------------------------------------------------------------------


def _norm(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return v
    return float(v)


@functools.cache
def _base_text(base: Path) -> str:
    return base.read_text(encoding="utf-8")


def run_key(base: Path, overrides: dict[str, Any]) -> str:
    """The resolved configuration (rnner's defaults, the base file, the overrides), seed and
    threads left out: equal keys are the same run however a sweep spells it (the default's lr
    0.002 in a grid, or model.locked_dropout = false where the base leaves it unset)."""
    return _resolved(base, json.dumps(overrides, sort_keys=True))


@functools.cache
def _resolved(base: Path, overrides: str) -> str:
    from rnner.config import Config  # the package's public config loader

    items = [f"{k}={json.dumps(v)}" for k, v in json.loads(overrides).items()]
    try:
        raw = Config.load(base, items).to_dict()
    except ValueError as e:  # ConfigError: a key or value rnner refuses
        raise StudyError(f"{base} with {overrides}: {e}") from None
    raw["train"].pop("seed", None)
    raw["train"].pop("threads", None)
    flat = {f"{s}.{k}": _norm(v) for s, sec in raw.items() for k, v in sec.items()}
    return json.dumps(flat, sort_keys=True)


def run_id(key: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()[:10]


def fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


# --- result files ---------------------------------------------------------------------------


def columns(sweep: Sweep) -> list[str]:
    return COLUMNS_HEAD + sweep.keys + COLUMNS_TAIL


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def append_row(path: Path, cols: list[str], row: dict[str, Any]) -> None:
    """Rewrite the CSV with one more row, atomically: a kill leaves the old file or the new.
    A file written with other columns (an older version of this script) is rewritten with
    the union of both, so no value lands under another column's name."""
    old = read_rows(path)
    header = list(cols)
    if old:
        with path.open(newline="", encoding="utf-8") as f:
            first = next(csv.reader(f))
        header = first + [c for c in cols if c not in first]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in [*old, {c: row.get(c, "") for c in cols}]:
        w.writerow(r)
    write_text(path, buf.getvalue())


# --- the queue ------------------------------------------------------------------------------


@dataclasses.dataclass
class Job:
    sweep: Sweep
    level: dict[str, Any]
    overrides: dict[str, Any]
    seed: int
    rid: str
    order: tuple

    @property
    def label(self) -> str:
        lv = ", ".join(f"{k.split('.')[1]}={fmt_value(v)}" for k, v in self.level.items())
        return f"{self.sweep.name} [{lv or 'base'}] seed {self.seed}"

    @property
    def batch_size(self) -> int:
        return batch_size(self.sweep.base, self.overrides)


def batch_size(base: Path, overrides: dict[str, Any]) -> int:
    if "train.batch_size" in overrides:
        return int(overrides["train.batch_size"])
    raw = tomllib.loads(_base_text(base))
    return int(raw.get("train", {}).get("batch_size", 10))  # 10: TrainConfig's default


def _mean_dev(rows: Iterable[dict[str, str]]) -> float | None:
    vals = [float(r["dev_f1"]) for r in rows]
    return statistics.fmean(vals) if vals else None


def _level_of(row: dict[str, str]) -> dict[str, Any]:
    return json.loads(row["level"]) if row.get("level") else {}


def _lkey(level: dict[str, Any]) -> str:
    return json.dumps({k: _norm(v) for k, v in level.items()}, sort_keys=True)


def levels(sweep: Sweep, rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The grid, the levels the CSV already holds (earlier extensions), and new extensions."""
    out = sweep.grid_levels()
    seen = {_lkey(lv) for lv in out}
    for r in rows:
        lv = _level_of(r)
        if _lkey(lv) not in seen:
            seen.add(_lkey(lv))
            out.append(lv)
    if sweep.extend:
        for lv in extensions(sweep, out, rows):
            if _lkey(lv) not in seen:
                seen.add(_lkey(lv))
                out.append(lv)
    return out


def extensions(
    sweep: Sweep, current: list[dict[str, Any]], rows: list[dict[str, str]]
) -> list[dict[str, Any]]:
    """Where the best value of extend.key (mean dev F1 over the seeds done) sits at the edge of
    its row and every level of that row has a result, the next value beyond that edge."""
    assert sweep.extend is not None
    key = sweep.extend["key"]
    factor = float(sweep.extend["factor"])
    max_steps = int(sweep.extend.get("max_steps", 2))
    lo0, hi0 = min(sweep.grid[key]), max(sweep.grid[key])
    by_level: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_level.setdefault(_lkey(_level_of(r)), []).append(r)
    rows_of_group: dict[str, list[dict[str, Any]]] = {}
    for lv in current:
        other = {k: v for k, v in lv.items() if k != key}
        rows_of_group.setdefault(_lkey(other), []).append(lv)
    new = []
    for members in rows_of_group.values():
        means = [(_mean_dev(by_level.get(_lkey(lv), [])), lv) for lv in members]
        if any(m is None for m, _ in means):
            continue  # wait until the whole row has a result
        best = max(means, key=lambda t: t[0])[1]
        values = sorted(lv[key] for lv in members)
        if best[key] == values[0] and sum(v < lo0 for v in values) < max_steps:
            new.append({**best, key: float(f"{values[0] / factor:.2g}")})
        if best[key] == values[-1] and sum(v > hi0 for v in values) < max_steps:
            new.append({**best, key: float(f"{values[-1] * factor:.2g}")})
    return new


def combined_overrides(
    sweeps: list[Sweep], combo: Sweep, results: dict[str, list], frozen: Path
) -> dict[str, Any] | None:
    """The best levels' overrides, or None until every sweep it combines is complete."""
    if frozen.is_file():
        return json.loads(frozen.read_text(encoding="utf-8"))["overrides"]
    assert combo.combine is not None
    sources = [
        s
        for s in sweeps
        if s is not combo
        and not s.name.startswith("00_")
        and any(fnmatch.fnmatch(s.name, p) for p in combo.combine)
    ]
    default = next((s for s in sweeps if s.name == "00_default"), None)
    if not sources or default is None:
        return None
    chosen: dict[str, Any] = {}
    why: dict[str, Any] = {}
    default_rows = results.get(default.name, [])
    default_id = default_rows[0]["run_id"] if default_rows else None
    default_mean = _mean_dev(default_rows)
    best_training: tuple[float, Sweep, dict[str, Any]] | None = None
    for s in sources:
        rows = results.get(s.name, [])
        means = []
        for lv in levels(s, rows):
            lrows = [r for r in rows if _lkey(_level_of(r)) == _lkey(lv)]
            if len({r["seed"] for r in lrows}) < len(s.seeds):
                return None  # not complete yet
            means.append((_mean_dev(lrows), lv, lrows[0]["run_id"] == default_id))
        mean, lv, is_default = max(means, key=lambda t: t[0])
        if s.group == "training":
            if best_training is None or mean > best_training[0]:
                best_training = (mean, s, lv)
        elif not is_default:  # the best level beats the default's level of the same sweep
            chosen.update(lv)
            why[s.name] = {"level": lv, "mean_dev_f1": round(mean, 4)}
    if best_training is not None:
        mean, s, lv = best_training
        chosen.update({**s.set, **lv})
        why["training"] = {"sweep": s.name, "level": lv, "mean_dev_f1": round(mean, 4)}
    write_json(
        frozen,
        {
            "overrides": chosen,
            "chosen_from": why,
            "default_mean_dev_f1": default_mean,
            "chosen_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    )
    return chosen


def build_queue(
    shared: dict[str, Any],
    extra: dict[str, Any],
    sweeps: list[Sweep],
    results: dict[str, list[dict[str, str]]],
    results_dir: Path,
) -> list[Job]:
    """Every (sweep, level, seed) not yet in its sweep's CSV, most informative first."""
    jobs = []
    for si, s in enumerate(sweeps):
        rows = results.get(s.name, [])
        done = {(_lkey(_level_of(r)), int(r["seed"])) for r in rows}
        if s.combine is not None:
            combo = combined_overrides(sweeps, s, results, results_dir / "combined.json")
            if combo is None:
                continue
            lvs = [dict(combo)]  # the chosen overrides are its one level
            fixed = dict(s.set)
        else:
            lvs, fixed = levels(s, rows), dict(s.set)
        for li, lv in enumerate(lvs):
            ov = {**shared, **fixed, **lv, **extra}
            rid = run_id(run_key(s.base, ov))
            for k, seed in enumerate(s.seeds):
                if (_lkey(lv), seed) in done:
                    continue
                jobs.append(Job(s, lv, ov, seed, rid, (k, s.priority, si, li)))
    return sorted(jobs, key=lambda j: j.order)


# --- estimates ------------------------------------------------------------------------------


def epoch_model(sweeps: list[Sweep], results: dict[str, list[dict[str, str]]]) -> dict[int, float]:
    """Median CPU seconds per epoch by batch size, from the runs trained by the study."""
    by_batch: dict[int, list[float]] = {}
    base = {s.name: s.base for s in sweeps}
    for rows in results.values():
        for r in rows:
            if r["trained_for"] != r["sweep"] or not r.get("cpu_seconds_per_epoch"):
                continue
            b = batch_size(base[r["sweep"]], json.loads(r["overrides"]))
            by_batch.setdefault(b, []).append(float(r["cpu_seconds_per_epoch"]))
    return {b: statistics.median(v) for b, v in by_batch.items()}


def seconds_per_epoch(batch: int, measured: dict[int, float]) -> float:
    if batch in measured:
        return measured[batch]
    prior = PRIOR_A + PRIOR_B / batch
    if not measured:
        return prior
    ratio = statistics.median(v / (PRIOR_A + PRIOR_B / b) for b, v in measured.items())
    return prior * ratio


def estimate(
    sweeps: list[Sweep], jobs: list[Job], results: dict[str, list[dict[str, str]]], epochs: int
) -> dict[str, Any]:
    measured = epoch_model(sweeps, results)
    done = sum(
        float(r["cpu_seconds"] or 0)
        for rows in results.values()
        for r in rows
        if r["trained_for"] == r["sweep"]
    )
    trained = {(r["run_id"], int(r["seed"])) for rows in results.values() for r in rows}
    unique: dict[tuple[str, int], Job] = {}
    for j in jobs:  # a run another sweep trained is only a row to copy: not a run left
        if (j.rid, j.seed) not in trained:
            unique.setdefault((j.rid, j.seed), j)
    left = sum(epochs * seconds_per_epoch(j.batch_size, measured) for j in unique.values())
    return {
        "runs_trained": sum(
            r["trained_for"] == r["sweep"] for rows in results.values() for r in rows
        ),
        "rows": sum(len(rows) for rows in results.values()),
        "runs_left": len(unique),
        "cpu_hours_done": round(done / 3600, 2),
        "cpu_hours_left_estimate": round(left / 3600, 1),
        "cpu_hours_total_estimate": round((done + left) / 3600, 1),
        "cpu_seconds_per_epoch_by_batch": {
            str(b): round(v, 1) for b, v in sorted(measured.items())
        },
        "prior_seconds_per_epoch": f"{PRIOR_A:g} + {PRIOR_B:g} / batch_size",
        "note": "not counting the combined configuration's runs until its choice is made",
    }


# --- running --------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            text=True,
            capture_output=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _die_with_parent() -> None:
    """In the child: SIGTERM when the study process dies, so the run checkpoints and stops."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclasses.dataclass
class Lane:
    job: Job
    pid: int
    started: float
    log: Any
    proc: subprocess.Popen  # held: a dropped Popen is reaped by the next one (subprocess._cleanup)


def train_command(rnner: list[str], job: Job, out: Path) -> list[str]:
    if (out / "checkpoint.safetensors").is_file():
        return [*rnner, "train", "--resume", str(out), "--quiet"]
    cmd = [
        *rnner,
        "train",
        str(job.sweep.base),
        "--seed",
        str(job.seed),
        "--output",
        str(out),
        "--quiet",
    ]
    for k, v in job.overrides.items():
        cmd += ["--set", f"{k}={json.dumps(v)}"]
    return cmd


def start(rnner: list[str], job: Job, runs: Path) -> Lane:
    out = runs / job.rid / f"seed{job.seed}"
    if (
        out.exists()
        and not (out / "checkpoint.safetensors").is_file()
        and not (out / "metrics.json").is_file()
    ):
        shutil.rmtree(out)  # died before its first checkpoint: start again
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "study.json").is_file():
        write_json(
            out / "study.json",
            {
                "sweep": job.sweep.name,
                "level": job.level,
                "overrides": job.overrides,
                "seed": job.seed,
                "cpu_seconds": 0.0,
                "wall_seconds": 0.0,
                "segments": 0,
            },
        )
    if (out / "metrics.json").is_file():  # trained, not yet recorded (the study was killed)
        cmd = [sys.executable, "-c", "pass"]
    else:
        cmd = train_command(rnner, job, out)
    log = (out / "train.log").open("a", encoding="utf-8")
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, preexec_fn=_die_with_parent
    )
    return Lane(job, proc.pid, time.time(), log, proc)


def finish(lane: Lane, status: int, usage: Any, runs: Path) -> Path | None:
    """Account the segment's CPU time; the run directory when it ended with metrics."""
    lane.log.close()
    out = runs / lane.job.rid / f"seed{lane.job.seed}"
    info = json.loads((out / "study.json").read_text(encoding="utf-8"))
    info["cpu_seconds"] += usage.ru_utime + usage.ru_stime
    info["wall_seconds"] += time.time() - lane.started
    info["segments"] += 1
    write_json(out / "study.json", info)
    code = os.waitstatus_to_exitcode(status)
    return out if code == 0 and (out / "metrics.json").is_file() else None


def record(
    job: Job, out: Path, results_dir: Path, lanes: int, sha: str, host: str, keep_weights: bool
) -> dict[str, Any]:
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    log = [
        json.loads(x)
        for x in (out / "log.jsonl").read_text(encoding="utf-8").splitlines()
        if x.strip()
    ]
    info = json.loads((out / "study.json").read_text(encoding="utf-8"))
    curve = Path("curves") / job.rid / f"seed{job.seed}.jsonl"
    write_text(results_dir / curve, "".join(json.dumps(r) + "\n" for r in log))
    epochs = max(int(metrics["epochs_run"]), 1)
    row = {
        "sweep": job.sweep.name,
        "run_id": job.rid,
        "seed": job.seed,
        **{k: fmt_value(v) for k, v in job.level.items()},
        "level": json.dumps(job.level),
        "overrides": json.dumps(job.overrides, sort_keys=True),
        "best_epoch": metrics["best_epoch"],
        "epochs_run": metrics["epochs_run"],
        "dev_f1": f"{100 * metrics['dev']['entity']['f1']:.4f}",
        "test_f1": f"{100 * metrics['test']['entity']['f1']:.4f}",
        "dev_f1_by_epoch": " ".join(f"{100 * r['dev_f1']:.2f}" for r in log),
        "curve": str(curve),
        "train_seconds": metrics["train_seconds"],
        "cpu_seconds": round(info["cpu_seconds"], 1),
        "wall_seconds": round(info["wall_seconds"], 1),
        "cpu_seconds_per_epoch": round(info["cpu_seconds"] / epochs, 2),
        "machine": host,
        "lanes": lanes,
        "commit": sha,
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "trained_for": job.sweep.name,
    }
    append_row(results_dir / f"{job.sweep.name}.csv", columns(job.sweep), row)
    if not keep_weights:  # ~80 MB of GloVe rows per run; the study keeps the numbers
        for name in WEIGHTS:
            (out / name).unlink(missing_ok=True)
    return row


def study_key(job: Job) -> str:
    return f"{_lkey(job.level)}#{job.seed}"


def copy_shared(job: Job, src: dict[str, str], results_dir: Path) -> None:
    row = {
        **src,
        "sweep": job.sweep.name,
        "level": json.dumps(job.level),
        **{k: fmt_value(v) for k, v in job.level.items()},
    }
    append_row(results_dir / f"{job.sweep.name}.csv", columns(job.sweep), row)


def load_results(sweeps: list[Sweep], results_dir: Path) -> dict[str, list[dict[str, str]]]:
    return {s.name: read_rows(results_dir / f"{s.name}.csv") for s in sweeps}


def write_progress(
    results_dir: Path,
    sweeps_run: list[Sweep],
    shared: dict[str, Any],
    extra: dict[str, Any],
    sweeps: list[Sweep],
    epochs: int,
    host: str,
) -> dict[str, Any]:
    """docs/study-full/progress.json: counts and the CPU-hour estimate, for the page."""
    results = load_results(sweeps, results_dir)
    jobs = [
        j for j in build_queue(shared, extra, sweeps, results, results_dir) if j.sweep in sweeps_run
    ]
    est = estimate(sweeps, jobs, results, epochs)
    write_json(
        results_dir / "progress.json",
        {
            **est,
            "machine": host,
            "epochs_per_run": epochs,
            "updated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    )
    return est


def commit_results(results_dir: Path, sweeps_dir: Path, message: str) -> None:
    """Regenerate the page beside the results directory (docs/hyperparameters-full.md) and
    commit only those files in the repository that holds them (other staged work stays
    staged); a failure (a busy index, say) is printed and retried after the next run."""
    page = results_dir.parent / "hyperparameters-full.md"
    gen = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "study_full_page.py"),
            "--results",
            str(results_dir),
            "--sweeps",
            str(sweeps_dir),
            "--output",
            str(page),
        ],
        capture_output=True,
        text=True,
    )
    if gen.returncode != 0:
        print(f"  page not regenerated: {gen.stderr.strip().splitlines()[-1:]}", flush=True)
    paths = [str(results_dir), str(page)]
    for cmd in (["git", "add", "--", *paths], ["git", "commit", "-q", "-m", message, "--", *paths]):
        res = subprocess.run(cmd, cwd=results_dir, capture_output=True, text=True)
        if res.returncode != 0:
            print(f"  {' '.join(cmd[:2])} failed: {(res.stderr or res.stdout).strip()}", flush=True)
            return


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, _, text = item.partition("=")
        if not _ or len(key.split(".")) != 2:
            raise StudyError(f"--set {item}: give section.key=value")
        out[key.strip()] = tomllib.loads(f"v = {text.strip()}")["v"]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lanes", type=int, default=2, help="runs side by side, one core each")
    ap.add_argument("--sweeps", type=Path, default=ROOT / "configs" / "study-full")
    ap.add_argument("--results", type=Path, default=ROOT / "docs" / "study-full")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "study-full")
    ap.add_argument("--only", default="*", help="a shell pattern of sweep names")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an override for every run (tests: data.max_sentences=50)",
    )
    ap.add_argument("--max-runs", type=int, default=0, help="stop after N trained runs")
    ap.add_argument("--plan", action="store_true", help="print the queue and estimate; run nothing")
    ap.add_argument("--keep-weights", action="store_true")
    ap.add_argument(
        "--commit",
        action="store_true",
        help="after each run: regenerate the page, git-commit the result files",
    )
    ap.add_argument(
        "--rnner",
        default=shutil.which("rnner") or "rnner",
        help="the rnner command, e.g. 'python -m rnner.cli' (default: on PATH)",
    )
    args = ap.parse_args(argv)
    try:
        shared, sweeps = read_sweeps(args.sweeps)
        extra = parse_sets(args.set)
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sweeps_run = [s for s in sweeps if fnmatch.fnmatch(s.name, args.only)]
    epochs = int({**shared, **extra}.get("train.epochs", 20))
    results_dir, runs = args.results.resolve(), args.runs.resolve()
    rnner = shlex.split(args.rnner)
    host, sha = machine(), commit()

    def queue() -> tuple[dict[str, list], list[Job]]:
        results = load_results(sweeps, results_dir)
        jobs = build_queue(shared, extra, sweeps, results, results_dir)
        return results, [j for j in jobs if j.sweep in sweeps_run]

    results, jobs = queue()
    est = estimate(sweeps, jobs, results, epochs)
    if not args.plan:
        est = write_progress(results_dir, sweeps_run, shared, extra, sweeps, epochs, host)
    print(
        f"study: {len(sweeps_run)} sweeps, {est['rows']} rows recorded, {est['runs_left']} "
        f"runs left; CPU-hours: {est['cpu_hours_done']} done, ~{est['cpu_hours_left_estimate']}"
        f" left, ~{est['cpu_hours_total_estimate']} in all ({host}; results in {results_dir})",
        flush=True,
    )
    if args.plan:
        seen = set()
        for j in jobs:
            dup = (j.rid, j.seed) in seen
            seen.add((j.rid, j.seed))
            print(f"  {j.label}  {j.rid}{'  (shared)' if dup else ''}")
        return 0

    runs.mkdir(parents=True, exist_ok=True)
    lock = (runs / ".lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"error: {runs}: another study_full.py is running there", file=sys.stderr)
        return 2
    stop = [False]

    lanes: list[Lane] = []

    def on_signal(signum: int, frame: Any) -> None:
        stop[0] = True
        for ln in lanes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(ln.pid, signal.SIGTERM)  # rnner checkpoints and exits

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    trained = 0
    failed: set[tuple[str, int]] = set()
    copied: set[tuple[str, str]] = set()
    while True:
        results, jobs = queue()
        index = {(r["run_id"], int(r["seed"])): r for rows in results.values() for r in rows}
        shared_jobs = [j for j in jobs if (j.rid, j.seed) in index]
        for j in shared_jobs:  # runs another sweep already trained: copy their rows
            key = (j.sweep.name, study_key(j))
            if key in copied:
                raise RuntimeError(f"{j.label}: copied once and still queued")
            copied.add(key)
            copy_shared(j, index[j.rid, j.seed], results_dir)
        if shared_jobs:
            continue
        busy = {(ln.job.rid, ln.job.seed) for ln in lanes}
        limit = args.max_runs and trained + len(lanes) >= args.max_runs
        while not stop[0] and not limit and len(lanes) < args.lanes:
            nxt = next((j for j in jobs if (j.rid, j.seed) not in busy | failed), None)
            if nxt is None:
                break
            lanes.append(start(rnner, nxt, runs))
            busy.add((nxt.rid, nxt.seed))
            print(f"[{dt.datetime.now():%H:%M:%S}] start {nxt.label} ({nxt.rid})", flush=True)
            limit = args.max_runs and trained + len(lanes) >= args.max_runs
        if not lanes:
            break
        ended: list[tuple[Lane, int, Any]] = []
        while not ended:  # the queue is rebuilt only when a run ends
            time.sleep(2)
            for ln in lanes:
                pid, status, usage = os.wait4(ln.pid, os.WNOHANG)
                if pid != 0:
                    ln.proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here
                    ended.append((ln, status, usage))
        for ln, status, usage in ended:
            lanes.remove(ln)
            out = finish(ln, status, usage, runs)
            if out is None:
                code = os.waitstatus_to_exitcode(status)
                if not stop[0]:
                    failed.add((ln.job.rid, ln.job.seed))
                print(
                    f"[{dt.datetime.now():%H:%M:%S}] {'stopped' if stop[0] else 'FAILED'} "
                    f"{ln.job.label} (exit {code}; {runs / ln.job.rid}/seed{ln.job.seed}/"
                    "train.log)",
                    flush=True,
                )
                continue
            row = record(ln.job, out, results_dir, args.lanes, sha, host, args.keep_weights)
            trained += 1
            est = write_progress(results_dir, sweeps_run, shared, extra, sweeps, epochs, host)
            print(
                f"[{dt.datetime.now():%H:%M:%S}] done  {ln.job.label}: dev {row['dev_f1']} "
                f"test {row['test_f1']} (best epoch {row['best_epoch']}), "
                f"{row['cpu_seconds']} CPU s",
                flush=True,
            )
            if args.commit:
                commit_results(
                    results_dir,
                    args.sweeps,
                    f"study-full: {ln.job.label}: dev {row['dev_f1']} ("
                    f"{est['runs_trained']} runs trained, {est['runs_left']} left)",
                )
    est = write_progress(results_dir, sweeps_run, shared, extra, sweeps, epochs, host)
    print(
        f"study: {est['rows']} rows recorded, {est['runs_left']} runs left; CPU-hours "
        f"{est['cpu_hours_done']} done, ~{est['cpu_hours_total_estimate']} in all",
        flush=True,
    )
    if stop[0]:
        print("stopped: rerun the same command to resume", file=sys.stderr)
        return 130
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
