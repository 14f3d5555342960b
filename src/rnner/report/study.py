"""Reading a sweep's study: trials pooled into configurations, ranked by mean dev F1.

Trials of one configuration (same resolved config apart from the seed) are pooled, so every
row is a configuration with mean ± std over its seeds. Rows are ranked by mean dev F1 alone;
test F1 is shown for the dev-selected epoch and never ranks anything.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import ConfigError
from ..tune import open_storage

if TYPE_CHECKING:
    import optuna

MIN_IMPORTANCE_TRIALS = 4


class ReportError(ConfigError):
    """No study to report on: the message says what was looked for."""

    def __init__(self, message: str):
        super().__init__("report", message)
        self.args = (message,)


@dataclass
class Group:
    """One configuration: every finished seed run of every trial that trained it."""

    config_id: str
    config: dict[str, Any]
    trials: list[int] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    active: set[str] = field(default_factory=set)  # searched keys this configuration sampled

    def _stat(self, key: str) -> list[float]:
        return [r[key] for r in self.runs if r.get(key) is not None]

    @property
    def dev(self) -> list[float]:
        return self._stat("dev_f1")

    @property
    def test(self) -> list[float]:
        return self._stat("test_f1")

    @property
    def dev_mean(self) -> float:
        return statistics.fmean(self.dev)

    def mean(self, key: str) -> float | None:
        xs = self._stat(key)
        return statistics.fmean(xs) if xs else None

    def value(self, key: str) -> Any:
        section, name = key.split(".", 1)
        return self.config.get(section, {}).get(name)

    def optimizer(self) -> str:
        return optimizer_label(self.config)


def optimizer_label(config: dict[str, Any]) -> str:
    """SGD with and without momentum behave like different optimizers; name them apart."""
    t = config.get("train", {})
    name = t.get("optimizer", "?")
    if name == "sgd" and t.get("momentum", 0) > 0:
        return "sgd+nesterov" if t.get("nesterov") else "sgd+momentum"
    return name


# --- reading ----------------------------------------------------------------------------------


def resolve(source: str, study: str | None = None) -> tuple[str, str, Path | None]:
    """(storage URL, study name, the output directory when `source` is one)."""
    import optuna

    path = Path(source)
    directory = None
    if path.is_dir():
        if not (path / "study.db").is_file():
            raise ReportError(
                f"{path} holds no study.db; pass the storage URL "
                "(postgresql://..., journal:PATH) and --study"
            )
        url, directory = f"sqlite:///{(path / 'study.db').resolve()}", path
    elif path.is_file() and path.suffix == ".db":
        url = f"sqlite:///{path.resolve()}"
    elif "://" in source or source.startswith("journal:"):
        url = source
    else:
        raise ReportError(f"{source}: not a sweep output directory, .db file or storage URL")
    if study is None:
        names = optuna.study.get_all_study_names(open_storage(url))
        owner = directory / "trials" / ".study" if directory else None
        if owner is not None and owner.is_file() and owner.read_text().strip() in names:
            study = owner.read_text().strip()
        elif len(names) == 1:
            study = names[0]
        else:
            if not names:
                raise ReportError(f"{url} holds no study")
            raise ReportError(
                f"{url} holds several studies ({', '.join(names)}); pick one with --study"
            )
    return url, study, directory


def load_study(url: str, name: str) -> optuna.Study:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=open_storage(url))


def search_keys(study: optuna.Study) -> list[str]:
    """Config keys the sweep searched, in file order (`train.lr@sgd` counts as `train.lr`)."""
    sweep = study.user_attrs.get("sweep", {})
    names = [p["key"] for p in sweep.get("search", [])]
    if not names:
        names = [n.split("@", 1)[0] for t in study.get_trials(deepcopy=False) for n in t.params]
    return list(dict.fromkeys(names))


def log_scaled(study: optuna.Study) -> set[str]:
    return {p["key"] for p in study.user_attrs.get("sweep", {}).get("search", []) if p.get("log")}


def groups(study: optuna.Study) -> list[Group]:
    """Complete trials pooled by configuration, best mean dev F1 first; a seed counts once."""
    out: dict[str, Group] = {}
    for t in study.get_trials(deepcopy=False):
        if t.state.name != "COMPLETE" or "config" not in t.user_attrs:
            continue
        a = t.user_attrs
        g = out.setdefault(
            a.get("config_id", str(t.number)), Group(a.get("config_id", ""), a["config"])
        )
        g.trials.append(t.number)
        g.active |= {name.split("@", 1)[0] for name in t.params}
        seen = {r["seed"] for r in g.runs}
        for r in a.get("runs", []):
            if "dev_f1" in r and r["seed"] not in seen:
                g.runs.append({**r, "trial": t.number})
                seen.add(r["seed"])
    return sorted((g for g in out.values() if g.dev), key=lambda g: -g.dev_mean)


def merge(rows: Sequence[Group]) -> list[Group]:
    """Pool groups of equal configuration from several studies (a seed counts once)."""
    out: dict[str, Group] = {}
    for g in rows:
        m = out.setdefault(g.config_id, Group(g.config_id, g.config))
        m.trials += g.trials
        m.active |= g.active
        seen = {r["seed"] for r in m.runs}
        m.runs += [r for r in g.runs if r["seed"] not in seen]
    return list(out.values())


def state_counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state name (COMPLETE, PRUNED, FAIL, RUNNING, WAITING)."""
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def importances(study: optuna.Study) -> tuple[dict[str, float], str]:
    """fANOVA importances of the searched parameters for mean dev F1, or why there are none."""
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(complete) < MIN_IMPORTANCE_TRIALS:
        return {}, (
            f"not computed: {len(complete)} complete trials, at least "
            f"{MIN_IMPORTANCE_TRIALS} needed"
        )
    varying = [
        n
        for n in {n for t in complete for n in t.params}
        if len({json.dumps(t.params.get(n)) for t in complete}) > 1
    ]
    if not varying:
        return {}, "not computed: no parameter varies across complete trials"
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        return optuna.importance.get_param_importances(study, evaluator=evaluator), ""
    except (ValueError, RuntimeError) as e:  # e.g. only conditional parameters vary
        return {}, f"not computed: {e}"
