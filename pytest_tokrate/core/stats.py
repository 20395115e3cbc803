"""Summaries, confidence intervals and significance tests over raw samples.

Pure arithmetic on sequences of floats: no pytest, no numpy. Missing values (``None``)
are dropped before summarising; an empty summary has ``n == 0`` and NaN statistics, so
an assertion such as ``r.decode_tps.median > 10`` fails plainly instead of raising.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

NAN = float("nan")

# Two-sided 95% quantiles of Student's t for df = 1..30; beyond that the normal value.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        return NAN
    if df <= len(_T975):
        return _T975[df - 1]
    # Cornish-Fisher expansion of t around the normal quantile, three terms: within
    # 0.0001% of the exact value for df > 30 (one term alone is off by up to 0.15%).
    z = 1.959963984540054
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of sorted values."""
    if not sorted_values:
        return NAN
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    frac = pos - lo
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac)


def median(values: Iterable[float | None]) -> float | None:
    """The median of the values present (``None`` and NaN skipped, as rounds that measured
    nothing); ``None`` when no value is left."""
    kept = sorted(v for v in values if v is not None and not math.isnan(v))
    if not kept:
        return None
    mid = len(kept) // 2
    return kept[mid] if len(kept) % 2 else (kept[mid - 1] + kept[mid]) / 2


def median_ci(sorted_values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median from order statistics.

    Uses the binomial(n, 1/2) distribution of the number of samples below the median.
    With fewer than 6 samples no interval reaches 95% coverage; the full range is
    returned then (coverage 1 - 2/2**n).
    """
    n = len(sorted_values)
    if n == 0:
        return (NAN, NAN)
    alpha = 1.0 - level
    # Largest k with P(Binom(n, 1/2) < k) <= alpha/2, i.e. interval [x_(k), x_(n-k+1)].
    cumulative = 0.0
    k = 0
    for j in range(n + 1):
        p = math.comb(n, j) / 2**n  # exact integers: 2.0**n overflows past n = 1023
        if cumulative + p > alpha / 2:
            break
        cumulative += p
        k = j + 1
    k = max(k, 1)
    return (float(sorted_values[k - 1]), float(sorted_values[n - k]))


@dataclass(frozen=True)
class Summary:
    """Statistics of one figure over the measured rounds.

    ``ci95`` is the 95% confidence interval of the mean (Student's t);
    ``median_ci95`` the distribution-free 95% interval of the median.
    """

    values: tuple[float, ...] = field(repr=False)
    n: int
    median: float
    mean: float
    stdev: float
    min: float
    max: float
    p50: float
    p90: float
    p99: float
    ci95: tuple[float, float]
    median_ci95: tuple[float, float]

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Summary:
        kept = tuple(float(v) for v in values if v is not None and not math.isnan(v))
        if not kept:
            return cls(
                values=(), n=0, median=NAN, mean=NAN, stdev=NAN, min=NAN, max=NAN,
                p50=NAN, p90=NAN, p99=NAN, ci95=(NAN, NAN), median_ci95=(NAN, NAN),
            )  # fmt: skip
        ordered = sorted(kept)
        n = len(kept)
        mean = statistics.fmean(kept)
        stdev = statistics.stdev(kept) if n > 1 else 0.0
        if n > 1:
            half = t_quantile_975(n - 1) * stdev / math.sqrt(n)
            ci = (mean - half, mean + half)
        else:
            ci = (NAN, NAN)
        return cls(
            values=kept,
            n=n,
            median=statistics.median(kept),
            mean=mean,
            stdev=stdev,
            min=ordered[0],
            max=ordered[-1],
            p50=percentile(ordered, 50),
            p90=percentile(ordered, 90),
            p99=percentile(ordered, 99),
            ci95=ci,
            median_ci95=median_ci(ordered),
        )

    @property
    def cv(self) -> float:
        """Coefficient of variation (stdev / mean); NaN when undefined."""
        if self.n < 2 or not self.mean:
            return NAN
        return self.stdev / abs(self.mean)

    def to_dict(self) -> dict[str, Any]:
        def clean(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {
            "n": self.n,
            "median": clean(self.median),
            "mean": clean(self.mean),
            "stdev": clean(self.stdev),
            "min": clean(self.min),
            "max": clean(self.max),
            "p50": clean(self.p50),
            "p90": clean(self.p90),
            "p99": clean(self.p99),
            "ci95": [clean(self.ci95[0]), clean(self.ci95[1])],
            "median_ci95": [clean(self.median_ci95[0]), clean(self.median_ci95[1])],
        }


def _rank(values: Sequence[float]) -> list[float]:
    """Average ranks (1-based) with ties sharing the mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        avg = (i + j) / 2.0 + 1.0
        for k in range(i, j + 1):
            ranks[order[k]] = avg
        i = j + 1
    return ranks


def _exact_u_distribution(n1: int, n2: int) -> list[int]:
    """Counts of each U value for samples without ties (dynamic programming)."""
    # f[i][j] = list of counts of U for sizes i, j
    table: dict[tuple[int, int], list[int]] = {}

    def counts(i: int, j: int) -> list[int]:
        if i == 0 or j == 0:
            return [1]
        key = (i, j)
        if key in table:
            return table[key]
        a = counts(i - 1, j)  # largest element from sample 2 ... shifted by j
        b = counts(i, j - 1)
        size = i * j + 1
        out = [0] * size
        for u, c in enumerate(a):
            out[u + j] += c
        for u, c in enumerate(b):
            out[u] += c
        table[key] = out
        return out

    return counts(n1, n2)


def mann_whitney_u(x: Sequence[float], y: Sequence[float], alternative: str = "two-sided") -> float:
    """p-value of the Mann-Whitney U test of ``x`` against ``y``.

    ``alternative`` is ``"two-sided"``, ``"less"`` (x tends to be smaller than y) or
    ``"greater"``. Exact when both samples are small (<= 25 each) and have no ties;
    otherwise the normal approximation with tie and continuity corrections.
    """
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        return NAN
    ranks = _rank(list(x) + list(y))
    r1 = sum(ranks[:n1])
    u1 = r1 - n1 * (n1 + 1) / 2.0  # number of (xi > yj) pairs, ties counting 1/2
    has_ties = len(set(list(x) + list(y))) < n1 + n2
    if not has_ties and n1 <= 25 and n2 <= 25:
        dist = _exact_u_distribution(n1, n2)
        total = float(sum(dist))
        u = round(u1)
        p_le = sum(dist[: u + 1]) / total  # P(U <= u)
        p_ge = sum(dist[u:]) / total  # P(U >= u)
        if alternative == "less":
            return p_le
        if alternative == "greater":
            return p_ge
        return min(1.0, 2 * min(p_le, p_ge))
    mu = n1 * n2 / 2.0
    n = n1 + n2
    tie_counts: dict[float, int] = {}
    for v in list(x) + list(y):
        tie_counts[v] = tie_counts.get(v, 0) + 1
    tie_term = sum(t**3 - t for t in tie_counts.values())
    sigma = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1))))
    if sigma == 0:
        return 1.0
    normal = statistics.NormalDist()
    if alternative == "less":
        return normal.cdf((u1 - mu + 0.5) / sigma)
    if alternative == "greater":
        return 1.0 - normal.cdf((u1 - mu - 0.5) / sigma)
    z = (abs(u1 - mu) - 0.5) / sigma
    return min(1.0, 2 * (1.0 - normal.cdf(max(z, 0.0))))


def bootstrap_ratio_ci(
    current: Sequence[float],
    baseline: Sequence[float],
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Ratio of medians ``median(current) / median(baseline)`` with a bootstrap interval.

    Returns ``(ratio, low, high)``; percentile bootstrap with a fixed seed so the same
    samples always give the same interval. NaN when either sample is empty or the
    baseline median is zero.
    """
    import random

    if not current or not baseline:
        return (NAN, NAN, NAN)
    base_median = statistics.median(baseline)
    if base_median == 0:
        return (NAN, NAN, NAN)
    ratio = statistics.median(current) / base_median
    rng = random.Random(seed)
    cur, base = list(current), list(baseline)
    ratios = []
    for _ in range(resamples):
        b = statistics.median(rng.choices(base, k=len(base)))
        if b == 0:
            continue
        ratios.append(statistics.median(rng.choices(cur, k=len(cur))) / b)
    if not ratios:
        return (ratio, NAN, NAN)
    ratios.sort()
    alpha = (1.0 - level) / 2
    return (ratio, percentile(ratios, 100 * alpha), percentile(ratios, 100 * (1 - alpha)))


def wilson_interval(successes: int, total: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (pass rate)."""
    if total <= 0:
        return (NAN, NAN)
    z = statistics.NormalDist().inv_cdf(1 - (1 - level) / 2)
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def fisher_exact_less(successes_a: int, total_a: int, successes_b: int, total_b: int) -> float:
    """One-sided Fisher exact test: p-value that sample A's rate is lower than B's.

    Sums the hypergeometric probabilities of tables at least as extreme (A having as
    few or fewer successes) given the margins.
    """
    if total_a <= 0 or total_b <= 0:
        return NAN
    k = successes_a + successes_b
    n = total_a + total_b
    denom = math.comb(n, k)
    low = max(0, k - total_b)
    p = 0.0
    for a in range(low, successes_a + 1):
        p += math.comb(total_a, a) * math.comb(total_b, k - a) / denom
    return min(1.0, p)


__all__ = [
    "Summary",
    "bootstrap_ratio_ci",
    "fisher_exact_less",
    "mann_whitney_u",
    "median",
    "median_ci",
    "percentile",
    "t_quantile_975",
    "wilson_interval",
]
