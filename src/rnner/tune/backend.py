"""Optuna's side of a sweep: samplers, pruners, storages, and abandoned trials.

The study lives in a storage (SQLite in the output directory by default; PostgreSQL/MySQL URLs
or a `journal:PATH` file for many machines), so a sweep can be stopped, resumed and shared. A
RUNNING trial whose worker is gone (its process on this machine, or its heartbeat elsewhere) is
failed and its parameters re-enqueued. Optuna is imported inside functions.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Config
from .spec import Sweep

if TYPE_CHECKING:
    import optuna

HEARTBEAT_SECONDS = 30.0
STALE_AFTER_SECONDS = 300.0


def _trial_seed(seed: int, number: int) -> int:
    import numpy as np

    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def _trial_seeded_class() -> type:
    import optuna

    class TrialSeededSampler(optuna.samplers.BaseSampler):
        """A fresh inner sampler per trial, seeded by (seed, trial number).

        Same-seeded samplers in several workers would propose identical parameters; seeding by
        the study-wide trial number keeps proposals distinct across any number of workers and
        machines, and reproducible for one. Random and TPE keep no state besides their RNG (TPE
        reads the history from the study), so nothing is lost by starting fresh.
        """

        def __init__(self, factory: Callable[[int], optuna.samplers.BaseSampler], seed: int):
            self._factory, self._seed = factory, seed
            self._live: dict[int, optuna.samplers.BaseSampler] = {}

        def _for(self, trial: Any) -> optuna.samplers.BaseSampler:
            if trial.number not in self._live:
                self._live[trial.number] = self._factory(_trial_seed(self._seed, trial.number))
            return self._live[trial.number]

        def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
            return self._for(trial).infer_relative_search_space(study, trial)

        def sample_relative(self, study: Any, trial: Any, search_space: Any) -> Any:
            return self._for(trial).sample_relative(study, trial, search_space)

        def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
            return self._for(trial).sample_independent(study, trial, name, dist)

        def before_trial(self, study: Any, trial: Any) -> None:
            self._for(trial).before_trial(study, trial)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            inner = self._for(trial)
            self._live.pop(trial.number, None)
            inner.after_trial(study, trial, state, values)

        def reseed_rng(self) -> None:
            self._seed = _trial_seed(self._seed, -1)

    return TrialSeededSampler


def build_sampler(sweep: Sweep) -> optuna.samplers.BaseSampler:
    import optuna

    opts = dict(sweep.sampler)
    kind, seed = opts.pop("type"), int(opts.pop("seed", 0))
    if kind == "grid":
        return optuna.samplers.GridSampler(sweep.grid(), seed=seed)
    if kind == "random":
        return _trial_seeded_class()(lambda s: optuna.samplers.RandomSampler(seed=s), seed)
    import warnings

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return _trial_seeded_class()(lambda s: optuna.samplers.TPESampler(seed=s, **opts), seed)


def build_pruner(sweep: Sweep) -> optuna.pruners.BasePruner:
    import optuna

    opts = dict(sweep.pruner)
    kind = opts.pop("type")
    opts.pop("seed", None)
    if kind == "median":
        return optuna.pruners.MedianPruner(**opts)
    if kind == "hyperband":
        epochs = Config.from_dict(sweep.base).train.epochs
        opts.setdefault("max_resource", epochs)
        return optuna.pruners.HyperbandPruner(**opts)
    return optuna.pruners.NopPruner()


def default_storage(output: str | Path) -> str:
    return f"sqlite:///{Path(output).resolve() / 'study.db'}"


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """See `rnner.storage.open_storage` (drivers, races and dropped connections)."""
    from ..storage import open_storage

    return open_storage(url)


# --- abandoned trials -------------------------------------------------------------------------


def host_id() -> str:
    """This machine, distinct across machines that share a hostname (boot id)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_stale(
    study: optuna.Study, stale_after: float = STALE_AFTER_SECONDS, now: float | None = None
) -> list[optuna.trial.FrozenTrial]:
    """RUNNING trials nobody is working on.

    Claimed by a worker on this machine: stale when that process is gone (immediate). Claimed
    elsewhere: stale when its heartbeat is older than `stale_after`. Never claimed (e.g. made by
    `study.ask()` by hand): stale when started more than `stale_after` ago.
    """
    from optuna.trial import TrialState

    now = time.time() if now is None else now
    me = host_id()
    stale = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker")
        if isinstance(worker, dict) and worker.get("host") == me:
            if not _pid_alive(int(worker.get("pid", -1))):
                stale.append(t)
            continue
        beat = t.user_attrs.get("heartbeat")
        if not isinstance(beat, int | float):
            beat = t.datetime_start.timestamp() if t.datetime_start else 0.0
        if now - beat > stale_after:
            stale.append(t)
    return stale


def recover_stale(study: optuna.Study, stale_after: float = STALE_AFTER_SECONDS) -> list[int]:
    """Fail abandoned trials and re-enqueue their parameters; returns the failed numbers.

    Only the worker whose FAIL lands re-enqueues, so a trial is retried once however many
    workers notice it. The retry resumes finished seeds and checkpoints from the old directory.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    storage = study._storage  # noqa: SLF001 - the public API cannot fail another worker's trial
    failed = []
    for t in find_stale(study, stale_after):
        try:
            storage.set_trial_user_attr(t._trial_id, "error", "abandoned: its worker stopped")
            if not storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue
        failed.append(t.number)
        if t.params:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
    return failed


class _Heartbeat:
    """Stamps the trial every `interval` seconds so other machines can tell it is alive."""

    def __init__(self, trial: optuna.Trial, interval: float):
        self.trial, self.interval = trial, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            # a storage hiccup must not kill training; the next beat tries again
            with contextlib.suppress(Exception):
                self.trial.set_user_attr("heartbeat", time.time())

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
