"""Reports on sweeps: `rnner report`, and the helpers the study pages and compare_seeds use.

- `stats`: seed-to-seed statistics: mean ± std cells, Welch's test, p cells.
- `study`: reading a study, trials pooled into configurations (`Group`), importances.
- `tables`: F1 cells, the configurations table, trials.csv.
- `plots`: the figures, written through the atomic writer.
- `page`: report.md with its files, and the `rnner report` command line.
"""

from .page import add_report_parser, cmd_report, main_report, report
from .plots import pyplot, save_figure
from .stats import ALPHA, Comparison, compare, method_note, p_cell, p_value, pm, welch_p
from .study import (
    Group,
    ReportError,
    groups,
    importances,
    load_study,
    log_scaled,
    merge,
    optimizer_label,
    resolve,
    search_keys,
    state_counts,
)
from .tables import fmt, table, write_csv

__all__ = [
    "ALPHA",
    "Comparison",
    "Group",
    "ReportError",
    "add_report_parser",
    "cmd_report",
    "compare",
    "fmt",
    "groups",
    "importances",
    "load_study",
    "log_scaled",
    "main_report",
    "merge",
    "method_note",
    "optimizer_label",
    "p_cell",
    "p_value",
    "pm",
    "pyplot",
    "report",
    "resolve",
    "save_figure",
    "search_keys",
    "state_counts",
    "table",
    "welch_p",
    "write_csv",
]
