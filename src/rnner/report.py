"""`rnner report`: a study's results as Markdown, CSV and plots.

Trials of one configuration (same resolved config apart from the seed) are pooled, so every
row is a configuration with mean ± std over its seeds. Rows are ranked by mean dev F1 alone;
test F1 is shown for the dev-selected epoch and never ranks anything.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import ConfigError
from .tune import open_storage

if TYPE_CHECKING:
    import optuna
    from matplotlib.axes import Axes

MIN_IMPORTANCE_TRIALS = 4
TOP_CURVES = 5
MAX_ROWS = 100


class ReportError(ConfigError):
    """No study to report on: the message says what was looked for."""

    def __init__(self, message: str):
        super().__init__("report", message)
        ValueError.__init__(self, message)


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
            raise ReportError(f"{path} holds no study.db; pass the storage URL "
                              "(postgresql://..., journal:PATH) and --study")
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
            raise ReportError(f"{url} holds several studies ({', '.join(names)}); pick one "
                              "with --study")
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
    return {p["key"] for p in study.user_attrs.get("sweep", {}).get("search", [])
            if p.get("log")}


def groups(study: optuna.Study) -> list[Group]:
    """Complete trials pooled by configuration, best mean dev F1 first; a seed counts once."""
    out: dict[str, Group] = {}
    for t in study.get_trials(deepcopy=False):
        if t.state.name != "COMPLETE" or "config" not in t.user_attrs:
            continue
        a = t.user_attrs
        g = out.setdefault(a.get("config_id", str(t.number)), Group(a.get("config_id", ""),
                                                                    a["config"]))
        g.trials.append(t.number)
        g.active |= {name.split("@", 1)[0] for name in t.params}
        seen = {r["seed"] for r in g.runs}
        for r in a.get("runs", []):
            if "dev_f1" in r and r["seed"] not in seen:
                g.runs.append({**r, "trial": t.number})
                seen.add(r["seed"])
    return sorted((g for g in out.values() if g.dev), key=lambda g: -g.dev_mean)


# --- formatting -------------------------------------------------------------------------------


def pm(xs: Sequence[float]) -> str:
    """F1 in points, mean ± sample std (no std for one seed)."""
    if not xs:
        return "–"
    mean = 100 * statistics.fmean(xs)
    if len(xs) < 2:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {100 * statistics.stdev(xs):.2f}"


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def table(rows: list[Group], keys: list[str]) -> str:
    head = ["#", "trials", *keys, "dev F1", "test F1", "seeds", "best epoch", "epochs",
            "s/seed"]  # "–": the key was not sampled (its condition did not hold)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, g in enumerate(rows[:MAX_ROWS], 1):
        cells = [str(i), " ".join(str(n) for n in g.trials)]
        cells += [fmt(g.value(k)) if k in g.active else "–" for k in keys]
        cells += [pm(g.dev), pm(g.test), str(len(g.runs)), fmt(g.mean("best_epoch")),
                  fmt(g.mean("epochs_run")), fmt(g.mean("seconds"))]
        lines.append("| " + " | ".join(cells) + " |")
    if any(k not in g.active for g in rows for k in keys):
        lines.append("\n–: not sampled in that configuration (its `when` condition did not "
                     "hold), so the base config's value applies.")
    if len(rows) > MAX_ROWS:
        lines.append(f"\n{len(rows) - MAX_ROWS} more configurations are in trials.csv.")
    return "\n".join(lines)


def importances(study: optuna.Study) -> tuple[dict[str, float], str]:
    """fANOVA importances of the searched parameters for mean dev F1, or why there are none."""
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(complete) < MIN_IMPORTANCE_TRIALS:
        return {}, (f"not computed: {len(complete)} complete trials, at least "
                    f"{MIN_IMPORTANCE_TRIALS} needed")
    varying = [n for n in {n for t in complete for n in t.params}
               if len({json.dumps(t.params.get(n)) for t in complete}) > 1]
    if not varying:
        return {}, "not computed: no parameter varies across complete trials"
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        return optuna.importance.get_param_importances(study, evaluator=evaluator), ""
    except (ValueError, RuntimeError) as e:  # e.g. only conditional parameters vary
        return {}, f"not computed: {e}"


# --- plots ------------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path.name


def _varies(rows: list[Group], key: str) -> bool:
    return len({json.dumps(g.value(key)) for g in rows if key in g.active}) > 1


def _colors(labels: Sequence[str]) -> dict[str, Any]:
    cmap = _pyplot().get_cmap("tab10")
    return {lab: cmap(i % 10) for i, lab in enumerate(sorted(set(labels)))}


def plot_curves(rows: list[Group], path: Path) -> str:
    """Dev F1 per epoch of the best configurations: mean over seeds, band from min to max."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for rank, g in enumerate(rows[:TOP_CURVES], 1):
        curves = [r["dev_curve"] for r in g.runs if r.get("dev_curve")]
        if not curves:
            continue
        n = max(len(c) for c in curves)
        at = [[c[e] for c in curves if len(c) > e] for e in range(n)]
        xs = list(range(1, n + 1))
        mean = [100 * statistics.fmean(v) for v in at]
        line = ax.plot(xs, mean, marker="o", ms=3, label=f"#{rank} trial {g.trials[0]}")[0]
        ax.fill_between(xs, [100 * min(v) for v in at], [100 * max(v) for v in at],
                        color=line.get_color(), alpha=0.15)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("dev entity F1")
    ax.set_title("Learning curves of the best configurations (mean over seeds, min–max band)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_time(rows: list[Group], path: Path) -> str:
    """What each configuration bought for its training time."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = [g.optimizer() for g in rows]
    by_opt = _varies(rows, "train.optimizer") or len(set(labels)) > 1
    colors = _colors(labels)
    for lab in sorted(set(labels)) if by_opt else [None]:
        sel = [g for g in rows if lab is None or g.optimizer() == lab]
        xs = [g.mean("seconds") or 0.0 for g in sel]
        ys = [100 * g.dev_mean for g in sel]
        errs = [100 * statistics.stdev(g.dev) if len(g.dev) > 1 else 0.0 for g in sel]
        ax.errorbar(xs, ys, yerr=errs, fmt="o", ms=4, capsize=2, label=lab,
                    color=colors.get(lab, "C0") if lab else "C0")
    secs = [g.mean("seconds") or 0.0 for g in rows]
    if min(secs) > 0 and max(secs) / min(secs) > 10:
        ax.set_xscale("log")
    ax.set_xlabel("wall time per seed (s)")
    ax.set_ylabel("dev entity F1 (mean ± std over seeds)")
    ax.set_title("Accuracy against training time")
    ax.grid(alpha=0.3)
    if by_opt:
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_lr(rows: list[Group], path: Path) -> str:
    """Dev F1 against learning rate, one series per optimizer (log x)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows = [g for g in rows if "train.lr" in g.active]
    labels = [g.optimizer() for g in rows]
    colors = _colors(labels)
    for lab in sorted(set(labels)):
        sel = sorted((g for g in rows if g.optimizer() == lab), key=lambda g: g.value("train.lr"))
        xs = [g.value("train.lr") for g in sel]
        ys = [100 * g.dev_mean for g in sel]
        errs = [100 * statistics.stdev(g.dev) if len(g.dev) > 1 else 0.0 for g in sel]
        ax.errorbar(xs, ys, yerr=errs, fmt="o", ms=4, capsize=2, color=colors[lab], label=lab)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("dev entity F1 (mean ± std over seeds)")
    ax.set_title("Dev F1 against learning rate, per optimizer")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_batch(rows: list[Group], path: Path) -> str:
    """Every configuration as a dot; the best one per batch size with its seed spread."""
    plt = _pyplot()
    rows = [g for g in rows if "train.batch_size" in g.active]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([g.value("train.batch_size") for g in rows], [100 * g.dev_mean for g in rows],
               s=12, color="0.6", label="configuration (mean over seeds)")
    best: dict[int, Group] = {}
    for g in rows:  # rows are sorted best first
        best.setdefault(g.value("train.batch_size"), g)
    sizes = sorted(best)
    ys = [100 * best[b].dev_mean for b in sizes]
    errs = [100 * statistics.stdev(best[b].dev) if len(best[b].dev) > 1 else 0.0 for b in sizes]
    ax.errorbar(sizes, ys, yerr=errs, fmt="-o", capsize=3, color="C0",
                label="best per batch size (± std)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.minorticks_off()
    ax.set_xlabel("batch size")
    ax.set_ylabel("dev entity F1")
    ax.set_title("Dev F1 by batch size")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_optimizers(rows: list[Group], path: Path) -> str:
    """Left: every seed run per optimizer (sensitivity); right: the best configuration's seeds."""
    plt = _pyplot()
    labels = sorted({g.optimizer() for g in rows})
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    every = [[100 * x for g in rows if g.optimizer() == lab for x in g.dev] for lab in labels]
    best = [[100 * x for x in next(g for g in rows if g.optimizer() == lab).dev]
            for lab in labels]
    for ax, data, title in ((left, every, "all configurations, all seeds"),
                            (right, best, "best configuration of each, over seeds")):
        ax.boxplot(data)
        ax.set_xticks(range(1, len(labels) + 1), labels)
        for i, ys in enumerate(data, 1):
            ax.scatter([i] * len(ys), ys, s=10, color="C1", alpha=0.7, zorder=3)
        ax.set_title(title)
        ax.grid(alpha=0.3, axis="y")
        ax.tick_params(axis="x", rotation=30)
    left.set_ylabel("dev entity F1")
    return _save(fig, path)


def plot_params(rows: list[Group], keys: list[str], logs: set[str], path: Path) -> str:
    """One panel per other varied key: boxes for categories, dots for numbers."""
    plt = _pyplot()
    cols = min(3, len(keys))
    nrows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        _param_panel(ax, rows, key, key in logs)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    return _save(fig, path)


def _param_panel(ax: Axes, rows: list[Group], key: str, log: bool) -> None:
    rows = [g for g in rows if key in g.active]  # where a condition held
    values = [g.value(key) for g in rows]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if numeric and len(set(values)) > 4:
        ax.scatter(values, [100 * g.dev_mean for g in rows], s=12)
        if log:
            ax.set_xscale("log")
    else:
        cats = sorted({json.dumps(v) for v in values})
        data = [[100 * g.dev_mean for g in rows if json.dumps(g.value(key)) == c] for c in cats]
        ax.boxplot(data)
        ax.set_xticks(range(1, len(cats) + 1),
                      [json.loads(c) if c.startswith('"') else c for c in cats])
        ax.tick_params(axis="x", rotation=30)
    ax.set_title(key, fontsize=9)
    ax.set_ylabel("dev F1")
    ax.grid(alpha=0.3)


# --- the report -------------------------------------------------------------------------------


def write_csv(study: optuna.Study, keys: list[str], path: Path) -> None:
    """One row per seed run of every trial, pruned and failed ones included."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["trial", "state", "config_id", "seed", *keys, "optimizer_label", "dev_f1",
                    "test_f1", "best_epoch", "epochs_run", "seconds", "peak_rss_mb"])
        for t in study.get_trials(deepcopy=False):
            a = t.user_attrs
            cfg = a.get("config", {})
            vals = [cfg.get(k.split(".")[0], {}).get(k.split(".", 1)[1]) for k in keys]
            for r in a.get("runs") or [{}]:
                w.writerow([t.number, t.state.name, a.get("config_id", ""), r.get("seed", ""),
                            *vals, optimizer_label(cfg) if cfg else "", r.get("dev_f1", ""),
                            r.get("test_f1", ""), r.get("best_epoch", ""),
                            r.get("epochs_run", ""), r.get("seconds", ""),
                            r.get("peak_rss_mb", "")])


def report(study: optuna.Study, output: str | Path, storage: str = "") -> Path:
    """Write report.md, trials.csv, best_config.json and the plots; returns report.md."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    rows = groups(study)
    keys = search_keys(study)
    logs = log_scaled(study)
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    sweep = study.user_attrs.get("sweep", {})
    md = [f"# Sweep report: {study.study_name}", ""]
    if storage:
        md.append(f"Storage: `{storage}`  ")
    md.append("Trials: " + (", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
                            or "none") + "  ")
    if sweep:
        md.append(f"Seeds per configuration: {sweep.get('seeds')}; sampler "
                  f"{sweep.get('sampler', {}).get('type')}, pruner "
                  f"{sweep.get('pruner', {}).get('type')}  ")
    md += ["",
           "Dev F1 is the entity F1 at each run's best dev epoch; rows are ranked by its mean "
           "over seeds. Test F1 is taken at that same epoch and is reported only, never used "
           "to select anything. F1 in points, mean ± sample std over seeds.", ""]
    write_csv(study, keys, out / "trials.csv")
    if not rows:
        md += ["No complete trials yet.", ""]
        path = out / "report.md"
        path.write_text("\n".join(md), encoding="utf-8")
        return path

    best = rows[0]
    (out / "best_config.json").write_text(json.dumps(best.config, indent=2) + "\n",
                                          encoding="utf-8")
    md += ["## Configurations", "", table(rows, keys), "",
           f"Best: trial {best.trials[0]}, dev F1 {pm(best.dev)}, test F1 {pm(best.test)} "
           f"over {len(best.runs)} seed(s). Its config is in `best_config.json` "
           "(`rnner train best_config.json` retrains it).", ""]

    imp, why = importances(study)
    md += ["## Hyperparameter importance", ""]
    if imp:
        md += ["fANOVA importance for mean dev F1 (sums to 1; conditional parameters are only "
               "scored when present in every trial).", "", "| parameter | importance |",
               "|---|---|"]
        md += [f"| {k} | {v:.3f} |" for k, v in imp.items()]
    else:
        md.append(why[0].upper() + why[1:] + ".")
    md.append("")

    plots = [("Learning curves", plot_curves(rows, out / "learning_curves.png")),
             ("Accuracy against wall time", plot_time(rows, out / "f1_vs_time.png"))]
    if _varies(rows, "train.lr"):
        plots.append(("Learning rate per optimizer", plot_lr(rows, out / "lr_by_optimizer.png")))
    if _varies(rows, "train.batch_size"):
        plots.append(("Batch size", plot_batch(rows, out / "batch_size.png")))
    if len({g.optimizer() for g in rows}) > 1:
        plots.append(("Optimizers", plot_optimizers(rows, out / "optimizers.png")))
    done = {"train.lr", "train.batch_size", "train.optimizer", "train.momentum"}
    others = [k for k in keys if k not in done and _varies(rows, k)]
    if others:
        plots.append(("Other parameters", plot_params(rows, others, logs, out / "params.png")))
    md += ["## Plots", ""]
    for title, name in plots:
        md += [f"### {title}", "", f"![{title}]({name})", ""]
    path = out / "report.md"
    path.write_text("\n".join(md), encoding="utf-8")
    return path


# --- command line -----------------------------------------------------------------------------


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="tables and plots of a sweep's study")
    p.add_argument("source", metavar="STUDY_OR_DIR",
                   help="a `rnner tune` output directory, a .db file, or a storage URL")
    p.add_argument("--study", help="study name (default: the only one, or the directory's)")
    p.add_argument("--output", help="where to write report.md and the plots "
                                    "(default: the output directory, else report-STUDY)")
    p.set_defaults(func=cmd_report)
    return p


def cmd_report(args: argparse.Namespace) -> int:
    url, name, directory = resolve(args.source, args.study)
    output = Path(args.output) if args.output else (directory or Path(f"report-{name}"))
    path = report(load_study(url, name), output, storage=url)
    print(f"wrote {path}")
    return 0


def main_report(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rnner")
    add_report_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", *(argv or [])])
    return args.func(args)
