"""Chi-square goodness-of-fit and its hand-written p-value (no SciPy at run time)."""
from __future__ import annotations

import math

import pytest

from probes.stats import StatsError, chi2_sf, chi_square, gammaincc, percentile

# (statistic, dof, survival function) from published tables / closed forms;
# digits cross-checked with scipy.stats.chi2.sf.
KNOWN_SF = [
    (3.841458820694124, 1, 0.05),                     # the 95 % critical value
    (6.635, 1, 0.009999419574042536),
    (10.0, 5, 0.07523524614651217),
    (0.5, 3, 0.9188914116546758),
    (50.0, 2, math.exp(-25.0)),                       # dof 2: sf = exp(-x/2)
    (200.0, 10, 1.6139305336977317e-37),
    (30.0, 30, 0.4656537089440098),
    (1000.0, 1000, 0.49405285382923964),              # large dof
    (1100.0, 1000, 0.014614408126295192),
    (5000.0, 4000, 1.6633156038804178e-25),
    (1e-6, 1, 0.9992021155721779),
]


@pytest.mark.parametrize("statistic,dof,expected", KNOWN_SF)
def test_chi2_sf_matches_reference_values(statistic, dof, expected):
    assert chi2_sf(statistic, dof) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_chi2_sf_edges():
    assert chi2_sf(0.0, 3) == 1.0
    assert chi2_sf(2500.0, 3) == pytest.approx(0.0, abs=1e-300)
    assert gammaincc(1.0, 2.0) == pytest.approx(math.exp(-2.0), rel=1e-12)  # Q(1,x)=e^-x
    with pytest.raises(StatsError, match="degree of freedom"):
        chi2_sf(1.0, 0)
    with pytest.raises(StatsError, match="a must be > 0"):
        gammaincc(0.0, 1.0)


def test_chi2_sf_agrees_with_scipy_when_installed():
    stats = pytest.importorskip("scipy.stats")
    for dof in (1, 2, 3, 4, 7, 20, 99, 500, 5000):
        for statistic in (0.01, 0.5, dof * 0.5, dof - 1.0, dof, dof + 1.0, dof * 1.5,
                          dof * 3.0 + 40):
            if statistic <= 0:
                continue
            ours, theirs = chi2_sf(statistic, dof), float(stats.chi2.sf(statistic, dof))
            assert ours == pytest.approx(theirs, rel=1e-8, abs=1e-290), (statistic, dof)


def test_uniform_split_passes_and_skewed_split_fails():
    uniform = chi_square({"a": 1010, "b": 990, "c": 1003, "d": 997})
    assert uniform.dof == 3 and uniform.p_value > 0.5
    skewed = chi_square({"a": 2800, "b": 400, "c": 400, "d": 400})
    assert skewed.p_value < 1e-100
    assert skewed.statistic == pytest.approx(4 * 1000 * (1.8 ** 2 + 3 * 0.6 ** 2) / 4)


def test_expected_shares_are_normalised_and_unseen_categories_count_zero():
    fit = chi_square({"a": 700, "b": 300}, {"a": 7, "b": 3})
    assert fit.statistic == pytest.approx(0.0) and fit.p_value == pytest.approx(1.0)
    assert fit.expected == {"a": 700.0, "b": 300.0}
    missing = chi_square({"a": 500, "b": 500}, {"a": 1, "b": 1, "c": 1})
    assert missing.dof == 2 and missing.expected["c"] == pytest.approx(1000 / 3)
    assert missing.p_value < 1e-50


def test_observation_where_none_is_expected_is_impossible():
    fit = chi_square({"a": 500, "b": 499, "rogue": 1}, {"a": 1, "b": 1})
    assert fit.p_value == 0.0 and math.isinf(fit.statistic) and fit.dof == 1


def test_chi_square_rejects_what_it_cannot_test():
    with pytest.raises(StatsError, match="two categories"):
        chi_square({"only": 10})
    with pytest.raises(StatsError, match="at least one observation"):
        chi_square({"a": 0, "b": 0})
    with pytest.raises(StatsError, match=">= 0"):
        chi_square({"a": -1, "b": 3})


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([], 0.5) is None
