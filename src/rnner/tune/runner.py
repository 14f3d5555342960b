"""Running a sweep: workers that take trials until the study holds its target, and resume.

`--trials` is the study's target of finished (complete or pruned) trials, counted across every
worker, so rerunning the same command resumes a stopped sweep, and more workers (here, or on
other machines sharing the storage) can join it.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import files
from ..multirun import pool
from ..storage import surfacing_storage_errors
from .backend import (
    HEARTBEAT_SECONDS,
    STALE_AFTER_SECONDS,
    build_pruner,
    build_sampler,
    default_storage,
    open_storage,
    recover_stale,
)
from .objective import WorkerSpec, _Objective
from .spec import Sweep, SweepError, load_sweep

if TYPE_CHECKING:
    import optuna

FINISHED = ("COMPLETE", "PRUNED")
MAX_CONSECUTIVE_FAILURES = 3


def _status_line(spec: WorkerSpec, t: optuna.trial.FrozenTrial) -> str:
    a = t.user_attrs
    state = t.state.name.lower()
    head = f"{spec.label}trial {t.number:4d} {state:8s}"
    if "best_dev_f1" in a and t.state.name == "COMPLETE":
        std = a.get("dev_f1_std")
        dev = f"dev F1 {100 * a['best_dev_f1']:.2f}" + (f" ± {100 * std:.2f}" if std else "")
        test = f"  test {100 * a['test_f1']:.2f}" if a.get("test_f1") is not None else ""
        head += f"  {dev}{test}  {a.get('wall_seconds', 0):.0f} s"
    elif "error" in a:
        head += f"  {a['error']}"
    params = ", ".join(f"{k}={_short(v)}" for k, v in t.params.items())
    return f"{head}  {params}"


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _counts(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def run_worker(spec: WorkerSpec) -> int:
    """Run trials until the study holds `target` finished ones (counting every worker's).

    Returns 0 when done, 1 after repeated failures, 130 when interrupted (the interrupted
    trial is re-enqueued and resumes from its checkpoint on the next run).
    """
    import optuna

    # Failures are reported by the status lines (and tracebacks) below, not by Optuna's log.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if spec.threads:
        import torch

        torch.set_num_threads(spec.threads)
    storage = open_storage(spec.storage)
    study = optuna.load_study(
        study_name=spec.study,
        storage=storage,
        sampler=build_sampler(spec.sweep),
        pruner=build_pruner(spec.sweep),
    )
    objective = _Objective(spec, study)
    failures = 0
    while True:
        for n in recover_stale(study, spec.stale_after):
            _say(spec, f"{spec.label}trial {n:4d} was abandoned by its worker: failed, retrying")
        counts = _counts(study)
        finished = sum(counts.get(s, 0) for s in FINISHED)
        if finished + counts.get("RUNNING", 0) >= spec.target:
            return 0
        objective.current = None
        try:
            with surfacing_storage_errors():  # a lost database, not Optuna's masking error
                study.optimize(objective, n_trials=1, catch=(Exception,))
        except KeyboardInterrupt:
            objective.interrupted = True
        except optuna.exceptions.UpdateFinishedTrialError:
            # another worker judged this trial abandoned and failed it; it retries it too
            _say(spec, f"{spec.label}trial {objective.current} was taken over by another worker")
            continue
        last = None
        if objective.current is not None:
            last = next(
                t for t in study.get_trials(deepcopy=False) if t.number == objective.current
            )
            _say(spec, _status_line(spec, last))
        if objective.interrupted:
            if last is not None and last.state.name == "FAIL" and last.params:
                study.enqueue_trial(last.params, user_attrs={"retry_of": last.number})
            return 130
        if last is None or last.state.name != "FAIL":
            failures = 0
            continue
        if _is_surplus(last):
            return 0
        failures += 1
        if failures >= MAX_CONSECUTIVE_FAILURES:
            _say(
                spec,
                f"{spec.label}stopping: {failures} trials in a row failed; last error: "
                f"{last.user_attrs.get('error', 'see the log above')}",
                err=True,
            )
            return 1


def _is_surplus(t: optuna.trial.FrozenTrial) -> bool:
    return "error" not in t.user_attrs and "config" not in t.user_attrs


def _say(spec: WorkerSpec, text: str, err: bool = False) -> None:
    if not spec.quiet or err:
        print(text, file=sys.stderr if err else sys.stdout, flush=True)


def _pool_worker(spec: WorkerSpec) -> int:
    """One worker of `rnner tune --workers N`, in a process of the shared pool."""
    return run_worker(spec)


def prepare(sweep: Sweep, storage: str, study_name: str, output: Path) -> None:
    """Create (or join) the study, refusing one made from a different sweep."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    output.mkdir(parents=True, exist_ok=True)
    owner = output / "trials" / ".study"
    owner.parent.mkdir(parents=True, exist_ok=True)
    if owner.is_file() and owner.read_text().strip() != study_name:
        raise SweepError(
            "output",
            f"{output} holds the trials of study "
            f"{owner.read_text().strip()!r}; use another --output for "
            f"study {study_name!r}",
            sweep.path,
        )
    files.write_text(owner, study_name + "\n")
    study = optuna.create_study(
        storage=open_storage(storage),
        study_name=study_name,
        direction="maximize",
        load_if_exists=True,
    )
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise SweepError("study", f"study {study_name!r} exists and minimises", sweep.path)
    known = study.user_attrs.get("sweep_fingerprint")
    if known is None:
        study.set_user_attr("sweep_fingerprint", sweep.fingerprint())
        study.set_user_attr("sweep", sweep.describe())
    elif known != sweep.fingerprint():
        raise SweepError(
            "study",
            f"study {study_name!r} in {storage} was made from a different "
            "sweep (base, search, seeds, sampler or pruner changed); "
            "use a new --study name or --output",
            sweep.path,
        )


def tune(
    sweep: Sweep | str | Path,
    trials: int | None = None,
    workers: int = 1,
    storage: str | None = None,
    study_name: str | None = None,
    output: str | Path | None = None,
    keep_models: bool = False,
    stale_after: float = STALE_AFTER_SECONDS,
    heartbeat: float = HEARTBEAT_SECONDS,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run (or resume, or join) a sweep; returns the study's trial counts and best trial.

    `workers=1` runs in this process; more spawn processes sharing the storage, each with
    `cores // workers` torch threads.
    """
    import optuna

    sweep = sweep if isinstance(sweep, Sweep) else load_sweep(sweep)
    out = Path(output or Path("runs") / "sweeps" / sweep.name)
    name = study_name or sweep.name
    url = storage or default_storage(out)
    target = sweep.target(trials)
    if workers < 1:
        raise SweepError("workers", f"must be at least 1, found {workers}", sweep.path)
    prepare(sweep, url, name, out)
    spec = WorkerSpec(
        sweep, url, name, str(out), target, keep_models, stale_after, heartbeat, quiet=quiet
    )
    started = time.perf_counter()
    codes = [_run_here(spec)] if workers == 1 else _run_pool(spec, workers)
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    counts = _counts(study)
    summary: dict[str, Any] = {
        "study": name,
        "storage": url,
        "output": str(out),
        "target": target,
        "finished": sum(counts.get(s, 0) for s in FINISHED),
        "counts": counts,
        "exit_codes": codes,
        "seconds": round(time.perf_counter() - started, 1),
    }
    # a COMPLETE trial of a single-objective study always has its value
    complete = [
        (t.value, t)
        for t in study.get_trials(deepcopy=False)
        if t.state.name == "COMPLETE" and t.value is not None
    ]
    if complete:
        best = max(complete, key=lambda vt: vt[0])[1]
        summary["best"] = {
            "number": best.number,
            "dev_f1": best.value,
            "params": best.params,
            "test_f1": best.user_attrs.get("test_f1"),
        }
    if 130 in codes:
        raise KeyboardInterrupt
    return summary


def _run_here(spec: WorkerSpec) -> int:
    """One worker in this process; SIGTERM stops it like Ctrl-C (checkpoint, re-enqueue)."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return run_worker(spec)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return run_worker(spec)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_pool(spec: WorkerSpec, workers: int) -> list[int]:
    """`workers` processes of the shared pool, each with its share of the cores; a worker
    stopped by the pool (SIGINT or SIGTERM to this process, or this process killed) checkpoints
    its trial, re-enqueues it and exits with 130."""
    threads = pool.share_cores(workers)
    specs = [
        (dataclasses.replace(spec, threads=threads, label=f"[w{i + 1}] "),) for i in range(workers)
    ]
    # the stagger spreads the first storage writes a little
    outcome = pool.run(_pool_worker, specs, workers, threads, stagger=0.2)
    for i, e in outcome.errors:
        print(f"[w{i + 1}] failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    codes = dict(outcome.results) | {i: 1 for i, _ in outcome.errors}
    return [codes.get(i, 130) for i in range(workers)]
