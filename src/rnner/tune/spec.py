"""The sweep file: parameters, conditions and validation, with no Optuna import.

A sweep file names a base config, a search space keyed by dotted config keys, a sampler, a
pruner and a list of seeds. Every error names the offending key (`sweep FILE: KEY: ...`), and
every value a parameter can take is checked to make a valid config before any trial runs.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Config, ConfigError

if TYPE_CHECKING:
    import optuna

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
        self.args = (f"{where}{key}: {message}",)


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
    hint = (
        f"known keys in {section}: {', '.join(same)}"
        if same
        else ("a key looks like section.key with section one of data, model, train")
    )
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
        return {
            "<": v < self.value,
            "<=": v <= self.value,
            ">": v > self.value,
            ">=": v >= self.value,
        }[self.op]

    def __str__(self) -> str:
        return f"{self.key} {self.op} {json.dumps(self.value)}"


def parse_condition(text: str, where: str, path: str | Path | None = None) -> list[Condition]:
    """Clauses joined by ` and `; values are TOML (`"sgd"`, `0.9`, `["adam", "nadam"]`)."""
    out = []
    for clause in re.split(r"\s+and\s+", text.strip()):
        m = _CLAUSE.match(clause)
        if not m:
            raise SweepError(
                where,
                f"cannot read condition {clause!r}; write e.g. 'train.optimizer == \"sgd\"'",
                path,
            )
        key, op, literal = m.groups()
        _check_key(key, where, path)
        try:
            value = tomllib.loads(f"v = {literal}")["v"]
        except tomllib.TOMLDecodeError:
            raise SweepError(
                where, f"condition value {literal!r} is not a TOML value (quote strings)", path
            ) from None
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
        low, high = self._bounds()
        if self.kind == "int":
            return trial.suggest_int(
                self.name, int(low), int(high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.name, float(low), float(high), step=self.step, log=self.log)

    def grid_values(self) -> list[Any]:
        if self.kind == "categorical":
            return list(self.choices)
        low, high = self._bounds()
        if self.kind == "int":
            return list(range(int(low), int(high) + 1, int(self.step or 1)))
        if self.step is None:
            raise SweepError(
                f"search.{self.name}",
                "the grid sampler needs `choices` or a `step` for a float parameter",
            )
        n = int(round((high - low) / self.step))
        return [round(low + i * self.step, 12) for i in range(n + 1)]

    def _bounds(self) -> tuple[float, float]:
        """`low` and `high` of an int or float parameter (parse_param requires both)."""
        assert self.low is not None and self.high is not None, f"{self.name} has no range"
        return self.low, self.high

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
            raise SweepError(
                f"search.{name}",
                'expected a table like { type = "float", low = 0.001, high = 0.1 }',
            )
        if v and set(v) & SPEC_KEYS:
            out[name] = v
        else:
            out.update(_flatten_search(v, name))
    return out


def parse_param(
    name: str, spec: dict[str, Any], base: dict[str, Any], path: str | Path | None = None
) -> Param:
    where = f"search.{name}"
    key = name.split("@", 1)[0]
    _check_key(key, where, path)
    if key == "train.seed":
        raise SweepError(where, "seeds are not searched; list them as `seeds = [1, 2, 3]`", path)
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise SweepError(
            where, f"unknown field {unknown[0]!r}; fields: {', '.join(sorted(SPEC_KEYS))}", path
        )
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
            raise SweepError(
                where, "a categorical parameter needs a non-empty `choices` list", path
            )
        if not all(isinstance(c, str | int | float | bool) for c in choices):
            raise SweepError(where, "choices must be strings, numbers or booleans", path)
        extra = sorted(set(spec) & {"low", "high", "log", "step"})
        if extra:
            raise SweepError(where, f"{extra[0]!r} does not apply to a categorical parameter", path)
        param = Param(name, key, kind, choices=tuple(choices), when=conditions)
        values = list(choices)
    else:
        num = int if kind == "int" else int | float
        bounds: list[float] = []
        for label in ("low", "high"):
            v = spec.get(label)
            if (
                not isinstance(v, int | float)
                or isinstance(v, bool)
                or (kind == "int" and not isinstance(v, int))
            ):
                raise SweepError(where, f"{kind} parameter needs a numeric `{label}`", path)
            bounds.append(v)
        low, high = bounds
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
        return {
            "name": self.name,
            "base": self.base,
            "search": [p.describe() for p in self.search],
            "seeds": self.seeds,
            "sampler": self.sampler,
            "pruner": self.pruner,
        }

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
        raise SweepError(
            unknown[0], f"unknown key; known keys: {', '.join(sorted(TOP_KEYS))}", path
        )
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
        raise SweepError(
            "search",
            'needs at least one parameter, e.g. [search."train.lr"] type = "float" ...',
            path,
        )
    params = [parse_param(n, s, raw, path) for n, s in _flatten_search(table).items()]
    _check_order(params, path)

    seeds = doc.get("seeds", [raw.get("train", {}).get("seed", 1)])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise SweepError("seeds", "must be a non-empty list of distinct integers", path)
    trials = doc.get("trials")
    if trials is not None and (not isinstance(trials, int) or trials < 1):
        raise SweepError("trials", "must be a positive integer", path)
    sampler = _options(doc.get("sampler", {}), "sampler", "tpe", SAMPLER_OPTIONS, path)
    pruner = _options(doc.get("pruner", {}), "pruner", "none", PRUNER_OPTIONS, path)
    sweep = Sweep(
        str(doc.get("name", path.stem)), str(path), raw, params, seeds, trials, sampler, pruner
    )
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
                raise SweepError(
                    f"search.{p.name}",
                    f"its condition reads {c.key}, which is sampled later; declare it first",
                    path,
                )
        sampled.add(p.key)
        by_key.setdefault(p.key, []).append(p)
    for key, group in by_key.items():
        if len(group) > 1 and not all(p.when for p in group):
            names = ", ".join(p.name for p in group)
            raise SweepError(
                f"search.{group[-1].name}",
                f"several parameters set {key} ({names}); give each a `when`",
                path,
            )


def _options(
    table: Any, what: str, default: str, allowed: dict[str, set[str]], path: str | Path | None
) -> dict[str, Any]:
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
            raise SweepError(
                f"search.{p.name}",
                f"both {set_by[p.key]} and {p.name} are active "
                f"and set {p.key}; make their conditions "
                "exclusive",
                sweep.path,
            )
        set_value(raw, p.key, p.suggest(trial))
        set_by[p.key] = p.name
    return raw


def config_id(cfg: Config) -> str:
    """Groups trials of one configuration (seed excluded) for mean ± std over seeds."""
    d = cfg.to_dict()
    d["train"].pop("seed")
    d["train"].pop("threads")
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]
