"""Statistics against reference values.

The reference p-values, intervals and quantiles below were computed once with
SciPy 1.17.1 (``scipy.stats.mannwhitneyu``, ``fisher_exact``, ``binomtest(...).
proportion_ci(method="wilson")``, ``t.ppf``) and NumPy's ``percentile``; SciPy is not
a dependency of the project.
"""

from __future__ import annotations

import math

import pytest

from pytest_tokrate.core.stats import (
    Summary,
    bootstrap_ratio_ci,
    fisher_exact_less,
    mann_whitney_u,
    median_ci,
    percentile,
    t_quantile_975,
    wilson_interval,
)

# fmt: off
NORMAL_A = [
    0.3456, 0.8216, 0.3304, -1.3032, 0.9054, 0.4464, -0.537, 0.5811, 0.3646, 0.2941,
    0.0284, 0.5467, -0.7365, -0.1629, -0.4821, 0.5988, 0.0397, -0.2925, -0.7819, -0.2572,
    0.0081, -0.2756, 1.2941, 1.0067, -2.7112, -1.889, -0.1748, -0.4222, 0.2136, 0.2173,
    2.1178, -1.112, -0.3776, 2.0428, 0.6467, 0.6631, -0.514, -1.6481, 0.1675, 0.109,
]
NORMAL_B = [
    -0.7274, -0.1832, 0.428, -0.4448, 0.4017, 0.5955, 0.5356, -0.0063, 1.0937, 1.3912,
    0.8208, -0.3182, 1.2317, -0.0014, 1.3792, -0.5718, 1.4145, 0.4799, -0.7487, 0.1861,
    0.5541, 0.7728, -0.4822, -0.6074, 0.6996, 0.0333, 0.7355, 1.2595, -1.1488, 0.7544,
]
# fmt: on


@pytest.mark.parametrize(
    ("q", "expected"), [(0, 1.0), (10, 1.45), (50, 3.75), (90, 6.3), (99, 8.73), (100, 9.0)]
)
def test_percentile_matches_numpy_linear(q: float, expected: float) -> None:
    values = sorted([3.0, 1.0, 4.0, 1.5, 5.0, 9.0, 2.0, 6.0, 5.5, 3.5])
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_edge_cases() -> None:
    assert math.isnan(percentile([], 50))
    assert percentile([7.0], 99) == 7.0


@pytest.mark.parametrize(
    ("df", "exact"),
    [(1, 12.7062), (2, 4.3027), (10, 2.2281), (30, 2.0423), (31, 2.0395), (40, 2.0211),
     (60, 2.0003), (120, 1.9799), (1000, 1.9623)],
)  # fmt: skip
def test_t_quantile(df: int, exact: float) -> None:
    assert t_quantile_975(df) == pytest.approx(exact, abs=6e-4)


def test_t_quantile_undefined_below_one_degree_of_freedom() -> None:
    assert math.isnan(t_quantile_975(0))


@pytest.mark.parametrize(
    ("x", "y", "two_sided", "less", "greater"),
    [
        # small, no ties: exact distribution
        ([1.1, 2.3, 0.7, 4.4, 3.1, 2.2], [5.1, 3.9, 6.2, 4.8, 7.0, 5.5, 6.6],
         0.002331002331002331, 0.0011655011655011655, 0.9994172494172494),
        ([1.1, 2.3, 0.7, 4.4, 3.1, 6.3], [5.1, 3.9, 6.2, 4.8, 7.0, 5.5, 6.6],
         0.03496503496503496, 0.01748251748251748, 0.9889277389277389),
        # ties: normal approximation with tie and continuity corrections
        ([1, 2, 2, 3, 4, 5, 5, 6], [3, 4, 5, 5, 6, 7, 8, 8, 9],
         0.025496068631499585, 0.012748034315749793, 0.990121326400577),
        # large samples: normal approximation
        (NORMAL_A, NORMAL_B, 0.1493193811780836, 0.0746596905890418, 0.9270001625599834),
    ],
)  # fmt: skip
def test_mann_whitney_u_matches_scipy(
    x: list[float], y: list[float], two_sided: float, less: float, greater: float
) -> None:
    assert mann_whitney_u(x, y) == pytest.approx(two_sided, rel=1e-9)
    assert mann_whitney_u(x, y, "less") == pytest.approx(less, rel=1e-9)
    assert mann_whitney_u(x, y, "greater") == pytest.approx(greater, rel=1e-9)


def test_mann_whitney_u_degenerate_inputs() -> None:
    assert math.isnan(mann_whitney_u([], [1.0, 2.0]))
    assert mann_whitney_u([1.0, 1.0, 1.0], [1.0, 1.0]) == 1.0  # all tied: no evidence


@pytest.mark.parametrize(
    ("n", "ranks"), [(5, (1, 5)), (6, (1, 6)), (10, (2, 9)), (20, (6, 15)), (30, (10, 21))]
)
def test_median_ci_order_statistics(n: int, ranks: tuple[int, int]) -> None:
    # Textbook ranks of the distribution-free 95% interval of the median.
    assert median_ci([float(i) for i in range(1, n + 1)]) == (float(ranks[0]), float(ranks[1]))


def test_wilson_interval_matches_scipy() -> None:
    assert wilson_interval(8, 10) == pytest.approx((0.4901624715366418, 0.9433178485456248))
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12)
    assert high == pytest.approx(0.27753279986288926)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_fisher_exact_less_matches_scipy() -> None:
    assert fisher_exact_less(3, 10, 9, 10) == pytest.approx(0.009883305548940223)
    assert fisher_exact_less(1, 5, 4, 6) == pytest.approx(0.1753246753246753)


def test_bootstrap_ratio_is_deterministic_and_brackets_the_ratio() -> None:
    cur = [90.0, 92.0, 95.0, 91.0, 93.0, 94.0]
    base = [100.0, 101.0, 99.0, 102.0, 98.0, 100.5]
    ratio, low, high = bootstrap_ratio_ci(cur, base)
    assert ratio == pytest.approx(92.5 / 100.25)
    assert low <= ratio <= high
    assert bootstrap_ratio_ci(cur, base) == (ratio, low, high)
    assert all(math.isnan(v) for v in bootstrap_ratio_ci([], base))


def test_summary_of_known_values() -> None:
    s = Summary.of([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    assert s.n == 8
    assert s.median == 4.5
    assert s.mean == 5.0
    assert s.stdev == pytest.approx(2.138089935299395)  # sample stdev (n - 1)
    assert (s.min, s.max) == (2.0, 9.0)
    assert s.p50 == 4.5
    assert s.p90 == pytest.approx(7.6)
    assert s.p99 == pytest.approx(8.86)
    half = 2.365 * 2.138089935299395 / math.sqrt(8)  # t(0.975, 7) = 2.365
    assert s.ci95 == pytest.approx((5.0 - half, 5.0 + half))
    assert s.median_ci95 == (2.0, 9.0)  # n = 8: ranks 1 and 8
    assert s.cv == pytest.approx(2.138089935299395 / 5.0)


def test_summary_drops_missing_values() -> None:
    s = Summary.of([1.0, None, float("nan"), 3.0])
    assert s.n == 2
    assert s.values == (1.0, 3.0)
    assert s.median == 2.0


def test_empty_summary_is_nan_and_comparisons_fail_plainly() -> None:
    s = Summary.of([None, None])
    assert s.n == 0
    assert math.isnan(s.median) and math.isnan(s.p90) and math.isnan(s.cv)
    assert not s.median > 10  # an assertion on it fails instead of raising
    assert s.to_dict()["median"] is None


def test_single_value_summary_has_no_interval() -> None:
    s = Summary.of([3.5])
    assert s.median == s.mean == s.p99 == 3.5
    assert s.stdev == 0.0
    assert all(math.isnan(v) for v in s.ci95)
