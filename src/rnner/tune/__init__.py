"""Hyperparameter sweeps on Optuna: `rnner tune SWEEP.toml`.

One trial is one configuration trained once per seed (so every trial carries its own mean and
spread); its objective is the mean best dev F1. The package in reading order:

- `spec`: the sweep file (search space, conditions, validation); no Optuna import.
- `backend`: Optuna's samplers, pruners and storages, and the recovery of abandoned trials.
- `objective`: one trial, trained once per seed and recorded as trial user attributes.
- `runner`: workers taking trials until the study's target, in this process or a pool.
- `command`: the `rnner tune` command line.

Heavy imports (optuna, torch) happen inside functions so that `rnner --help` stays fast.
"""

from .backend import (
    HEARTBEAT_SECONDS,
    STALE_AFTER_SECONDS,
    build_pruner,
    build_sampler,
    default_storage,
    find_stale,
    host_id,
    open_storage,
    recover_stale,
)
from .command import add_tune_parser, cmd_tune, main_tune
from .objective import WorkerSpec
from .runner import prepare, run_worker, tune
from .spec import (
    Condition,
    Param,
    Sweep,
    SweepError,
    config_defaults,
    config_id,
    get_value,
    load_sweep,
    parse_condition,
    parse_param,
    sample,
    set_value,
)

__all__ = [
    "HEARTBEAT_SECONDS",
    "STALE_AFTER_SECONDS",
    "Condition",
    "Param",
    "Sweep",
    "SweepError",
    "WorkerSpec",
    "add_tune_parser",
    "build_pruner",
    "build_sampler",
    "cmd_tune",
    "config_defaults",
    "config_id",
    "default_storage",
    "find_stale",
    "get_value",
    "host_id",
    "load_sweep",
    "main_tune",
    "open_storage",
    "parse_condition",
    "parse_param",
    "prepare",
    "recover_stale",
    "run_worker",
    "sample",
    "set_value",
    "tune",
]
