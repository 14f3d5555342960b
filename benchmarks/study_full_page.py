"""docs/hyperparameters-full.md from the full-data study's result files, and nothing else.

Reads docs/study-full/*.csv (one row per finished run, written by benchmarks/study_full.py),
docs/study-full/progress.json (counts and the CPU-hour estimate) and the sweep titles in
configs/study-full/; writes the page and its plots (docs/study-full/*.png). Levels with fewer
seeds than their sweep asks for are marked incomplete and never called better or worse.

    python benchmarks/study_full_page.py                  # regenerate the page
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnner import files
from rnner.report import ALPHA, p_cell, p_value, pm, pyplot, save_figure, welch_p

ROOT = Path(__file__).resolve().parents[1]
OPTIMIZER_PREFIX = "03_opt_"
GRIDS = ("01_adam_batch_lr", "02_sgd_batch_lr")


# --- reading ----------------------------------------------------------------------------------


@dataclass
class Level:
    sweep: str
    level: dict[str, Any]
    run_id: str
    seeds_wanted: int
    rows: list[dict[str, str]] = field(default_factory=list)
    label: str = ""

    @property
    def dev(self) -> list[float]:
        return [float(r["dev_f1"]) for r in self.rows]

    @property
    def test(self) -> list[float]:
        return [float(r["test_f1"]) for r in self.rows]

    @property
    def complete(self) -> bool:
        return len(self.rows) >= self.seeds_wanted

    @property
    def mean_dev(self) -> float:
        return statistics.fmean(self.dev) if self.rows else -math.inf

    def curves(self) -> list[list[float]]:
        return [
            [float(x) for x in r["dev_f1_by_epoch"].split()]
            for r in self.rows
            if r.get("dev_f1_by_epoch")
        ]

    def cpu_per_run(self) -> float | None:
        xs = [float(r["cpu_seconds"]) for r in self.rows if r.get("cpu_seconds")]
        return statistics.median(xs) if xs else None


@dataclass
class SweepInfo:
    name: str
    title: str
    seeds: int
    grid: dict[str, list[Any]]


def read_sweep_info(sweeps_dir: Path) -> dict[str, SweepInfo]:
    out = {}
    for p in sorted(sweeps_dir.glob("[0-9]*.toml")):
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
        out[p.stem] = SweepInfo(
            p.stem,
            raw.get("title", p.stem),
            len(raw.get("seeds", [1, 2, 3])),
            dict(raw.get("grid", {})),
        )
    return out


def read_levels(results: Path, info: dict[str, SweepInfo]) -> dict[str, list[Level]]:
    """Each sweep's levels in CSV order of first appearance."""
    out: dict[str, list[Level]] = {}
    for path in sorted(results.glob("*.csv")):
        name = path.stem
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        wanted = info[name].seeds if name in info else 3
        levels: dict[str, Level] = {}
        for r in rows:
            lv = json.loads(r["level"]) if r.get("level") else {}
            key = json.dumps(lv, sort_keys=True)
            if key not in levels:
                levels[key] = Level(name, lv, r["run_id"], wanted)
            levels[key].rows.append(r)
        out[name] = sorted(levels.values(), key=lambda lv: _order(lv.level))
    return out


def _order(level: dict[str, Any]) -> tuple:
    """Numbers by value, then booleans, then names alphabetically."""
    return tuple(
        (0, float(v), "")
        if isinstance(v, int | float) and not isinstance(v, bool)
        else (1, float(v), "")
        if isinstance(v, bool)
        else (2, 0.0, str(v))
        for v in level.values()
    )


def fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def short(key: str) -> str:
    return {"train.batch_size": "batch", "train.lr": "lr"}.get(key, key.split(".")[1])


# --- factors ----------------------------------------------------------------------------------


@dataclass
class Factor:
    title: str
    kind: str  # "grid" | "optimizer" | "plain"
    sweeps: list[str]
    levels: list[Level]
    default: Level | None

    @property
    def anchor(self) -> str:
        return "".join(c for c in self.title.lower().replace(" ", "-") if c.isalnum() or c == "-")


def build_factors(
    levels: dict[str, list[Level]], info: dict[str, SweepInfo], default_id: str | None
) -> list[Factor]:
    factors = []
    reference = next((lv for lv in levels.get("00_default", []) if lv.run_id == default_id), None)

    def default_of(lvs: list[Level]) -> Level | None:
        """The sweep's own default level, or else (the SGD grid) the default's 5 seeds."""
        own = next((lv for lv in lvs if lv.run_id == default_id), None)
        if own is None and reference is not None:
            ref = Level(
                reference.sweep,
                {},
                reference.run_id,
                reference.seeds_wanted,
                reference.rows,
                "configs/conll03.toml",
            )
            lvs.insert(0, ref)
            return ref
        return own

    for name in GRIDS:
        if name in levels:
            lvs = list(levels[name])  # default_of may add a reference level
            for lv in lvs:
                lv.label = ", ".join(f"{short(k)} {fmt(v)}" for k, v in lv.level.items())
            factors.append(
                Factor(
                    info[name].title if name in info else name, "grid", [name], lvs, default_of(lvs)
                )
            )
    opt = sorted(n for n in levels if n.startswith(OPTIMIZER_PREFIX))
    if opt:
        lvs = []
        for name in opt:
            for lv in levels[name]:
                title = info[name].title if name in info else name[len(OPTIMIZER_PREFIX) :]
                lv.label = f"{title}, lr {fmt(lv.level.get('train.lr'))}"
                lvs.append(lv)
        factors.append(
            Factor("Optimizer and learning rate", "optimizer", opt, lvs, default_of(lvs))
        )
    for name in sorted(levels):
        if name.startswith(("00_", "90_", OPTIMIZER_PREFIX)) or name in GRIDS:
            continue
        lvs = list(levels[name])
        for lv in lvs:
            lv.label = ", ".join(fmt(v) for v in lv.level.values()) or "base"
        factors.append(
            Factor(
                info[name].title if name in info else name, "plain", [name], lvs, default_of(lvs)
            )
        )
    return factors


def ranked(f: Factor) -> list[Level]:
    return sorted((lv for lv in f.levels if lv.complete), key=lambda lv: -lv.mean_dev)


def verdict(f: Factor) -> str:
    """One sentence a practitioner can act on, or why there is none yet."""
    done = sum(lv.complete for lv in f.levels)
    if f.default is None or not f.default.complete or done < len(f.levels):
        return (
            f"**Incomplete**: {done} of {len(f.levels)} levels have all their seeds; no "
            "conclusion yet."
        )
    best = ranked(f)[0]
    worse = [
        lv.label
        for lv in f.levels
        if lv is not f.default
        and (p := welch_p(lv.dev, f.default.dev)) is not None
        and p < ALPHA
        and lv.mean_dev < f.default.mean_dev
    ]
    tail = f" Significantly worse than the default: {', '.join(worse)}." if worse else ""
    if best is f.default:
        return f"**Keep the default ({best.label})**: no level has a higher mean dev F1.{tail}"
    diff = best.mean_dev - f.default.mean_dev
    p = welch_p(best.dev, f.default.dev)
    if p is not None and p < ALPHA:
        return (
            f"**Use {best.label}**: {diff:+.2f} dev F1 over the default "
            f"({f.default.label}), p = {p_value(p)}.{tail}"
        )
    return (
        f"**No level is significantly better than the default**: the best, {best.label}, is "
        f"{diff:+.2f} dev F1 (p = {'n/a' if p is None else p_value(p)}), within seed noise."
        f"{tail}"
    )


def edge_note(f: Factor) -> str:
    """Whether each row's best learning rate lies inside the rates tried."""
    groups: dict[str, list[Level]] = {}
    for lv in f.levels:
        if "train.lr" not in lv.level or not lv.rows:
            continue
        rest = {k: v for k, v in lv.level.items() if k != "train.lr"}
        name = (
            lv.sweep
            if f.kind == "optimizer"
            else ", ".join(f"{short(k)} {fmt(v)}" for k, v in rest.items())
        )
        groups.setdefault(name, []).append(lv)
    parts = []
    for name, lvs in groups.items():
        best = max(lvs, key=lambda lv: lv.mean_dev)
        rates = sorted(lv.level["train.lr"] for lv in lvs)
        where = "inside" if rates[0] < best.level["train.lr"] < rates[-1] else "at the edge"
        label = name[len(OPTIMIZER_PREFIX) :] if f.kind == "optimizer" else name
        parts.append(f"{label}: {fmt(best.level['train.lr'])} ({where})")
    return (
        "Best rate per row by mean dev F1 (seeds done so far): " + "; ".join(parts) + "."
        if parts
        else ""
    )


# --- tables -----------------------------------------------------------------------------------


def level_table(f: Factor) -> str:
    lines = [
        "| level | dev F1 | test F1 | Δ dev | p (dev) | Δ test | p (test) | seeds | "
        "best epoch | CPU s/run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    best = ranked(f)[0] if ranked(f) else None
    for lv in f.levels:
        label = lv.label + (" (default)" if lv is f.default else "")
        if lv is best:
            label = f"**{label}**"
        if not lv.complete:
            label += f" (incomplete: {len(lv.rows)} of {lv.seeds_wanted} seeds)"
        ref = f.default
        if lv is ref or ref is None or not ref.rows:
            cells = ["ref." if lv is ref else "", "", "ref." if lv is ref else "", ""]
        else:
            cells = [
                f"{lv.mean_dev - ref.mean_dev:+.2f}",
                p_cell(welch_p(lv.dev, ref.dev)),
                f"{statistics.fmean(lv.test) - statistics.fmean(ref.test):+.2f}",
                p_cell(welch_p(lv.test, ref.test)),
            ]
        epochs = statistics.fmean(int(r["best_epoch"]) for r in lv.rows)
        cpu = lv.cpu_per_run()
        cpu_cell = "" if cpu is None else f"{cpu:.0f}"
        lines.append(
            f"| {label} | {pm(lv.dev, scale=1)} | {pm(lv.test, scale=1)} | "
            f"{' | '.join(cells)} | {len(lv.rows)} | {epochs:.1f} | {cpu_cell} |"
        )
    return "\n".join(lines)


def grid_table(f: Factor) -> str:
    """Mean dev F1 (seeds) with batch sizes as rows and learning rates as columns."""
    grid = [lv for lv in f.levels if "train.lr" in lv.level]
    rates = sorted({lv.level["train.lr"] for lv in grid})
    batches = sorted({lv.level["train.batch_size"] for lv in grid})
    cell = {(lv.level["train.batch_size"], lv.level["train.lr"]): lv for lv in grid}
    lines = [
        "| batch \\ lr | " + " | ".join(fmt(r) for r in rates) + " |",
        "|---" * (len(rates) + 1) + "|",
    ]
    for b in batches:
        row = [f"{b}"]
        best = max((cell[b, r] for r in rates if (b, r) in cell), key=lambda lv: lv.mean_dev)
        for r in rates:
            lv = cell.get((b, r))
            if lv is None:
                row.append("")
                continue
            text = f"{lv.mean_dev:.2f} ({len(lv.rows)})"
            row.append(f"**{text}**" if lv is best else text)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# --- plots ------------------------------------------------------------------------------------


def mean_curve(lv: Level) -> list[float]:
    curves = lv.curves()
    n = min((len(c) for c in curves), default=0)
    return [statistics.fmean(c[i] for c in curves) for i in range(n)]


def plot_factor(f: Factor, path: Path) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    if f.kind in ("grid", "optimizer"):
        key = "train.batch_size" if f.kind == "grid" else None
        lines: dict[str, list[Level]] = {}
        for lv in f.levels:
            if "train.lr" not in lv.level:
                continue  # the reference level of another sweep
            name = f"batch {lv.level[key]}" if key else lv.label.split(", lr")[0]
            lines.setdefault(name, []).append(lv)
        for name, lvs in lines.items():
            lvs = sorted(lvs, key=lambda lv: lv.level["train.lr"])
            left.errorbar(
                [lv.level["train.lr"] for lv in lvs],
                [lv.mean_dev for lv in lvs],
                yerr=[statistics.stdev(lv.dev) if len(lv.rows) > 1 else 0 for lv in lvs],
                marker="o",
                capsize=3,
                label=name,
            )
        left.set_xscale("log")
        rates = sorted({lv.level["train.lr"] for lvs in lines.values() for lv in lvs})
        left.minorticks_off()
        left.set_xticks(rates, [fmt(r) for r in rates], rotation=45, fontsize=7)
        left.set_xlabel("learning rate")
        left.legend(fontsize=7)
        bests = [max(lvs, key=lambda lv: lv.mean_dev) for lvs in lines.values()]
        for name, lv in zip(lines, bests, strict=True):
            right.plot(
                range(1, len(mean_curve(lv)) + 1),
                mean_curve(lv),
                label=f"{name}, lr {fmt(lv.level['train.lr'])}",
            )
        right.set_title("learning curves of each row's best rate", fontsize=9)
    else:
        for i, lv in enumerate(f.levels):
            left.scatter([i] * len(lv.dev), lv.dev, color="C0", alpha=0.6)
            left.errorbar(
                [i],
                [lv.mean_dev],
                yerr=[statistics.stdev(lv.dev) if len(lv.rows) > 1 else 0],
                fmt="_",
                color="black",
                capsize=6,
                markersize=16,
            )
        left.set_xticks(
            range(len(f.levels)),
            [lv.label + (" (default)" if lv is f.default else "") for lv in f.levels],
            rotation=20,
            fontsize=8,
        )
        for lv in f.levels:
            right.plot(range(1, len(mean_curve(lv)) + 1), mean_curve(lv), label=lv.label)
        right.set_title("learning curves (mean over seeds)", fontsize=9)
    left.set_ylabel("dev entity F1 (best epoch)")
    right.set_xlabel("epoch")
    right.set_ylabel("dev entity F1")
    right.legend(fontsize=7)
    lows = [x for lv in f.levels for c in lv.curves() for x in c[len(c) // 2 :]]
    if lows:
        right.set_ylim(max(min(lows) - 1, 0), max(lows) + 0.5)
    fig.suptitle(f.title)
    save_figure(fig, path, dpi=90)


def plot_curves(named: list[tuple[str, Level]], path: Path, title: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, lv) in enumerate(named):
        for c in lv.curves():
            ax.plot(range(1, len(c) + 1), c, color=f"C{i}", alpha=0.3)
        ax.plot(range(1, len(mean_curve(lv)) + 1), mean_curve(lv), color=f"C{i}", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("dev entity F1")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    save_figure(fig, path, dpi=90)


# --- the page ---------------------------------------------------------------------------------


def convergence(lv: Level, epochs: int) -> str:
    """How much of the budget's gain came late: the best dev F1 within the first k epochs."""
    curves = [c for c in lv.curves() if len(c) >= epochs]
    if not curves:
        return "no default run has finished the budget yet"
    marks = sorted({k for k in (5, 10, 12, 15, epochs - 2, epochs) if 0 < k <= epochs})
    cells = [f"{k}: {statistics.fmean(max(c[:k]) for c in curves):.2f}" for k in marks]
    return (
        f"best dev F1 within the first k epochs, mean over {len(curves)} default seed(s): "
        + ", ".join(cells)
    )


def write_page(results: Path, sweeps_dir: Path, output: Path, plots: Path) -> Path:
    info = read_sweep_info(sweeps_dir)
    levels = read_levels(results, info)
    study = (
        tomllib.loads((sweeps_dir / "study.toml").read_text(encoding="utf-8"))
        if (sweeps_dir / "study.toml").is_file()
        else {}
    )
    budget = study.get("set", {})
    epochs = int(budget.get("train.epochs", 20))
    progress = {}
    if (results / "progress.json").is_file():
        progress = json.loads((results / "progress.json").read_text(encoding="utf-8"))
    default = (levels.get("00_default") or [None])[0]
    factors = build_factors(levels, info, default.run_id if default else None)
    rows = [r for lvs in levels.values() for lv in lvs for r in lv.rows]
    trained = [r for r in rows if r["trained_for"] == r["sweep"]]
    cpu_h = sum(float(r["cpu_seconds"] or 0) for r in trained) / 3600
    machines = sorted({r["machine"] for r in trained})
    conv = convergence(default, epochs) if default else "no default run has finished yet"
    rel = lambda p: Path(os.path.relpath(p, output.parent)).as_posix()  # noqa: E731
    out: list[str] = [
        "# Hyperparameter study on the full CoNLL-2003 data",
        "",
        "<!-- Generated by benchmarks/study_full_page.py from docs/study-full/*.csv; do not edit "
        "by hand: rerun the script. -->",
        "",
        "For each hyperparameter of the default model (`configs/conll03.toml`), how dev and test "
        "entity F1 change on the **full** CoNLL-2003 data when it changes, under one fixed "
        "budget for every run. The quick version on 2,000 sentences per split and 6 epochs, "
        "which only shows relative effects under a small budget, is "
        "[hyperparameters.md](hyperparameters.md) (labelled *reduced* there).",
        "",
        "## Status",
        "",
        f"- {len(trained)} runs trained ({len(rows)} result rows: a run whose configuration "
        f"belongs to several sweeps, such as the default, is trained once and counted in each); "
        f"{cpu_h:.1f} CPU-hours of training and evaluation so far.",
    ]
    if progress:
        out.append(
            f"- Left: {progress.get('runs_left', '?')} runs; estimated CPU-hours for the whole "
            f"study: ~{progress.get('cpu_hours_total_estimate', '?')} (measured CPU seconds per "
            f"epoch by batch size: {progress.get('cpu_seconds_per_epoch_by_batch') or 'none yet'}"
            f"; where a batch size has none yet, {progress.get('prior_seconds_per_epoch', '')} "
            "scaled by the measured ones; "
            f"{progress.get('note', '')}; `docs/study-full/progress.json`, "
            f"{progress.get('updated', '')})."
        )
    done = sum(lv.complete for f in factors for lv in f.levels)
    total = sum(len(f.levels) for f in factors)
    out += [
        f"- Levels with all their seeds: {done} of {total} across the factors below; the "
        "others are marked incomplete and no conclusion is drawn from them.",
        f"- Machine: {'; '.join(machines) or 'none yet'}; one torch thread per run; CPU "
        "seconds are the runs' own (user + system), so they hold on a shared machine where "
        "wall time does not.",
        "",
        "## Protocol",
        "",
        "- Data: the full CoNLL-2003 English splits (14,041 training sentences); train only on "
        "`train.txt`.",
        f"- Budget: {epochs} epochs for every run, no early stopping (`train.patience = "
        f"{budget.get('train.patience', 0)}`); the run keeps its best dev epoch and test F1 is "
        "scored once, at that epoch. Test never selects anything.",
        "- Why this budget: the default's 5 seeds, early-stopped with patience 8, had their best "
        "dev epochs at 9, 19, 19, 19 and 21 (docs/results.md), so the default is on its plateau "
        f"by epoch 20; on this study's own curves, {conv}. "
        "A fixed number of epochs also means a fixed number of passes over the data: a batch of "
        "256 takes 8 times fewer steps than one of 32, which is part of what the batch-size "
        "grid measures. Runs whose best epoch is the last are still rising and are counted "
        f"below ({_late(rows, epochs)}).",
        "- Seeds: 1, 2, 3 per level (5 for the default, the seed baseline and the combined "
        "configuration). F1 in points, mean ± sample std over seeds.",
        "- Test: Welch's two-sample t-test (unequal variances, two-sided) of each level's "
        f"per-seed F1 against the default's; * marks p < {ALPHA}. Three seeds per side only "
        "see large effects, and with this many comparisons a few chance asterisks are "
        "expected.",
        "- Design: one factor at a time around the default, except batch size x learning rate "
        "(a grid, for Adam and for plain SGD) and optimizer x learning rate. A learning-rate "
        "grid grows past its edge (factor 2 or 3, up to 2 or 3 steps) wherever a row's best "
        "rate sits at the edge, so that the best rate ends inside the range tried.",
        "",
        "Reproduce (rerunning skips every run the CSVs hold, and a run that was stopped "
        "resumes from its checkpoint in `runs/study-full/`):",
        "",
        "```sh",
        "python benchmarks/study_full.py --plan                # the queue and the estimate",
        "python benchmarks/study_full.py --lanes 2 --commit    # the runs, one core each; each "
        "result committed",
        "python benchmarks/study_full_page.py                  # this page, from docs/study-full/",
        "```",
        "",
        "Each finished run is one row of `docs/study-full/SWEEP.csv` (configuration values, "
        "seed, best epoch, dev and test F1, the dev F1 of every epoch, CPU and wall seconds, "
        "machine, commit) and its per-epoch log is in `docs/study-full/curves/`. The queue "
        "takes seed 1 of every level first, then seed 2, then seed 3, so an unfinished study "
        "already covers every level once.",
        "",
        "## Overview",
        "",
        "| factor | default level | best level (mean dev F1) | best dev F1 | Δ dev vs default | "
        "p | complete levels |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in factors:
        rk = ranked(f)
        best = rk[0] if rk else None
        d = f.default
        if best is None or d is None or not d.rows:
            cells = ["–", "–", "", ""]
        else:
            cells = [
                best.label + (" (default)" if best is d else ""),
                pm(best.dev, scale=1),
                "ref." if best is d else f"{best.mean_dev - d.mean_dev:+.2f}",
                "" if best is d else p_cell(welch_p(best.dev, d.dev)),
            ]
        out.append(
            f"| [{f.title}](#{f.anchor}) | {d.label if d else '–'} | "
            f"{' | '.join(cells)} | {sum(lv.complete for lv in f.levels)} of "
            f"{len(f.levels)} |"
        )
    out += [
        "",
        "## Sweeps",
        "",
        "Every sweep of `configs/study-full/` (levels: its grid as it stands, learning-rate "
        "grids included as they grew; rows: results recorded of those the sweep asks for).",
        "",
        "| sweep | what | grid | seeds | rows |",
        "|---|---|---|---|---|",
    ]
    for name, si in info.items():
        lvs = levels.get(name, [])
        n_levels = max(len(lvs), math.prod(len(v) for v in si.grid.values()))
        grid = "; ".join(f"`{k}` {', '.join(fmt(x) for x in v)}" for k, v in si.grid.items())
        out.append(
            f"| `{name}` | {si.title} | {grid or '(the base)'} | {si.seeds} | "
            f"{sum(len(lv.rows) for lv in lvs)} of {n_levels * si.seeds} |"
        )
    out += ["", "## Seed baseline, default and the best levels combined", ""]
    if not any(levels.get(s) for s in ("00_seed_baseline", "00_default", "90_combined")):
        out.append("No run of these has finished yet.")
    named = [
        (n, (levels.get(s) or [None])[0])
        for n, s in (
            ("seed baseline (configs/seed.toml)", "00_seed_baseline"),
            ("default (configs/conll03.toml)", "00_default"),
            ("best levels combined", "90_combined"),
        )
    ]
    named = [(n, lv) for n, lv in named if lv is not None]
    if named:
        base = named[0][1]
        out += [
            "| model | dev F1 | test F1 | Δ dev vs seed baseline | p | Δ test | p | seeds |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for n, lv in named:
            if lv is base:
                cells = "ref. |  | ref. | "
            else:
                cells = (
                    f"{lv.mean_dev - base.mean_dev:+.2f} | {p_cell(welch_p(lv.dev, base.dev))}"
                    f" | {statistics.fmean(lv.test) - statistics.fmean(base.test):+.2f} | "
                    f"{p_cell(welch_p(lv.test, base.test))}"
                )
            out.append(
                f"| {n} | {pm(lv.dev, scale=1)} | {pm(lv.test, scale=1)} | {cells} | "
                f"{len(lv.rows)} of {lv.seeds_wanted} |"
            )
        if (results / "combined.json").is_file():
            combo = json.loads((results / "combined.json").read_text(encoding="utf-8"))
            out += [
                "",
                "The combined configuration (chosen on dev, frozen in "
                "`docs/study-full/combined.json`): "
                + ", ".join(f"`{k} = {fmt(v)}`" for k, v in combo["overrides"].items())
                + ".",
            ]
        else:
            out += [
                "",
                "The combined configuration is chosen once every factor is complete (not yet).",
            ]
        plot_curves(named, plots / "baselines.png", "dev F1 by epoch (thin: seeds)")
        out += ["", f"![Seed baseline, default, combined]({rel(plots / 'baselines.png')})"]
    out += [
        "",
        "## Factors",
        "",
        "Δ: difference of the mean from the default level, in F1 points; p: Welch's test "
        "(* p < 0.05); the level in bold has the highest mean dev F1 among complete levels; "
        "best epoch: mean over seeds; CPU s/run: median.",
        "",
    ]
    for f in factors:
        out += [f"### {f.title}", ""]
        if f.kind == "grid":
            out += [
                "Mean dev F1 (seeds done) by batch size and learning rate; bold: the best "
                "rate of each batch size.",
                "",
                grid_table(f),
                "",
            ]
        out += [verdict(f), ""]
        note = edge_note(f) if f.kind in ("grid", "optimizer") else ""
        if note:
            out += [note, ""]
        out += [level_table(f), ""]
        png = plots / f"{f.sweeps[0] if len(f.sweeps) == 1 else 'optimizers'}.png"
        plot_factor(f, png)
        out += [f"![{f.title}]({rel(png)})", ""]
    files.write_text(output, "\n".join(out).rstrip() + "\n")
    return output


def _late(rows: list[dict[str, str]], epochs: int) -> str:
    full = [r for r in rows if r["trained_for"] == r["sweep"] and int(r["epochs_run"]) >= epochs]
    late = sum(int(r["best_epoch"]) >= epochs for r in full)
    return f"{late} of {len(full)} runs so far had their best dev epoch at epoch {epochs}"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=ROOT / "docs" / "study-full")
    ap.add_argument("--sweeps", type=Path, default=ROOT / "configs" / "study-full")
    ap.add_argument("--output", type=Path, default=ROOT / "docs" / "hyperparameters-full.md")
    ap.add_argument(
        "--plots",
        type=Path,
        default=None,
        help="where the PNGs go (default: the results directory)",
    )
    args = ap.parse_args(argv)
    page = write_page(args.results, args.sweeps, args.output, args.plots or args.results)
    print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
