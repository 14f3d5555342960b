"""`rnner report`: a study's results as Markdown, CSV and plots, every file written atomically."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import files
from .plots import (
    _varies,
    plot_batch,
    plot_curves,
    plot_lr,
    plot_optimizers,
    plot_params,
    plot_time,
)
from .study import groups, importances, load_study, log_scaled, resolve, search_keys, state_counts
from .tables import pm, table, write_csv

if TYPE_CHECKING:
    import optuna


def report(study: optuna.Study, output: str | Path, storage: str = "") -> Path:
    """Write report.md, trials.csv, best_config.json and the plots; returns report.md."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    rows = groups(study)
    keys = search_keys(study)
    logs = log_scaled(study)
    counts = state_counts(study)
    sweep = study.user_attrs.get("sweep", {})
    md = [f"# Sweep report: {study.study_name}", ""]
    if storage:
        md.append(f"Storage: `{storage}`  ")
    md.append(
        "Trials: "
        + (", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "none")
        + "  "
    )
    if sweep:
        md.append(
            f"Seeds per configuration: {sweep.get('seeds')}; sampler "
            f"{sweep.get('sampler', {}).get('type')}, pruner "
            f"{sweep.get('pruner', {}).get('type')}  "
        )
    md += [
        "",
        "Dev F1 is the entity F1 at each run's best dev epoch; rows are ranked by its mean "
        "over seeds. Test F1 is taken at that same epoch and is reported only, never used "
        "to select anything. F1 in points, mean ± sample std over seeds.",
        "",
    ]
    write_csv(study, keys, out / "trials.csv")
    if not rows:
        md += ["No complete trials yet.", ""]
        path = out / "report.md"
        files.write_text(path, "\n".join(md))
        return path

    best = rows[0]
    files.write_text(out / "best_config.json", json.dumps(best.config, indent=2) + "\n")
    md += [
        "## Configurations",
        "",
        table(rows, keys),
        "",
        f"Best: trial {best.trials[0]}, dev F1 {pm(best.dev)}, test F1 {pm(best.test)} "
        f"over {len(best.runs)} seed(s). Its config is in `best_config.json` "
        "(`rnner train best_config.json` retrains it).",
        "",
    ]

    imp, why = importances(study)
    md += ["## Hyperparameter importance", ""]
    if imp:
        md += [
            "fANOVA importance for mean dev F1 (sums to 1; conditional parameters are only "
            "scored when present in every trial).",
            "",
            "| parameter | importance |",
            "|---|---|",
        ]
        md += [f"| {k} | {v:.3f} |" for k, v in imp.items()]
    else:
        md.append(why[0].upper() + why[1:] + ".")
    md.append("")

    plots = [
        ("Learning curves", plot_curves(rows, out / "learning_curves.png")),
        ("Accuracy against wall time", plot_time(rows, out / "f1_vs_time.png")),
    ]
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
    files.write_text(path, "\n".join(md))
    return path


# --- command line -----------------------------------------------------------------------------


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="tables and plots of a sweep's study")
    p.add_argument(
        "source",
        metavar="STUDY_OR_DIR",
        help="a `rnner tune` output directory, a .db file, or a storage URL",
    )
    p.add_argument("--study", help="study name (default: the only one, or the directory's)")
    p.add_argument(
        "--output",
        help="where to write report.md and the plots "
        "(default: the output directory, else report-STUDY)",
    )
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
