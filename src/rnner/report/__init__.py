"""Reports on sweeps: `rnner report`, and the helpers that benchmarks/study_summary.py uses.

- `study`: reading a study, trials pooled into configurations (`Group`), importances.
- `tables`: F1 cells, the configurations table, trials.csv.
- `plots`: the figures, written through the atomic writer.
- `page`: report.md with its files, and the `rnner report` command line.
"""

from .page import add_report_parser, cmd_report, main_report, report
from .plots import pyplot, save_figure
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
from .tables import fmt, pm, table, write_csv

__all__ = [
    "Group", "ReportError", "add_report_parser", "cmd_report", "fmt", "groups", "importances",
    "load_study", "log_scaled", "main_report", "merge", "optimizer_label", "pm", "pyplot",
    "report", "resolve", "save_figure", "search_keys", "state_counts", "table", "write_csv",
]
