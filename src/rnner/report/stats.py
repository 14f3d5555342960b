"""Seed-to-seed statistics of the study pages and research/compare_seeds.py, kept here once.

F1 values come in as fractions (scale 100 turns them into points) or already in points
(scale 1, docs/study-full/*.csv); p-values are scale-free. The test is scipy's Welch t-test;
without scipy, `compare` falls back to a stated 2σ rule and `welch_p` has no value.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ALPHA = 0.05


def _scipy_stats() -> Any:
    try:
        from scipy import stats
    except ImportError:
        return None
    return stats


def method_note(alpha: float = ALPHA) -> str:
    """One sentence naming the test behind the p column, for the page's method section."""
    if _scipy_stats() is not None:
        import scipy

        return (
            f"Welch's two-sample t-test (unequal variances, two-sided, scipy "
            f"{scipy.__version__}) on the per-seed F1 of the two levels; significant when "
            f"p < {alpha}"
        )
    return (
        "scipy is not installed, so a simple rule stands in for a test: significant when "
        "|difference of means| > 2 × pooled std, pooled std = sqrt((s1² + s2²) / 2)"
    )


def pm(xs: Sequence[float], scale: float = 100) -> str:
    """Mean ± sample std of `xs` times `scale`, two decimals (no std for one value)."""
    if not xs:
        return "–"
    mean = scale * statistics.fmean(xs)
    if len(xs) < 2:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {scale * statistics.stdev(xs):.2f}"


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p of Welch's t-test (scipy); None with fewer than 2 values a side or no scipy.

    Two sides without any spread have no t statistic: any difference of means is then real
    (p 0), none is not (p 1).
    """
    if len(a) < 2 or len(b) < 2:
        return None
    if statistics.stdev(a) == 0 and statistics.stdev(b) == 0:
        return 0.0 if statistics.fmean(a) != statistics.fmean(b) else 1.0
    stats = _scipy_stats()
    if stats is None:
        return None
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return None if math.isnan(p) else p


def p_value(p: float) -> str:
    """A p-value in three decimals, small ones as "<0.001"."""
    return f"{p:.3f}" if p >= 0.001 else "<0.001"


def p_cell(p: float | None, alpha: float = ALPHA) -> str:
    """A table's p cell: blank without a test, * when p < alpha."""
    if p is None:
        return ""
    return p_value(p) + (" *" if p < alpha else "")


@dataclass
class Comparison:
    diff: float | None  # difference of the means, scaled (points)
    p: float | None  # Welch p-value (None: no test possible, or the fallback rule)
    significant: bool | None  # None: cannot tell (fewer than 2 values on a side)

    def cell_diff(self) -> str:
        return "–" if self.diff is None else f"{self.diff:+.2f}"

    def cell_p(self) -> str:
        if self.significant is None:
            return "n/a"
        if self.p is None:
            return ("> 2σ" if self.significant else "≤ 2σ") + (" *" if self.significant else "")
        return p_cell(self.p)


def compare(
    a: Sequence[float], b: Sequence[float], scale: float = 100, alpha: float = ALPHA
) -> Comparison:
    """Level `a` against reference `b`; the difference is in `scale` units (points for F1)."""
    if not a or not b:
        return Comparison(None, None, None)
    diff = scale * (statistics.fmean(a) - statistics.fmean(b))
    if len(a) < 2 or len(b) < 2:
        return Comparison(diff, None, None)
    if _scipy_stats() is None:
        sa, sb = statistics.stdev(a), statistics.stdev(b)
        pooled = scale * math.sqrt((sa**2 + sb**2) / 2)
        return Comparison(diff, None, abs(diff) > 2 * pooled)
    p = welch_p(a, b)
    if p is None:
        return Comparison(diff, None, None)
    return Comparison(diff, p, p < alpha)
