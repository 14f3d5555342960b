"""A study as text: F1 cells, the configurations table and trials.csv."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import files
from .stats import pm
from .study import Group, optimizer_label

if TYPE_CHECKING:
    import optuna

MAX_ROWS = 100


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def table(rows: list[Group], keys: list[str]) -> str:
    head = [
        "#",
        "trials",
        *keys,
        "dev F1",
        "test F1",
        "seeds",
        "best epoch",
        "epochs",
        "s/seed",
    ]  # "–": the key was not sampled (its condition did not hold)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, g in enumerate(rows[:MAX_ROWS], 1):
        cells = [str(i), " ".join(str(n) for n in g.trials)]
        cells += [fmt(g.value(k)) if k in g.active else "–" for k in keys]
        cells += [
            pm(g.dev),
            pm(g.test),
            str(len(g.runs)),
            fmt(g.mean("best_epoch")),
            fmt(g.mean("epochs_run")),
            fmt(g.mean("seconds")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if any(k not in g.active for g in rows for k in keys):
        lines.append(
            "\n–: not sampled in that configuration (its `when` condition did not "
            "hold), so the base config's value applies."
        )
    if len(rows) > MAX_ROWS:
        lines.append(f"\n{len(rows) - MAX_ROWS} more configurations are in trials.csv.")
    return "\n".join(lines)


def write_csv(study: optuna.Study, keys: list[str], path: Path) -> None:
    """One row per seed run of every trial, pruned and failed ones included."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(
        [
            "trial",
            "state",
            "config_id",
            "seed",
            *keys,
            "optimizer_label",
            "dev_f1",
            "test_f1",
            "best_epoch",
            "epochs_run",
            "seconds",
            "peak_rss_mb",
        ]
    )
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        cfg = a.get("config", {})
        vals = [cfg.get(k.split(".")[0], {}).get(k.split(".", 1)[1]) for k in keys]
        for r in a.get("runs") or [{}]:
            w.writerow(
                [
                    t.number,
                    t.state.name,
                    a.get("config_id", ""),
                    r.get("seed", ""),
                    *vals,
                    optimizer_label(cfg) if cfg else "",
                    r.get("dev_f1", ""),
                    r.get("test_f1", ""),
                    r.get("best_epoch", ""),
                    r.get("epochs_run", ""),
                    r.get("seconds", ""),
                    r.get("peak_rss_mb", ""),
                ]
            )
    files.write_bytes(path, buf.getvalue().encode("utf-8"))  # csv's own \r\n, kept as is
