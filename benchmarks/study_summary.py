"""Write docs/hyperparameters.md from the reduced study's sweeps (benchmarks/run_study.sh).

    python benchmarks/study_summary.py [--runs runs/study] [--output docs/hyperparameters.md]

Every number in the page comes from the studies under --runs (one `rnner tune` output directory
per sweep of configs/sweeps/study/); nothing is typed in by hand. Sweeps named `NN_...` with the
same NN form one factor; `00_default` (the default config, the reference level of every factor)
and `00_seed_baseline` (configs/seed.toml) are compared separately. Figures go to a `study/`
folder next to the page.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnner import files
from rnner.report import (
    ALPHA,
    Comparison,
    Group,
    compare,
    groups,
    load_study,
    merge,
    method_note,
    optimizer_label,
    pm,
    pyplot,
    resolve,
    save_figure,
    search_keys,
    state_counts,
)

DEFAULT = "00_default"
SEED_BASELINE = "00_seed_baseline"
OPTIMIZER_ORDER = [
    "sgd",
    "sgd+momentum",
    "sgd+nesterov",
    "adam",
    "adamw",
    "nadam",
    "rmsprop",
    "adagrad",
]
TITLES = {  # a factor's title, by its first searched key
    "train.lr": "Optimizer and learning rate",
    "train.optimizer": "Optimizer",
    "train.batch_size": "Batch size",
    "model.dropout": "Dropout",
    "model.hidden_size": "Hidden size (per direction)",
    "model.layers": "Recurrent layers",
    "model.cell": "Recurrent cell",
    "model.char_encoder": "Character encoder",
    "model.output": "Output layer (CRF or softmax)",
    "data.scheme": "Tag scheme",
    "model.embeddings": "Word embeddings",
    "train.clip": "Gradient clipping (max norm; 0 = off)",
    "model.word_dropout": "Word dropout (training tokens replaced by UNK)",
}


# --- reading the studies ----------------------------------------------------------------------


@dataclass
class Sweep:
    name: str
    directory: Path
    keys: list[str]
    rows: list[Group]
    counts: dict[str, int]
    sweep: dict[str, Any]
    span: tuple[dt.datetime, dt.datetime] | None  # first trial start, last trial end

    def grid_size(self) -> int:
        """Configurations the sweep's grid holds (0: not a grid of choices)."""
        n = 1
        for param in self.sweep.get("search", []):
            if "choices" not in param:
                return 0
            n *= len(param["choices"])
        return n if self.sweep.get("search") else 0


def read_sweeps(runs: Path) -> dict[str, Sweep]:
    out = {}
    for d in sorted(p for p in runs.iterdir() if (p / "study.db").is_file()):
        url, name, _ = resolve(str(d))
        study = load_study(url, name)
        counts = state_counts(study)
        starts, ends = [], []
        for t in study.get_trials(deepcopy=False):
            if t.datetime_start and t.datetime_complete:
                starts.append(t.datetime_start)
                ends.append(t.datetime_complete)
        span = (min(starts), max(ends)) if starts else None
        out[d.name] = Sweep(
            d.name,
            d,
            search_keys(study),
            groups(study),
            counts,
            study.user_attrs.get("sweep", {}),
            span,
        )
    return out


# --- factors ----------------------------------------------------------------------------------


@dataclass
class Level:
    group: Group
    label: str
    is_default: bool
    dev_cmp: Comparison = field(default_factory=lambda: Comparison(None, None, None))
    test_cmp: Comparison = field(default_factory=lambda: Comparison(None, None, None))


@dataclass
class Factor:
    number: str
    sweeps: list[str]
    keys: list[str]
    levels: list[Level]

    @property
    def title(self) -> str:
        return TITLES.get(self.keys[0], ", ".join(self.keys)) if self.keys else self.number

    @property
    def slug(self) -> str:
        return (
            self.sweeps[0]
            if len(self.sweeps) == 1
            else f"{self.number}_" + ("optimizer_lr" if self.is_lr else "factor")
        )

    @property
    def is_lr(self) -> bool:
        return "train.lr" in self.keys

    @property
    def default(self) -> Level | None:
        return next((lv for lv in self.levels if lv.is_default), None)

    def best(self) -> Level:
        return max(self.levels, key=lambda lv: lv.group.dev_mean)


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def level_label(g: Group, keys: list[str], lr_factor: bool) -> str:
    if lr_factor:
        return f"{optimizer_label(g.config)}, lr {fmt(g.value('train.lr'))}"
    return ", ".join(fmt(g.value(k)) for k in keys)


def _sort_key(lv: Level, keys: list[str], lr_factor: bool) -> tuple:
    g = lv.group
    if lr_factor:
        opt = optimizer_label(g.config)
        rank = OPTIMIZER_ORDER.index(opt) if opt in OPTIMIZER_ORDER else len(OPTIMIZER_ORDER)
        return (rank, g.value("train.lr"))
    vals = [g.value(k) for k in keys]
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
        return (0, *vals)
    return (0 if lv.is_default else 1, lv.label)  # categories: the default first


def build_factors(sweeps: dict[str, Sweep]) -> list[Factor]:
    base = sweeps.get(DEFAULT)
    default_rows = base.rows if base else []
    by_number: dict[str, list[str]] = {}
    for name in sweeps:
        number = name.split("_", 1)[0]
        if number != "00" and number.isdigit():
            by_number.setdefault(number, []).append(name)
    factors = []
    for number, names in sorted(by_number.items()):
        keys = list(dict.fromkeys(k for n in names for k in sweeps[n].keys))
        lr_factor = "train.lr" in keys
        rows = merge([g for n in names for g in sweeps[n].rows] + default_rows)
        ref = merge(default_rows)[0] if default_rows else None
        levels = []
        for g in rows:
            is_default = ref is not None and g.config_id == ref.config_id
            label = level_label(g, keys, lr_factor) + (" (default)" if is_default else "")
            levels.append(Level(g, label, is_default))
        levels.sort(key=lambda lv: _sort_key(lv, keys, lr_factor))
        f = Factor(number, names, keys, levels)
        if f.default is not None:
            for lv in levels:
                if not lv.is_default:
                    lv.dev_cmp = compare(lv.group.dev, f.default.group.dev)
                    lv.test_cmp = compare(lv.group.test, f.default.group.test)
        factors.append(f)
    return factors


def recommendation(f: Factor) -> str:
    best, ref = f.best(), f.default
    if ref is None:
        return (
            f"Best level by mean dev F1: {best.label} ({pm(best.group.dev)}); the default "
            "level has no results, so nothing is compared."
        )
    worse = [lv.label for lv in f.levels if lv.dev_cmp.significant and (lv.dev_cmp.diff or 0) < 0]
    worse_note = f" Significantly worse than the default: {', '.join(worse)}." if worse else ""
    if best.is_default:
        others = [lv for lv in f.levels if not lv.is_default]
        if any(lv.dev_cmp.significant is None for lv in others):
            tail = " (too few seeds to test the differences)"
        else:
            tail = ""
        return (
            f"**Keep the default ({best.label.removesuffix(' (default)')})**: it has the "
            f"highest mean dev F1 of the {len(f.levels)} levels{tail}.{worse_note}"
        )
    c = best.dev_cmp
    if c.significant:
        return (
            f"**Use {best.label}**: {c.cell_diff()} dev F1 points over the default "
            f"({_p_words(c)}).{worse_note}"
        )
    if c.significant is None:
        return (
            f"Best level by mean dev F1: {best.label} ({c.cell_diff()} over the default); "
            f"too few seeds to test the difference.{worse_note}"
        )
    return (
        f"**No significant difference**: the best level by mean dev F1, {best.label}, is "
        f"{c.cell_diff()} points over the default ({_p_words(c)}), within seed-to-seed "
        f"noise; the default can stay.{worse_note}"
    )


def _p_words(c: Comparison) -> str:
    if c.p is None:
        return "the 2σ rule"
    return f"p = {c.p:.3f}" if c.p >= 0.001 else "p < 0.001"


# --- plots ------------------------------------------------------------------------------------


def _curve(g: Group) -> tuple[list[int], list[float]]:
    curves = [r["dev_curve"] for r in g.runs if r.get("dev_curve")]
    if not curves:
        return [], []
    n = max(len(c) for c in curves)
    mean = [100 * statistics.fmean(c[e] for c in curves if len(c) > e) for e in range(n)]
    return list(range(1, n + 1)), mean


def plot_factor(f: Factor, path: Path) -> None:
    """Left: dev and test F1 per level (mean ± std, seeds as dots); right: mean dev curves."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [3, 2]})
    if f.is_lr:
        _lr_panel(left, f)
        curves = {}
        for lv in f.levels:  # each optimizer's best rate
            opt = optimizer_label(lv.group.config)
            if opt not in curves or lv.group.dev_mean > curves[opt].group.dev_mean:
                curves[opt] = lv
        shown = list(curves.values())
    else:
        _level_panel(left, f)
        shown = f.levels
    for lv in shown:
        xs, ys = _curve(lv.group)
        right.plot(xs, ys, marker="o", ms=3, label=lv.label, lw=2.2 if lv.is_default else 1.2)
    right.set_xticks(range(1, 1 + max((len(_curve(lv.group)[0]) for lv in shown), default=1)))
    right.set_xlabel("epoch")
    right.set_ylabel("dev entity F1 (mean over seeds)")
    right.set_title(
        "Dev F1 per epoch" + (" (best rate of each optimizer)" if f.is_lr else ""), fontsize=10
    )
    right.grid(alpha=0.3)
    right.legend(fontsize=7)
    fig.suptitle(f.title)
    save_figure(fig, path, dpi=100)


def _dots(ax: Any, x: float, ys: Sequence[float], color: Any) -> None:
    ax.scatter([x] * len(ys), [100 * y for y in ys], s=10, color=color, alpha=0.6, zorder=3)


def _level_panel(ax: Any, f: Factor) -> None:
    xs = list(range(len(f.levels)))
    for offset, split, color in ((-0.12, "dev", "C0"), (0.12, "test", "C1")):
        means, errs = [], []
        for x, lv in zip(xs, f.levels, strict=True):
            vals = lv.group.dev if split == "dev" else lv.group.test
            means.append(100 * statistics.fmean(vals) if vals else math.nan)
            errs.append(100 * statistics.stdev(vals) if len(vals) > 1 else 0.0)
            _dots(ax, x + offset, vals, color)
        ax.errorbar(
            [x + offset for x in xs],
            means,
            yerr=errs,
            fmt="o",
            capsize=4,
            color=color,
            label=f"{split} F1 (mean ± std)",
        )
    ax.set_xticks(xs, [lv.label for lv in f.levels], rotation=20, fontsize=8)
    ax.set_ylabel("entity F1")
    ax.set_title("F1 per level (dots: seeds)", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)


def _lr_panel(ax: Any, f: Factor) -> None:
    opts = sorted(
        {optimizer_label(lv.group.config) for lv in f.levels},
        key=lambda o: OPTIMIZER_ORDER.index(o) if o in OPTIMIZER_ORDER else 99,
    )
    for i, opt in enumerate(opts):
        sel = sorted(
            (lv for lv in f.levels if optimizer_label(lv.group.config) == opt),
            key=lambda lv: lv.group.value("train.lr"),
        )
        lrs = [lv.group.value("train.lr") for lv in sel]
        means = [100 * lv.group.dev_mean for lv in sel]
        errs = [
            100 * statistics.stdev(lv.group.dev) if len(lv.group.dev) > 1 else 0.0 for lv in sel
        ]
        color = f"C{i % 10}"
        ax.errorbar(lrs, means, yerr=errs, fmt="-o", capsize=3, color=color, label=opt)
        for lv in sel:
            _dots(ax, lv.group.value("train.lr"), lv.group.dev, color)
        for lv in sel:
            if lv.is_default:
                ax.scatter(
                    [lv.group.value("train.lr")],
                    [100 * lv.group.dev_mean],
                    s=160,
                    facecolors="none",
                    edgecolors="k",
                    zorder=4,
                    label="default",
                )
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("dev entity F1 (mean ± std; dots: seeds)")
    ax.set_title("Dev F1 against learning rate, per optimizer", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)


def plot_baselines(rows: list[tuple[str, Group]], path: Path) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = list(range(len(rows)))
    for offset, split, color in ((-0.12, "dev", "C0"), (0.12, "test", "C1")):
        means, errs = [], []
        for x, (_, g) in zip(xs, rows, strict=True):
            vals = g.dev if split == "dev" else g.test
            means.append(100 * statistics.fmean(vals) if vals else math.nan)
            errs.append(100 * statistics.stdev(vals) if len(vals) > 1 else 0.0)
            _dots(left, x + offset, vals, color)
        left.errorbar(
            [x + offset for x in xs],
            means,
            yerr=errs,
            fmt="o",
            capsize=4,
            color=color,
            label=f"{split} F1",
        )
    left.set_xticks(xs, [name for name, _ in rows], fontsize=8)
    left.set_ylabel("entity F1 (mean ± std; dots: seeds)")
    left.grid(alpha=0.3, axis="y")
    left.legend(fontsize=8)
    for name, g in rows:
        ex, ey = _curve(g)
        right.plot(ex, ey, marker="o", ms=3, label=name)
    right.set_xticks(range(1, 1 + max((len(_curve(g)[0]) for _, g in rows), default=1)))
    right.set_xlabel("epoch")
    right.set_ylabel("dev entity F1 (mean over seeds)")
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    fig.suptitle("Seed baseline, default and the study's best configuration")
    save_figure(fig, path, dpi=100)


# --- the page ---------------------------------------------------------------------------------


def machine(runs: Path) -> dict[str, str]:
    """What run_study.sh recorded when the study started; else this machine, now."""
    info: dict[str, str] = {}
    path = runs / "machine.txt"
    if path.is_file():
        resumed = []
        for line in path.read_text(encoding="utf-8").splitlines():
            k, _, v = line.partition("=")
            if k == "resumed":
                resumed.append(v)
            elif k:
                info.setdefault(k, v)
        if resumed:
            info["resumed"] = ", ".join(resumed)
        info["source"] = f"recorded by run_study.sh in {path}"
        return info
    model, cpus = platform.processor() or "unknown", 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("unknown", ""):
                model = line.split(":", 1)[1].strip()
            cpus += line.startswith("processor")
    except OSError:
        pass
    info.update(
        cpu_model=model,
        cpus=str(cpus or os.cpu_count() or "?"),
        source="read when this page was generated (no machine.txt in the runs)",
    )
    return info


def timings(runs: Path) -> dict[str, int]:
    """Wall seconds per sweep, summed over every pass of run_study.sh (its timings.tsv)."""
    path = runs / "timings.tsv"
    out: dict[str, int] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines()[1:]:
            parts = line.split("\t")
            if len(parts) >= 4 and parts[3].isdigit():
                out[parts[1]] = out.get(parts[1], 0) + int(parts[3])
    return out


def _setting(rows: Sequence[Group], section: str, key: str) -> str:
    vals = sorted({json.dumps(g.config.get(section, {}).get(key)) for g in rows})
    return " / ".join(str(json.loads(v)) for v in vals)


def level_table(f: Factor) -> str:
    head = [
        "level",
        "dev F1",
        "test F1",
        "Δ dev",
        "p (dev)",
        "Δ test",
        "p (test)",
        "seeds",
        "best epoch",
        "s/run",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    best = f.best()
    for lv in f.levels:
        g = lv.group
        label = f"**{lv.label}**" if lv is best else lv.label
        ref = lv.is_default
        cells = [
            label,
            pm(g.dev),
            pm(g.test),
            "ref." if ref else lv.dev_cmp.cell_diff(),
            "" if ref else lv.dev_cmp.cell_p(),
            "ref." if ref else lv.test_cmp.cell_diff(),
            "" if ref else lv.test_cmp.cell_p(),
            str(len(g.dev)),
            _num(g.mean("best_epoch"), 1),
            _num(g.mean("seconds"), 0),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _drift_note() -> list[str]:
    """Say so when the default config changed after the study's base was made from it.

    Both configs are resolved first, so a key that one file leaves at its built-in default
    still counts.
    """
    from rnner.config import Config

    root = Path(__file__).resolve().parents[1]
    base = Config.load(root / "configs/sweeps/study/base.toml").to_dict()
    default = Config.load(root / "configs/conll03.toml").to_dict()
    budget = {("data", "max_sentences"), ("train", "epochs"), ("train", "patience")}
    differ = [
        f"`{sec}.{k}` ({base[sec][k]!r} here, {v!r} there)"
        for sec, table in default.items()
        for k, v in table.items()
        if base[sec][k] != v and (sec, k) not in budget
    ]
    if not differ:
        return []
    return [
        "- Note: besides the subset and budget, the study's base differs from the current "
        "`configs/conll03.toml` in " + ", ".join(differ) + ". The tables of those factors "
        'compare both levels directly; their "(default)" is the study\'s base.'
    ]


def _num(v: float | None, digits: int) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def write_page(runs: Path, output: Path, command: str) -> Path:
    sweeps = read_sweeps(runs)
    if not sweeps:
        raise SystemExit(f"{runs}: no sweep studies (run benchmarks/run_study.sh first)")
    figures = output.parent / "study"
    figures.mkdir(parents=True, exist_ok=True)
    for old in figures.glob("*.png"):
        old.unlink()
    rel = os.path.relpath(figures, output.parent)
    factors = build_factors(sweeps)
    all_rows = [g for s in sweeps.values() for g in s.rows]
    runs_done = sum(len(g.dev) for g in all_rows)
    run_seconds = sum(r.get("seconds", 0.0) for g in all_rows for r in g.runs)
    default = merge(sweeps[DEFAULT].rows)[0] if DEFAULT in sweeps and sweeps[DEFAULT].rows else None
    seed = (
        merge(sweeps[SEED_BASELINE].rows)[0]
        if SEED_BASELINE in sweeps and sweeps[SEED_BASELINE].rows
        else None
    )
    info = machine(runs)
    walls = timings(runs)
    seeds = sorted({r["seed"] for g in all_rows for r in g.runs})
    threads = sorted({r.get("threads") for g in all_rows for r in g.runs if r.get("threads")})
    short = {
        n: f"{len(s.rows)} of {s.grid_size()}"
        for n, s in sweeps.items()
        if s.grid_size() and len(s.rows) < s.grid_size()
    }
    expected = sorted(
        p.stem
        for p in (Path(__file__).resolve().parent.parent / "configs" / "sweeps" / "study").glob(
            "[0-9]*.toml"
        )
    )
    missing = [n for n in expected if n not in sweeps]

    md = [
        "# Hyperparameter study (reduced, one factor at a time)",
        "",
        f"<!-- Generated by benchmarks/study_summary.py from {runs} on "
        f"{dt.datetime.now().isoformat(timespec='seconds')}; do not edit by hand: rerun "
        "the script. -->",
        "",
    ]
    md += [
        "This page measures, for each hyperparameter of the default model "
        "(`configs/conll03.toml`), how dev and test entity F1 change when that one "
        "hyperparameter changes and everything else stays at the default. It is a **reduced** "
        "study: the full-data sweeps in `configs/sweeps/` (see [tuning.md](tuning.md)) need "
        "hundreds of CPU-hours, so every run here trains on a subset for a few epochs. Read "
        "the numbers as *relative* effects under a small, fixed training budget, not as "
        "CoNLL-2003 results. **The full-data study** (every factor on the whole of "
        "CoNLL-2003, 20 epochs a run) is [hyperparameters-full.md](hyperparameters-full.md).",
        "",
    ]

    # setup
    ref_rows = [default] if default else all_rows
    md += [
        "## Setup",
        "",
        f"- Data: the first {_setting(ref_rows, 'data', 'max_sentences')} sentences of "
        "*each* CoNLL-2003 split (train, dev and test are all cut by "
        "`data.max_sentences`), so dev and test F1 are on those subsets.",
        f"- Budget: {_setting(ref_rows, 'train', 'epochs')} epoch(s), no early stopping "
        f"(patience {_setting(ref_rows, 'train', 'patience')}); each run keeps its best dev "
        "epoch and reports test F1 at that epoch (test F1 never selects anything).",
        f"- Seeds: {', '.join(map(str, seeds))} for every configuration; F1 is shown in "
        "points as mean ± sample std over seeds.",
        "- Design: one factor at a time around the default config "
        "(`configs/sweeps/study/base.toml` = the default model on the subset). The default "
        "level is trained once (`00_default`) and is the reference of every factor.",
        *_drift_note(),
        f"- Machine: {info.get('cpu_model', '?')}, {info.get('cpus', '?')} CPU cores "
        f"({info.get('source', '')}); torch {info.get('torch', '?')}; "
        f"{', '.join(map(str, threads)) or '?'} torch thread(s) per run, "
        f"{info.get('lanes', '?')} runs in parallel.",
        f"- Size: {len(sweeps)} sweeps, {sum(len(s.rows) for s in sweeps.values())} "
        f"configurations, {runs_done} runs; {run_seconds / 3600:.2f} core-hours of "
        "training and evaluation"
        + (
            f", {sum(walls.values()) / 60:.0f} minutes of sweep wall time summed over lanes"
            if walls
            else ""
        )
        + ".",
        f"- Significance: {method_note()}. With {len(seeds)} seed(s) per level such a test "
        "only sees large effects, and with this many comparisons a few chance "
        f"'significant' results at {ALPHA} are expected; treat single asterisks with care.",
    ]
    if info.get("commit"):
        md.append(
            f"- Code: commit `{info['commit']}`; study started {info.get('started', '?')}"
            + (f", resumed {info['resumed']}" if info.get("resumed") else "")
            + "."
        )
    spans = [s.span for s in sweeps.values() if s.span]
    took = ""
    if spans:
        minutes = (max(e for _, e in spans) - min(b for b, _ in spans)).total_seconds() / 60
        took = (
            f" It took {minutes:.0f} minute(s) here, from the first trial's start to the "
            "last one's end" + (" (across resumptions)" if info.get("resumed") else "") + "."
        )
    md += [
        "",
        f"Reproduce (rerunning resumes; the script ends by regenerating this page).{took}",
        "",
        "```sh",
        command,
        "```",
        "",
        "Each sweep's own report (every configuration, learning curves, `trials.csv`) is in "
        f"`{runs}/NAME/report.md` after a run.",
        "",
    ]
    if missing or short:
        md.append(
            "**Incomplete:** "
            + "; ".join(
                ([f"not run yet: {', '.join(missing)}"] if missing else [])
                + (
                    [
                        "configurations with results: "
                        + ", ".join(f"{n} ({c})" for n, c in short.items())
                    ]
                    if short
                    else []
                )
            )
            + ". Rerun the command below to finish the study."
        )
        md.append("")

    # overview
    md += [
        "## Overview",
        "",
        "Per factor: the level with the highest mean dev F1 and its difference from the "
        "default level (* = significant, see above).",
        "",
        "| factor | default level | best level | best dev F1 | Δ dev vs default | p |",
        "|---|---|---|---|---|---|",
    ]
    for f in factors:
        best, ref = f.best(), f.default
        md.append(
            "| "
            + " | ".join(
                [
                    f"[{f.title}](#{_anchor(f.title)})",
                    ref.label.removesuffix(" (default)") if ref else "–",
                    best.label,
                    pm(best.group.dev),
                    "ref." if best.is_default else best.dev_cmp.cell_diff(),
                    "" if best.is_default else best.dev_cmp.cell_p(),
                ]
            )
            + " |"
        )
    md.append("")

    # baselines
    md += ["## Seed baseline, default and the best configuration", ""]
    if default is None or seed is None:
        md += [
            "Not available: "
            + ", ".join(n for n, g in ((SEED_BASELINE, seed), (DEFAULT, default)) if g is None)
            + " has no results yet.",
            "",
        ]
    else:
        cands = [(f, lv) for f in factors for lv in f.levels if not lv.is_default]
        top = max(cands, key=lambda c: c[1].group.dev_mean, default=None)
        rows = [("seed baseline", seed), ("default", default)]
        if top is not None and top[1].group.dev_mean > default.dev_mean:
            rows.append((f"best: {top[0].title.lower()} = {top[1].label}", top[1].group))
        md += [
            "The seed model (`configs/seed.toml`: random 100-d embeddings, one "
            "unidirectional LSTM of 100, softmax, Adam 0.001, IOB2, no clipping) against the "
            "default and against the best single-factor change found here, on the same "
            "subset and budget. Differences are against the seed baseline.",
            "",
            "| model | dev F1 | test F1 | Δ dev | p (dev) | Δ test | p (test) | s/run |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, g in rows:
            if g is seed:
                cells = [name, pm(g.dev), pm(g.test), "ref.", "", "ref.", ""]
            else:
                dc, tc = compare(g.dev, seed.dev), compare(g.test, seed.test)
                cells = [
                    name,
                    pm(g.dev),
                    pm(g.test),
                    dc.cell_diff(),
                    dc.cell_p(),
                    tc.cell_diff(),
                    tc.cell_p(),
                ]
            md.append("| " + " | ".join(cells + [_num(g.mean("seconds"), 0)]) + " |")
        tune_gain = compare(default.dev, seed.dev)
        tested = _p_words(tune_gain) if tune_gain.significant is not None else "untested"
        further = (
            "No single-factor change beat the default's mean dev F1."
            if len(rows) == 2
            else f"The best single-factor change moves it by "
            f"{compare(rows[-1][1].dev, seed.dev).cell_diff()} points; the best levels of "
            "different factors were not combined and retrained here, so their effects "
            "need not add up."
        )
        md += [
            "",
            f"Tuning (the default config) moves the seed baseline by "
            f"{tune_gain.cell_diff()} dev F1 points ({tested}). {further}",
            "",
        ]
        plot_baselines(rows, figures / "baselines.png")
        md += [f"![Seed baseline, default and best]({rel}/baselines.png)", ""]

    # factors
    md += [
        "## Factors",
        "",
        "Δ: difference of mean F1 from the default level, in points; p: its test (* = "
        "significant). The level in bold has the highest mean dev F1. s/run: wall seconds "
        "per run on one core (the first run of each sweep also pays a few seconds of "
        "warm-up).",
        "",
    ]
    for f in factors:
        name = f"{f.slug}.png"
        plot_factor(f, figures / name)
        sweeps_used = ", ".join(f"`{n}`" for n in f.sweeps)
        md += [
            f"### {f.title}",
            "",
            f"Sweeps: {sweeps_used}, with the default from `{DEFAULT}`.",
            "",
            level_table(f),
            "",
            recommendation(f),
            "",
            f"![{f.title}]({rel}/{name})",
            "",
        ]
        if f.is_lr:
            md += [_optimizer_notes(f), ""]
    md += [
        "## Limits",
        "",
        "- One factor at a time: interactions (for example batch size with learning rate, or "
        "dropout with hidden size) are not measured; the full sweeps in `configs/sweeps/` "
        "sample them jointly.",
        "- The fixed, short budget favours settings that learn fast: slower optimizers, "
        "large batches (fewer updates per epoch at the same learning rate) and higher "
        "dropout may be ranked below where they would end with full data and early "
        "stopping.",
        "- Dev and test are subsets of their splits, so F1 differences of a point or less "
        "are within the noise of the test set as well as of the seeds.",
        "",
    ]
    output.parent.mkdir(parents=True, exist_ok=True)
    files.write_text(output, "\n".join(md))
    return output


def _optimizer_notes(f: Factor) -> str:
    """Each optimizer's best rate, and whether that rate sits on the edge of its grid."""
    parts = []
    opts: dict[str, list[Level]] = {}
    for lv in f.levels:
        opts.setdefault(optimizer_label(lv.group.config), []).append(lv)
    for opt, levels in opts.items():
        levels = sorted(levels, key=lambda lv: lv.group.value("train.lr"))
        best = max(levels, key=lambda lv: lv.group.dev_mean)
        edge = ""
        if len(levels) > 2 and best in (levels[0], levels[-1]):
            edge = " (edge of its grid: the optimum may lie beyond)"
        parts.append(f"{opt} {fmt(best.group.value('train.lr'))}{edge}")
    return "Best learning rate per optimizer (by mean dev F1): " + "; ".join(parts) + "."


def _anchor(title: str) -> str:
    keep = "".join(c for c in title.lower() if c.isalnum() or c in " -")
    return keep.replace(" ", "-")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="runs/study", help="the study's output root")
    p.add_argument("--output", default="docs/hyperparameters.md", help="the page to write")
    p.add_argument(
        "--command",
        default="benchmarks/run_study.sh",
        help="the command shown as the way to reproduce the study (it runs this script at its end)",
    )
    args = p.parse_args(argv)
    path = write_page(Path(args.runs), Path(args.output), args.command)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
