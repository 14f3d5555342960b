"""Hyperparameter sweeps on Optuna: `rnner tune SWEEP.toml`.

A sweep file names a base config, a search space keyed by dotted config keys, a sampler, a
pruner and a list of seeds. One trial is one configuration trained once per seed (so every
trial carries its own mean and spread); its objective is the mean best dev F1. Test F1 at the
dev-selected epoch is recorded next to it and never used for selection.

The study lives in a storage (SQLite in the output directory by default; PostgreSQL/MySQL URLs
or a `journal:PATH` file for many machines), so a sweep can be stopped, resumed and shared:
`--trials` is the study's target of finished (complete or pruned) trials, counted across every
worker, and a trial whose worker died is failed and its parameters re-enqueued.

Heavy imports (optuna, torch) happen inside functions so that `rnner --help` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import socket
import statistics
import sys
import threading
import time
import tomllib
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Config, ConfigError

if TYPE_CHECKING:
    import optuna

    from .train import Corpus

FINISHED = ("COMPLETE", "PRUNED")
HEARTBEAT_SECONDS = 30.0
STALE_AFTER_SECONDS = 300.0
MAX_CONSECUTIVE_FAILURES = 3
SPEC_KEYS = {"type", "choices", "low", "high", "log", "step", "when"}
TOP_KEYS = {"name", "base", "trials", "seeds", "set", "search", "sampler", "pruner"}
SAMPLER_OPTIONS = {
    "grid": set(),
    "random": set(),
    "tpe": {"n_startup_trials", "multivariate", "group", "constant_liar", "n_ei_candidates"},
}
PRUNER_OPTIONS = {
    "none": set(),
    "median": {"n_startup_trials", "n_warmup_steps", "interval_steps"},
    "hyperband": {"min_resource", "max_resource", "reduction_factor"},
}


class SweepError(ConfigError):
    """A bad sweep file, reported as `sweep FILE: KEY: what is wrong`."""

    def __init__(self, key: str, message: str, path: str | Path | None = None):
        super().__init__(key, message)
        where = f"sweep {path}: " if path else "sweep: "
        ValueError.__init__(self, f"{where}{key}: {message}")


# --- config keys ------------------------------------------------------------------------------


@functools.cache
def config_defaults() -> dict[str, Any]:
    """Every dotted config key with its default: the vocabulary sweep keys are checked against."""
    cfg = Config()
    return {
        f"{section}.{f.name}": getattr(getattr(cfg, section), f.name)
        for section in ("data", "model", "train")
        for f in dataclasses.fields(getattr(cfg, section))
    }


def _check_key(key: str, where: str, path: str | Path | None) -> None:
    known = config_defaults()
    if key in known:
        return
    section = key.split(".", 1)[0]
    same = sorted(k.split(".", 1)[1] for k in known if k.startswith(section + "."))
    hint = f"known keys in {section}: {', '.join(same)}" if same else (
        "a key looks like section.key with section one of data, model, train")
    raise SweepError(where, f"unknown config key {key!r}; {hint}", path)


def get_value(raw: dict[str, Any], key: str) -> Any:
    """A dotted key's value in a raw config dict, falling back to the default."""
    section, name = key.split(".", 1)
    table = raw.get(section, {})
    return table[name] if name in table else config_defaults()[key]


def set_value(raw: dict[str, Any], key: str, value: Any) -> None:
    section, name = key.split(".", 1)
    raw.setdefault(section, {})[name] = value


# --- conditions -------------------------------------------------------------------------------

_CLAUSE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(==|!=|<=|>=|<|>|not in|in)\s*(.+?)\s*$")


@dataclass(frozen=True)
class Condition:
    """`KEY OP VALUE` on the configuration as resolved so far (base plus earlier params)."""

    key: str
    op: str
    value: Any

    def holds(self, raw: dict[str, Any]) -> bool:
        v = get_value(raw, self.key)
        if self.op == "==":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        if self.op == "in":
            return v in self.value
        if self.op == "not in":
            return v not in self.value
        return {"<": v < self.value, "<=": v <= self.value, ">": v > self.value,
                ">=": v >= self.value}[self.op]

    def __str__(self) -> str:
        return f"{self.key} {self.op} {json.dumps(self.value)}"


def parse_condition(text: str, where: str, path: str | Path | None = None) -> list[Condition]:
    """Clauses joined by ` and `; values are TOML (`"sgd"`, `0.9`, `["adam", "nadam"]`)."""
    out = []
    for clause in re.split(r"\s+and\s+", text.strip()):
        m = _CLAUSE.match(clause)
        if not m:
            raise SweepError(where, f"cannot read condition {clause!r}; write e.g. "
                                    "'train.optimizer == \"sgd\"'", path)
        key, op, literal = m.groups()
        _check_key(key, where, path)
        try:
            value = tomllib.loads(f"v = {literal}")["v"]
        except tomllib.TOMLDecodeError:
            raise SweepError(where, f"condition value {literal!r} is not a TOML value "
                                    "(quote strings)", path) from None
        if op in ("in", "not in") and not isinstance(value, list):
            raise SweepError(where, f"'{op}' needs a list, found {literal!r}", path)
        if op in ("<", "<=", ">", ">=") and not isinstance(value, int | float):
            raise SweepError(where, f"'{op}' needs a number, found {literal!r}", path)
        out.append(Condition(key, op, value))
    return out


# --- parameters -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One searched value. `name` is Optuna's; `key` the config key it sets. Several params may
    set one key under different conditions (`train.lr@adam`, `train.lr@sgd`): each optimizer
    then gets its own learning-rate range."""

    name: str
    key: str
    kind: str  # categorical | int | float
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    when: tuple[Condition, ...] = ()

    def active(self, raw: dict[str, Any]) -> bool:
        return all(c.holds(raw) for c in self.when)

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high),
                                   step=self.step, log=self.log)

    def grid_values(self) -> list[Any]:
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            raise SweepError(f"search.{self.name}", "the grid sampler needs `choices` or a "
                                                    "`step` for a float parameter")
        n = int(round((self.high - self.low) / self.step))
        return [round(self.low + i * self.step, 12) for i in range(n + 1)]

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "key": self.key, "type": self.kind}
        if self.kind == "categorical":
            d["choices"] = list(self.choices)
        else:
            d.update(low=self.low, high=self.high, log=self.log, step=self.step)
        if self.when:
            d["when"] = " and ".join(str(c) for c in self.when)
        return d


def _flatten_search(table: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """`[search."train.lr"]` and `[search.train.lr]` both give `train.lr`."""
    out = {}
    for k, v in table.items():
        name = f"{prefix}.{k}" if prefix else k
        if not isinstance(v, dict):
            raise SweepError(f"search.{name}", "expected a table like "
                                               "{ type = \"float\", low = 0.001, high = 0.1 }")
        if v and set(v) & SPEC_KEYS:
            out[name] = v
        else:
            out.update(_flatten_search(v, name))
    return out


def parse_param(name: str, spec: dict[str, Any], base: dict[str, Any],
                path: str | Path | None = None) -> Param:
    where = f"search.{name}"
    key = name.split("@", 1)[0]
    _check_key(key, where, path)
    if key == "train.seed":
        raise SweepError(where, "seeds are not searched; list them as `seeds = [1, 2, 3]`", path)
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise SweepError(where, f"unknown field {unknown[0]!r}; fields: "
                                f"{', '.join(sorted(SPEC_KEYS))}", path)
    kind = spec.get("type", "categorical" if "choices" in spec else None)
    if kind not in ("categorical", "int", "float"):
        raise SweepError(where, f"type must be categorical, int or float, found {kind!r}", path)
    when = spec.get("when", [])
    clauses = [when] if isinstance(when, str) else when
    if not isinstance(clauses, list) or not all(isinstance(c, str) for c in clauses):
        raise SweepError(where, "`when` must be a string or a list of strings", path)
    conditions = tuple(c for text in clauses for c in parse_condition(text, where, path))
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SweepError(where, "a categorical parameter needs a non-empty `choices` list",
                             path)
        if not all(isinstance(c, str | int | float | bool) for c in choices):
            raise SweepError(where, "choices must be strings, numbers or booleans", path)
        extra = sorted(set(spec) & {"low", "high", "log", "step"})
        if extra:
            raise SweepError(where, f"{extra[0]!r} does not apply to a categorical parameter",
                             path)
        param = Param(name, key, kind, choices=tuple(choices), when=conditions)
        values = list(choices)
    else:
        low, high = spec.get("low"), spec.get("high")
        num = int if kind == "int" else int | float
        for label, v in (("low", low), ("high", high)):
            if not isinstance(v, num) or isinstance(v, bool):
                raise SweepError(where, f"{kind} parameter needs a numeric `{label}`", path)
        if low > high:
            raise SweepError(where, f"low {low} is above high {high}", path)
        log, step = bool(spec.get("log", False)), spec.get("step")
        if log and low <= 0:
            raise SweepError(where, "a log-scaled range needs low > 0", path)
        if log and step is not None:
            raise SweepError(where, "`step` and `log` cannot be combined", path)
        if step is not None and (not isinstance(step, num) or step <= 0):
            raise SweepError(where, f"step must be a positive {kind}", path)
        if "choices" in spec:
            raise SweepError(where, "`choices` only applies to categorical parameters", path)
        param = Param(name, key, kind, low, high, log, step, when=conditions)
        values = [low, high]
    for v in values:  # each value must make a valid config on its own
        raw = copy.deepcopy(base)
        set_value(raw, key, float(v) if kind == "float" else v)
        try:
            Config.from_dict(raw)
        except ConfigError as e:
            raise SweepError(where, f"value {v!r} is invalid: {e}", path) from None
    return param


# --- sweep files ------------------------------------------------------------------------------


@dataclass
class Sweep:
    name: str
    path: str
    base: dict[str, Any]  # raw config: base file plus [set]
    search: list[Param]
    seeds: list[int] = field(default_factory=lambda: [1])
    trials: int | None = None
    sampler: dict[str, Any] = field(default_factory=lambda: {"type": "tpe"})
    pruner: dict[str, Any] = field(default_factory=lambda: {"type": "none"})

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "base": self.base, "search": [p.describe() for p in
                                                                 self.search],
                "seeds": self.seeds, "sampler": self.sampler, "pruner": self.pruner}

    def fingerprint(self) -> str:
        """What makes two runs the same study (the trial target may change between runs)."""
        d = self.describe()
        d.pop("name")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def grid(self) -> dict[str, list[Any]]:
        return {p.name: p.grid_values() for p in self.search}

    def grid_size(self) -> int:
        n = 1
        for values in self.grid().values():
            n *= len(values)
        return n

    def target(self, trials: int | None) -> int:
        n = trials if trials is not None else self.trials
        if self.sampler["type"] == "grid":
            size = self.grid_size()
            n = size if n is None else min(n, size)
        if n is None:
            raise SweepError("trials", "set `trials = N` in the sweep or pass --trials", self.path)
        if n < 1:
            raise SweepError("trials", f"must be at least 1, found {n}", self.path)
        return n


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file; every error names the offending key."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise SweepError("file", e.strerror or str(e), path) from None
    except tomllib.TOMLDecodeError as e:
        raise SweepError("file", f"not valid TOML: {e}", path) from None
    unknown = sorted(set(doc) - TOP_KEYS)
    if unknown:
        raise SweepError(unknown[0], f"unknown key; known keys: {', '.join(sorted(TOP_KEYS))}",
                         path)
    raw: dict[str, Any] = {}
    if "base" in doc:
        base = Path(doc["base"])
        base = base if base.is_absolute() else path.parent / base
        try:
            raw = tomllib.loads(base.read_text(encoding="utf-8"))
        except OSError as e:
            raise SweepError("base", f"{base}: {e.strerror or e}", path) from None
        except tomllib.TOMLDecodeError as e:
            raise SweepError("base", f"{base} is not valid TOML: {e}", path) from None
    for key, value in _flat_set(doc.get("set", {})).items():
        _check_key(key, f"set.{key}", path)
        set_value(raw, key, value)
    try:
        Config.from_dict(raw)
    except ConfigError as e:
        raise SweepError("base", f"the base config is invalid: {e}", path) from None

    table = doc.get("search", {})
    if not isinstance(table, dict) or not table:
        raise SweepError("search", "needs at least one parameter, e.g. "
                                   '[search."train.lr"] type = "float" ...', path)
    params = [parse_param(n, s, raw, path) for n, s in _flatten_search(table).items()]
    _check_order(params, path)

    seeds = doc.get("seeds", [raw.get("train", {}).get("seed", 1)])
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
            or len(set(seeds)) != len(seeds)):
        raise SweepError("seeds", "must be a non-empty list of distinct integers", path)
    trials = doc.get("trials")
    if trials is not None and (not isinstance(trials, int) or trials < 1):
        raise SweepError("trials", "must be a positive integer", path)
    sampler = _options(doc.get("sampler", {}), "sampler", "tpe", SAMPLER_OPTIONS, path)
    pruner = _options(doc.get("pruner", {}), "pruner", "none", PRUNER_OPTIONS, path)
    sweep = Sweep(str(doc.get("name", path.stem)), str(path), raw, params, seeds, trials,
                  sampler, pruner)
    if sampler["type"] == "grid":
        for p in params:
            try:
                p.grid_values()
            except SweepError as e:
                raise SweepError(e.key, e.message, path) from None
    return sweep


def _flat_set(table: Any, prefix: str = "") -> dict[str, Any]:
    """`[set]` accepts `"train.lr" = 0.1` and `[set.train] lr = 0.1` alike."""
    if not isinstance(table, dict):
        raise SweepError("set", "expected a table of config overrides")
    out = {}
    for k, v in table.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(_flat_set(v, key))
        else:
            out[key] = v
    return out


def _check_order(params: list[Param], path: str | Path | None) -> None:
    """A condition may only look at keys sampled before it (or fixed by the base); params that
    share a key must all be conditional, or the last would silently win."""
    sampled: set[str] = set()
    by_key: dict[str, list[Param]] = {}
    for p in params:
        for c in p.when:
            later = [q for q in params if q.key == c.key and q.key not in sampled]
            if later and c.key != p.key:
                raise SweepError(f"search.{p.name}", f"its condition reads {c.key}, which is "
                                                     "sampled later; declare it first", path)
        sampled.add(p.key)
        by_key.setdefault(p.key, []).append(p)
    for key, group in by_key.items():
        if len(group) > 1 and not all(p.when for p in group):
            names = ", ".join(p.name for p in group)
            raise SweepError(f"search.{group[-1].name}", f"several parameters set {key} "
                                                         f"({names}); give each a `when`", path)


def _options(table: Any, what: str, default: str, allowed: dict[str, set[str]],
             path: str | Path | None) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise SweepError(what, "expected a table", path)
    kind = table.get("type", default)
    if kind not in allowed:
        raise SweepError(f"{what}.type", f"{kind!r} is not one of {', '.join(allowed)}", path)
    extra = sorted(set(table) - {"type", "seed"} - allowed[kind])
    if extra:
        known = ", ".join(sorted(allowed[kind] | {"seed"}))
        raise SweepError(f"{what}.{extra[0]}", f"unknown option for {kind}; known: {known}", path)
    return {"type": kind, **{k: v for k, v in table.items() if k != "type"}}


def sample(trial: optuna.Trial, sweep: Sweep) -> dict[str, Any]:
    """The trial's raw config: base, then each active parameter in file order."""
    raw = copy.deepcopy(sweep.base)
    set_by: dict[str, str] = {}
    for p in sweep.search:
        if not p.active(raw):
            continue
        if p.key in set_by:
            raise SweepError(f"search.{p.name}", f"both {set_by[p.key]} and {p.name} are active "
                                                 f"and set {p.key}; make their conditions "
                                                 "exclusive", sweep.path)
        set_value(raw, p.key, p.suggest(trial))
        set_by[p.key] = p.name
    return raw


def config_id(cfg: Config) -> str:
    """Groups trials of one configuration (seed excluded) for mean ± std over seeds."""
    d = cfg.to_dict()
    d["train"].pop("seed")
    d["train"].pop("threads")
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


# --- samplers, pruners, storages --------------------------------------------------------------


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
    """`sqlite:///`, `postgresql://`, `mysql://` URLs, or `journal:PATH` (a file on storage
    every worker can see; fine on NFS)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if url.startswith("journal:"):
        file = url.removeprefix("journal:").removeprefix("//")
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(file))
    if "://" not in url:
        raise SweepError("storage", f"{url!r} is not a storage URL: use sqlite:///PATH, "
                                    "postgresql://..., mysql://... or journal:PATH")
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 120}}  # workers wait for the write lock
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


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


def find_stale(study: optuna.Study, stale_after: float = STALE_AFTER_SECONDS,
               now: float | None = None) -> list[optuna.trial.FrozenTrial]:
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


# --- running trials ---------------------------------------------------------------------------


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
        from .train import Interrupted

        with _Heartbeat(trial, self.spec.heartbeat):
            try:
                return self._run(trial)
            except (Interrupted, KeyboardInterrupt):
                self.interrupted = True
                trial.set_user_attr("error", "interrupted; retried (from its checkpoints) by "
                                             "the next run")
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
        ahead = [t for t in self.study.get_trials(deepcopy=False, states=states)
                 if t.number < trial.number]
        return len(ahead) >= self.spec.target

    def _corpus(self, cfg: Config) -> Corpus:
        from .train import load_corpus

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

    def _seed(self, trial: optuna.Trial, cfg: Config, run: Path, old: Path | None,
              report: bool, runs: list[dict[str, Any]]) -> dict[str, Any]:
        import optuna

        from . import checkpoint
        from .train import Interrupted, fit

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
                metrics = fit(cfg, run, corpus=corpus, hooks=[prune] if report else (),
                              progress=False, resume=resume)
        except optuna.TrialPruned:
            partial = {"seed": cfg.train.seed, "dev_curve": [r["dev_f1"] for r in _read_log(run)],
                       "pruned": True}
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
        from . import checkpoint

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
    study = optuna.load_study(study_name=spec.study, storage=storage,
                              sampler=build_sampler(spec.sweep), pruner=build_pruner(spec.sweep))
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
            study.optimize(objective, n_trials=1, catch=(Exception,))
        except KeyboardInterrupt:
            objective.interrupted = True
        except optuna.exceptions.UpdateFinishedTrialError:
            # another worker judged this trial abandoned and failed it; it retries it too
            _say(spec, f"{spec.label}trial {objective.current} was taken over by another worker")
            continue
        last = None
        if objective.current is not None:
            last = next(t for t in study.get_trials(deepcopy=False)
                        if t.number == objective.current)
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
            _say(spec, f"{spec.label}stopping: {failures} trials in a row failed; last error: "
                       f"{last.user_attrs.get('error', 'see the log above')}", err=True)
            return 1


def _is_surplus(t: optuna.trial.FrozenTrial) -> bool:
    return "error" not in t.user_attrs and "config" not in t.user_attrs


def _say(spec: WorkerSpec, text: str, err: bool = False) -> None:
    if not spec.quiet or err:
        print(text, file=sys.stderr if err else sys.stdout, flush=True)


def _worker_main(spec: WorkerSpec) -> None:
    """Entry of a spawned worker: threads capped before torch loads, exit code = status."""
    import signal

    if spec.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(spec.threads)

    def stop(signum: int, frame: Any) -> None:  # training installs its own, gentler handler
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    parent = os.getppid()

    def orphaned() -> None:  # `rnner tune` was killed: stop as if it had sent SIGTERM
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=orphaned, daemon=True).start()
    sys.exit(run_worker(spec))


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def prepare(sweep: Sweep, storage: str, study_name: str, output: Path) -> None:
    """Create (or join) the study, refusing one made from a different sweep."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    output.mkdir(parents=True, exist_ok=True)
    owner = output / "trials" / ".study"
    owner.parent.mkdir(parents=True, exist_ok=True)
    if owner.is_file() and owner.read_text().strip() != study_name:
        raise SweepError("output", f"{output} holds the trials of study "
                                   f"{owner.read_text().strip()!r}; use another --output for "
                                   f"study {study_name!r}", sweep.path)
    owner.write_text(study_name + "\n")
    study = optuna.create_study(storage=open_storage(storage), study_name=study_name,
                                direction="maximize", load_if_exists=True)
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise SweepError("study", f"study {study_name!r} exists and minimises", sweep.path)
    known = study.user_attrs.get("sweep_fingerprint")
    if known is None:
        study.set_user_attr("sweep_fingerprint", sweep.fingerprint())
        study.set_user_attr("sweep", sweep.describe())
    elif known != sweep.fingerprint():
        raise SweepError("study", f"study {study_name!r} in {storage} was made from a different "
                                  "sweep (base, search, seeds, sampler or pruner changed); "
                                  "use a new --study name or --output", sweep.path)


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
    spec = WorkerSpec(sweep, url, name, str(out), target, keep_models, stale_after, heartbeat,
                      quiet=quiet)
    started = time.perf_counter()
    codes = [_run_here(spec)] if workers == 1 else _run_pool(spec, workers)
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    counts = _counts(study)
    summary: dict[str, Any] = {
        "study": name, "storage": url, "output": str(out), "target": target,
        "finished": sum(counts.get(s, 0) for s in FINISHED), "counts": counts,
        "exit_codes": codes, "seconds": round(time.perf_counter() - started, 1),
    }
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if complete:
        best = max(complete, key=lambda t: t.value)
        summary["best"] = {"number": best.number, "dev_f1": best.value, "params": best.params,
                           "test_f1": best.user_attrs.get("test_f1")}
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
    import multiprocessing as mp
    import signal

    threads = max(1, cpu_count() // workers)
    ctx = mp.get_context("spawn")
    procs = []
    for i in range(workers):
        s = dataclasses.replace(spec, threads=threads, label=f"[w{i + 1}] ")
        p = ctx.Process(target=_worker_main, args=(s,), name=f"rnner-tune-{i + 1}")
        p.start()
        procs.append(p)
        time.sleep(0.2)  # stagger the first storage writes a little

    def forward(signum: int, frame: Any) -> None:
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)  # workers checkpoint, re-enqueue and exit

    previous = signal.signal(signal.SIGTERM, forward)
    forwarded = False
    try:
        while any(p.is_alive() for p in procs):
            try:
                for p in procs:
                    p.join()
            except KeyboardInterrupt:
                # Ctrl-C signalled the workers too, but `kill -INT` reached this process
                # alone: pass it on once, or the workers would run their trials to the end.
                if not forwarded:
                    forwarded = True
                    forward(signal.SIGINT, None)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return [130 if p.exitcode in (-2, -15) else (p.exitcode or 0) for p in procs]


# --- command line -----------------------------------------------------------------------------


def add_tune_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("tune", help="run, resume or join a hyperparameter sweep")
    p.add_argument("sweep", help="sweep TOML (see configs/sweeps/)")
    p.add_argument("--trials", type=int, help="target number of finished trials in the study "
                                              "(default: the sweep's `trials`, or the grid)")
    p.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    p.add_argument("--storage", help="sqlite:///PATH, postgresql://..., mysql://... or "
                                     "journal:PATH (default sqlite:///OUTPUT/study.db)")
    p.add_argument("--study", help="study name (default: the sweep's name)")
    p.add_argument("--output", help="directory for study.db and trials/ "
                                    "(default runs/sweeps/NAME)")
    p.add_argument("--keep-models", action="store_true", help="keep each run's weights")
    p.add_argument("--stale-after", type=float, default=STALE_AFTER_SECONDS, metavar="SECONDS",
                   help="retry a RUNNING trial of another machine after this long without a "
                        "heartbeat (trials of this machine are retried once their process is "
                        "gone)")
    p.add_argument("--quiet", action="store_true", help="no per-trial lines")
    p.set_defaults(func=cmd_tune)
    return p


def cmd_tune(args: argparse.Namespace) -> int:
    try:
        summary = tune(args.sweep, trials=args.trials, workers=args.workers,
                       storage=args.storage, study_name=args.study, output=args.output,
                       keep_models=args.keep_models, stale_after=args.stale_after,
                       quiet=args.quiet)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    c = summary["counts"]
    print(f"study {summary['study']}: {summary['finished']}/{summary['target']} finished "
          f"({c.get('COMPLETE', 0)} complete, {c.get('PRUNED', 0)} pruned, "
          f"{c.get('FAIL', 0)} failed) in {summary['seconds']:.0f} s; storage {summary['storage']}")
    if "best" in summary:
        b = summary["best"]
        test = f", test {100 * b['test_f1']:.2f}" if b.get("test_f1") is not None else ""
        print(f"best: trial {b['number']} dev F1 {100 * b['dev_f1']:.2f}{test}  {b['params']}")
    bad = [c for c in summary["exit_codes"] if c != 0]
    if bad:
        print(f"{len(bad)} worker(s) stopped early (exit codes {bad}); see their messages above",
              file=sys.stderr)
    print(f"report: rnner report {summary['output']}")
    return 0 if summary["finished"] >= summary["target"] else 1


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
