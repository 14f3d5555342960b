"""rnner.report.stats: Welch's test and the cells of the study pages, against hand-worked values.

Welch's t has closed-form p-values for 1 and 2 degrees of freedom, so the expected numbers below
are worked by hand, not taken from scipy: P(|T| > t) = 1 - (2/π)·atan(t) for df 1 and
1 - t/√(t² + 2) for df 2.
"""

from __future__ import annotations

import math

import pytest

from rnner.report import Comparison, compare, method_note, p_cell, p_value, pm, stats, welch_p

pytest.importorskip("scipy")


@pytest.mark.filterwarnings("ignore:Precision loss")  # scipy on b's zero spread; p is exact
def test_welch_p_matches_the_hand_worked_value_with_one_degree_of_freedom() -> None:
    # a: mean 1, s² 2, n 2; b: mean 3, s² 0, n 3. se² = 2/2 + 0/3 = 1, t = -2; Welch-Satterthwaite
    # df = 1² / ((2/2)² / 1) = 1. Student's pooled test would say t = -2.68 on 3 df, p = 0.075.
    p = welch_p([0.0, 2.0], [3.0, 3.0, 3.0])
    assert p == pytest.approx(1 - 2 / math.pi * math.atan(2), abs=1e-9)  # 0.29517
    assert p_cell(p) == "0.295"


def test_compare_gives_points_and_the_df2_p_value() -> None:
    # (0.70, 0.74) against (0.80, 0.84): s² 0.0008 each, se = 0.02828, t = -3.5355 on df 2
    c = compare([0.70, 0.74], [0.80, 0.84])
    t = 0.10 / math.sqrt(0.0008)
    assert c.diff == pytest.approx(-10.0)
    assert c.p == pytest.approx(1 - t / math.sqrt(t * t + 2), abs=1e-9)  # 0.071523
    assert c.significant is False
    assert (c.cell_diff(), c.cell_p()) == ("-10.00", "0.072")
    # the same values in points (docs/study-full/*.csv) give the same test, the diff unscaled
    c1 = compare([70.0, 74.0], [80.0, 84.0], scale=1)
    assert c1.diff == pytest.approx(-10.0) and c1.p == pytest.approx(c.p)


def test_edge_cases_of_the_test() -> None:
    assert welch_p([0.8], [0.7, 0.9]) is None  # one seed: no test
    assert compare([0.8], [0.7, 0.9]).cell_p() == "n/a"
    assert compare([], [0.7]) == Comparison(None, None, None)
    assert welch_p([0.8, 0.8], [0.7, 0.7]) == 0.0  # no spread: any difference is real
    assert welch_p([0.8, 0.8], [0.8, 0.8]) == 1.0
    assert compare([0.8, 0.8], [0.7, 0.7]).cell_p() == "<0.001 *"


def test_without_scipy_the_2_sigma_rule_stands_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats, "_scipy_stats", lambda: None)
    # pooled std = 100·sqrt((0.0008 + 0.0008) / 2) = 2.83 points; |-10| > 5.66
    assert compare([0.70, 0.74], [0.80, 0.84]).cell_p() == "> 2σ *"
    assert compare([0.70, 0.74], [0.71, 0.75]).cell_p() == "≤ 2σ"
    assert welch_p([0.70, 0.74], [0.80, 0.84]) is None
    assert method_note().startswith("scipy is not installed")


def test_cells() -> None:
    assert pm([0.80, 0.84]) == "82.00 ± 2.83"
    assert pm([80.0, 84.0], scale=1) == "82.00 ± 2.83"
    assert pm([0.9]) == "90.00" and pm([]) == "–"
    assert p_value(0.0004) == "<0.001" and p_value(0.001) == "0.001"
    assert p_cell(None) == "" and p_cell(0.049) == "0.049 *" and p_cell(0.05) == "0.050"
    assert "Welch's two-sample t-test" in method_note() and "p < 0.05" in method_note()
