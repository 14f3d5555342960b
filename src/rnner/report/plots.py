"""A study's plots. Every figure is written through the atomic writer (`save_figure`)."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .. import files
from .study import Group

if TYPE_CHECKING:
    from matplotlib.axes import Axes

TOP_CURVES = 5


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg back end (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, dpi: int = 110) -> str:
    """Lay out, write (to a temporary name, then renamed) and close `fig`; returns the name."""
    fig.tight_layout()
    try:
        with files.atomic_open(path, "wb") as f:
            fig.savefig(f, format=path.suffix.lstrip(".") or "png", dpi=dpi)
    finally:
        pyplot().close(fig)
    return path.name


def _finish(
    fig: Any,
    ax: Axes,
    path: Path,
    xlabel: str,
    ylabel: str,
    title: str,
    grid: Literal["major", "minor", "both"] = "major",
    legend: bool = True,
) -> str:
    """Labels, grid and legend of a one-panel plot, then `save_figure`."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which=grid)
    if legend:
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def _varies(rows: list[Group], key: str) -> bool:
    return len({json.dumps(g.value(key)) for g in rows if key in g.active}) > 1


def _colors(labels: Sequence[str]) -> dict[str, Any]:
    cmap = pyplot().get_cmap("tab10")
    return {lab: cmap(i % 10) for i, lab in enumerate(sorted(set(labels)))}


def plot_curves(rows: list[Group], path: Path) -> str:
    """Dev F1 per epoch of the best configurations: mean over seeds, band from min to max."""
    plt = pyplot()
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
        ax.fill_between(
            xs,
            [100 * min(v) for v in at],
            [100 * max(v) for v in at],
            color=line.get_color(),
            alpha=0.15,
        )
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _finish(
        fig,
        ax,
        path,
        "epoch",
        "dev entity F1",
        "Learning curves of the best configurations (mean over seeds, min–max band)",
    )


def plot_time(rows: list[Group], path: Path) -> str:
    """What each configuration bought for its training time."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = [g.optimizer() for g in rows]
    by_opt = _varies(rows, "train.optimizer") or len(set(labels)) > 1
    colors = _colors(labels)
    for lab in sorted(set(labels)) if by_opt else [None]:
        sel = [g for g in rows if lab is None or g.optimizer() == lab]
        xs = [g.mean("seconds") or 0.0 for g in sel]
        ys = [100 * g.dev_mean for g in sel]
        errs = [100 * statistics.stdev(g.dev) if len(g.dev) > 1 else 0.0 for g in sel]
        ax.errorbar(
            xs,
            ys,
            yerr=errs,
            fmt="o",
            ms=4,
            capsize=2,
            label=lab,
            color=colors.get(lab, "C0") if lab else "C0",
        )
    secs = [g.mean("seconds") or 0.0 for g in rows]
    if min(secs) > 0 and max(secs) / min(secs) > 10:
        ax.set_xscale("log")
    return _finish(
        fig,
        ax,
        path,
        "wall time per seed (s)",
        "dev entity F1 (mean ± std over seeds)",
        "Accuracy against training time",
        legend=by_opt,
    )


def plot_lr(rows: list[Group], path: Path) -> str:
    """Dev F1 against learning rate, one series per optimizer (log x)."""
    plt = pyplot()
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
    return _finish(
        fig,
        ax,
        path,
        "learning rate",
        "dev entity F1 (mean ± std over seeds)",
        "Dev F1 against learning rate, per optimizer",
        grid="both",
    )


def plot_batch(rows: list[Group], path: Path) -> str:
    """Every configuration as a dot; the best one per batch size with its seed spread."""
    plt = pyplot()
    rows = [g for g in rows if "train.batch_size" in g.active]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter(
        [g.value("train.batch_size") for g in rows],
        [100 * g.dev_mean for g in rows],
        s=12,
        color="0.6",
        label="configuration (mean over seeds)",
    )
    best: dict[int, Group] = {}
    for g in rows:  # rows are sorted best first
        best.setdefault(g.value("train.batch_size"), g)
    sizes = sorted(best)
    ys = [100 * best[b].dev_mean for b in sizes]
    errs = [100 * statistics.stdev(best[b].dev) if len(best[b].dev) > 1 else 0.0 for b in sizes]
    ax.errorbar(
        sizes, ys, yerr=errs, fmt="-o", capsize=3, color="C0", label="best per batch size (± std)"
    )
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.minorticks_off()
    return _finish(
        fig, ax, path, "batch size", "dev entity F1", "Dev F1 by batch size", grid="both"
    )


def plot_optimizers(rows: list[Group], path: Path) -> str:
    """Left: every seed run per optimizer (sensitivity); right: the best configuration's seeds."""
    plt = pyplot()
    labels = sorted({g.optimizer() for g in rows})
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    every = [[100 * x for g in rows if g.optimizer() == lab for x in g.dev] for lab in labels]
    best = [[100 * x for x in next(g for g in rows if g.optimizer() == lab).dev] for lab in labels]
    for ax, data, title in (
        (left, every, "all configurations, all seeds"),
        (right, best, "best configuration of each, over seeds"),
    ):
        ax.boxplot(data)
        ax.set_xticks(range(1, len(labels) + 1), labels)
        for i, ys in enumerate(data, 1):
            ax.scatter([i] * len(ys), ys, s=10, color="C1", alpha=0.7, zorder=3)
        ax.set_title(title)
        ax.grid(alpha=0.3, axis="y")
        ax.tick_params(axis="x", rotation=30)
    left.set_ylabel("dev entity F1")
    return save_figure(fig, path)


def plot_params(rows: list[Group], keys: list[str], logs: set[str], path: Path) -> str:
    """One panel per other varied key: boxes for categories, dots for numbers."""
    plt = pyplot()
    cols = min(3, len(keys))
    nrows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        _param_panel(ax, rows, key, key in logs)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    return save_figure(fig, path)


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
        ax.set_xticks(
            range(1, len(cats) + 1), [json.loads(c) if c.startswith('"') else c for c in cats]
        )
        ax.tick_params(axis="x", rotation=30)
    ax.set_title(key, fontsize=9)
    ax.set_ylabel("dev F1")
    ax.grid(alpha=0.3)
