"""One trial: a sampled configuration trained once per seed, recorded as trial user attrs.

The objective is the mean best dev F1 over the seeds; test F1 at the dev-selected epoch is
recorded next to it and never used for selection. A retried trial takes over the seed runs
(finished ones, checkpoints) of the trial it retries.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import statistics
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Config
from .backend import HEARTBEAT_SECONDS, STALE_AFTER_SECONDS, _Heartbeat, host_id
from .spec import Sweep, config_id, sample, set_value

if TYPE_CHECKING:
    import optuna

    from ..pipeline import Corpus


class _Surplus(Exception):
    """Other workers already started enough trials to reach the target."""


@dataclass
class WorkerSpec:
    """Everything a worker process needs (pickled to spawned workers)."""

    sweep: Sweep
    storage: str
    study: str
    output: str
    target: int
    keep_models: bool = False
    stale_after: float = STALE_AFTER_SECONDS
    heartbeat: float = HEARTBEAT_SECONDS
    threads: int = 0  # torch threads (0: leave as is)
    label: str = ""
    quiet: bool = False


def _mean_std(xs: Sequence[float]) -> tuple[float, float | None]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def _read_log(run: Path) -> list[dict[str, Any]]:
    try:
        text = (run / "log.jsonl").read_text(encoding="utf-8")
    except OSError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _same_config(run: Path, cfg: Config) -> bool:
    try:
        return json.loads((run / "config.json").read_text(encoding="utf-8")) == cfg.to_dict()
    except (OSError, ValueError):
        return False


def _peak_rss_mb() -> float:
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(rss / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


class _Objective:
    """Trains one configuration once per seed; records everything as trial user attrs."""

    def __init__(self, spec: WorkerSpec, study: optuna.Study):
        self.spec, self.study = spec, study
        self.out = Path(spec.output)
        self.corpora: dict[str, Corpus] = {}
        self.interrupted = False
        self.current: int | None = None  # the trial in progress, for re-enqueueing on Ctrl-C

    def __call__(self, trial: optuna.Trial) -> float:
        self.current = trial.number
        trial.set_user_attr("worker", {"host": host_id(), "pid": os.getpid()})
        trial.set_user_attr("heartbeat", time.time())
        if self._surplus(trial):
            raise _Surplus(f"target of {self.spec.target} trials already reached")
        from ..training import Interrupted

        with _Heartbeat(trial, self.spec.heartbeat):
            try:
                return self._run(trial)
            except (Interrupted, KeyboardInterrupt):
                self.interrupted = True
                trial.set_user_attr(
                    "error", "interrupted; retried (from its checkpoints) by the next run"
                )
                raise
            except Exception as e:
                import optuna

                if not isinstance(e, optuna.TrialPruned):
                    trial.set_user_attr("error", f"{type(e).__name__}: {e}")
                    if not self.spec.quiet:
                        traceback.print_exc()
                raise

    def _surplus(self, trial: optuna.Trial) -> bool:
        """Exact target across racing workers: trials numbered below ours win."""
        from optuna.trial import TrialState

        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        ahead = [
            t
            for t in self.study.get_trials(deepcopy=False, states=states)
            if t.number < trial.number
        ]
        return len(ahead) >= self.spec.target

    def _corpus(self, cfg: Config) -> Corpus:
        from ..pipeline import load_corpus

        # Keyed on the whole data section, not a hand-picked list of the fields load_corpus
        # reads: a list left out train_on_dev and train_trust, so a sweep over either trained
        # every trial on the first trial's data. A field that does not change the corpus
        # (scheme, lowercase) only costs a reload.
        key = json.dumps(dataclasses.asdict(cfg.data), sort_keys=True)
        if key not in self.corpora:
            self.corpora[key] = load_corpus(cfg)
        return self.corpora[key]

    def _run(self, trial: optuna.Trial) -> float:
        raw = sample(trial, self.spec.sweep)
        seeds = self.spec.sweep.seeds
        cfgs = []
        for seed in seeds:
            r = copy.deepcopy(raw)
            set_value(r, "train.seed", seed)
            cfgs.append(Config.from_dict(r))
        tdir = self.out / "trials" / f"{trial.number:04d}"
        trial.set_user_attr("config", cfgs[0].to_dict())
        trial.set_user_attr("config_id", config_id(cfgs[0]))
        trial.set_user_attr("seeds", seeds)
        trial.set_user_attr("run_dir", str(tdir))
        retry_of = trial.user_attrs.get("retry_of")
        runs: list[dict[str, Any]] = []
        for i, (seed, cfg) in enumerate(zip(seeds, cfgs, strict=True)):
            old = None
            if retry_of is not None:
                old = self.out / "trials" / f"{int(retry_of):04d}" / f"seed-{seed}"
            run = self._seed(trial, cfg, tdir / f"seed-{seed}", old, report=i == 0, runs=runs)
            runs.append(run)
            self._record(trial, runs)
        return statistics.fmean(r["dev_f1"] for r in runs)

    def _seed(
        self,
        trial: optuna.Trial,
        cfg: Config,
        run: Path,
        old: Path | None,
        report: bool,
        runs: list[dict[str, Any]],
    ) -> dict[str, Any]:
        import optuna

        from .. import checkpoint
        from ..training import Interrupted, fit

        if old is not None and old.is_dir() and not run.exists() and _same_config(old, cfg):
            run.parent.mkdir(parents=True, exist_ok=True)
            old.rename(run)  # a retry takes over what its abandoned trial had done
        done = resume = False
        if run.exists():
            if (run / "metrics.json").is_file() and _same_config(run, cfg):
                done = True
            elif (run / checkpoint.NAME).is_file() and _same_config(run, cfg):
                resume = True
            else:
                shutil.rmtree(run)
        if report:
            for rec in _read_log(run):
                trial.report(rec["dev_f1"], rec["epoch"])

        def prune(record: dict[str, Any]) -> None:
            trial.report(record["dev_f1"], record["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {record['epoch']}")

        import torch

        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        corpus = None if done else self._corpus(cfg)  # loaded once per worker, not timed
        t0 = time.perf_counter()
        try:
            if done:
                metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
            else:
                metrics = fit(
                    cfg,
                    run,
                    corpus=corpus,
                    hooks=[prune] if report else (),
                    progress=False,
                    resume=resume,
                )
        except optuna.TrialPruned:
            partial = {
                "seed": cfg.train.seed,
                "dev_curve": [r["dev_f1"] for r in _read_log(run)],
                "pruned": True,
            }
            self._record(trial, runs + [partial])
            self._clean(run)
            raise
        except Interrupted:
            raise  # its checkpoint is what the retry resumes from
        except Exception:
            self._clean(run)
            raise
        seconds = metrics["train_seconds"] if done else time.perf_counter() - t0
        self._clean(run)
        result: dict[str, Any] = {
            "seed": cfg.train.seed,
            "dev_f1": metrics["dev"]["entity"]["f1"],
            "test_f1": metrics["test"]["entity"]["f1"] if "test" in metrics else None,
            "best_epoch": metrics["best_epoch"],
            "epochs_run": metrics["epochs_run"],
            "seconds": round(seconds, 2),
            "train_seconds": metrics["train_seconds"],
            "dev_curve": [r["dev_f1"] for r in _read_log(run)],
            "peak_rss_mb": _peak_rss_mb(),
            "threads": torch.get_num_threads(),
            "device": metrics.get("device", ""),
        }
        if cuda:
            result["gpu_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if resume or done:
            result["resumed"] = True
        return result

    def _clean(self, run: Path) -> None:
        """Checkpoints are for resuming only; weights stay only with --keep-models."""
        from .. import checkpoint

        names = [checkpoint.NAME] + ([] if self.spec.keep_models else ["model.safetensors"])
        for name in names:
            (run / name).unlink(missing_ok=True)

    @staticmethod
    def _record(trial: optuna.Trial, runs: list[dict[str, Any]]) -> None:
        done = [r for r in runs if "dev_f1" in r]
        attrs: dict[str, Any] = {
            "runs": runs,
            "dev_f1_per_epoch": [r["dev_curve"] for r in runs],
            "epochs_run": [len(r["dev_curve"]) for r in runs],
            "wall_seconds": round(sum(r.get("seconds", 0.0) for r in runs), 2),
            "peak_rss_mb": max((r.get("peak_rss_mb", 0.0) for r in runs), default=_peak_rss_mb()),
        }
        if done:
            dev_mean, dev_std = _mean_std([r["dev_f1"] for r in done])
            attrs.update(best_dev_f1=dev_mean, dev_f1_std=dev_std)
            tests = [r["test_f1"] for r in done if r["test_f1"] is not None]
            if tests:
                test_mean, test_std = _mean_std(tests)
                attrs.update(test_f1=test_mean, test_f1_std=test_std)
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
