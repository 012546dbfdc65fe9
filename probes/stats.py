"""Goodness-of-fit for connection spreads, with no SciPy at run time.

`svclab probe spread` asks "did the load balancer split connections the way
it should?".  The answer is Pearson's chi-square test of the observed counts
per endpoint against expected shares (uniform by default).  The p-value needs
the chi-square survival function, i.e. the regularized upper incomplete gamma
function Q(k/2, x/2); it is implemented here the Numerical Recipes way
(series for x < a + 1, Lentz's continued fraction otherwise) so the lab
carries no SciPy dependency.  Everything here is pure.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

_EPS = 1e-15          # relative accuracy of the series / continued fraction
_TINY = 1e-300        # guards Lentz's method against division by zero
_MAX_ITERATIONS = 10_000


class StatsError(ValueError):
    """Input a statistic cannot be computed from (names what is wrong)."""


def _lower_series(a: float, x: float) -> float:
    """P(a, x) by its power series; converges fast for x < a + 1."""
    term = total = 1.0 / a
    denominator = a
    for _ in range(_MAX_ITERATIONS):
        denominator += 1.0
        term *= x / denominator
        total += term
        if abs(term) < abs(total) * _EPS:
            return total * math.exp(-x + a * math.log(x) - math.lgamma(a))
    raise StatsError(f"incomplete gamma series did not converge for a={a}, x={x}")


def _upper_continued_fraction(a: float, x: float) -> float:
    """Q(a, x) by its continued fraction (modified Lentz); for x >= a + 1."""
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_ITERATIONS):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h
    raise StatsError(f"incomplete gamma continued fraction did not converge for a={a}, x={x}")


def gammaincc(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x) = Gamma(a, x) / Gamma(a)."""
    if a <= 0:
        raise StatsError(f"gammaincc: a must be > 0, got {a}")
    if x < 0:
        raise StatsError(f"gammaincc: x must be >= 0, got {x}")
    if x == 0:
        return 1.0
    if x < a + 1.0:
        return max(0.0, 1.0 - _lower_series(a, x))
    return _upper_continued_fraction(a, x)


def chi2_sf(statistic: float, dof: int) -> float:
    """P(X >= statistic) for X ~ chi-square with dof degrees of freedom."""
    if dof < 1:
        raise StatsError(f"chi-square needs at least 1 degree of freedom, got {dof}")
    return gammaincc(dof / 2.0, max(statistic, 0.0) / 2.0)


@dataclass(frozen=True)
class ChiSquareResult:
    statistic: float
    dof: int
    p_value: float
    expected: dict[str, float]     # expected counts per category

    def to_json(self) -> dict:
        return {"statistic": self.statistic, "dof": self.dof, "p_value": self.p_value,
                "expected": dict(self.expected)}


def chi_square(observed: Mapping[str, int],
               expected_shares: Mapping[str, float] | None = None) -> ChiSquareResult:
    """Pearson's goodness-of-fit of observed counts against expected shares.

    Categories are the union of both mappings' keys (an expected category never
    observed counts 0).  Shares are normalised to sum 1; None means uniform
    over the observed categories.  A category observed but expected at share 0
    makes the fit impossible: p-value 0.  Needs at least two categories with a
    non-zero expected share.
    """
    if expected_shares is None:
        expected_shares = dict.fromkeys(observed, 1.0)
    categories = sorted(set(observed) | set(expected_shares))
    if any(observed.get(key, 0) < 0 for key in categories):
        raise StatsError(f"observed counts must be >= 0: {dict(observed)}")
    if any(expected_shares.get(key, 0.0) < 0 for key in categories):
        raise StatsError(f"expected shares must be >= 0: {dict(expected_shares)}")
    total = sum(observed.get(key, 0) for key in categories)
    share_sum = sum(expected_shares.get(key, 0.0) for key in categories)
    if total == 0:
        raise StatsError("chi-square needs at least one observation")
    if share_sum <= 0:
        raise StatsError("expected shares sum to 0")
    expected = {key: total * expected_shares.get(key, 0.0) / share_sum for key in categories}
    live = [key for key in categories if expected[key] > 0]
    if len(live) < 2:
        raise StatsError("chi-square needs at least two categories with an expected share; "
                         f"got {live}")
    dof = len(live) - 1
    if any(observed.get(key, 0) > 0 and expected[key] == 0 for key in categories):
        return ChiSquareResult(math.inf, dof, 0.0, expected)
    statistic = sum((observed.get(key, 0) - expected[key]) ** 2 / expected[key] for key in live)
    return ChiSquareResult(statistic, dof, chi2_sf(statistic, dof), expected)


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile (fraction in [0, 1]) of values; None when empty."""
    if not 0.0 <= fraction <= 1.0:
        raise StatsError(f"percentile: fraction must be in [0, 1], got {fraction}")
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]
