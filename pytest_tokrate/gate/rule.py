"""The regression gate's rule: a baseline run against the current run, metric by metric.
Pure; :mod:`.judge` turns the verdicts into findings and tables. The metrics it knows
are listed in :mod:`.metrics`, the parsers of its option values are in :mod:`.parsers`.

Rule for a speed metric (decode tok/s, TTFT, ...), in the metric's bad direction:

* **regression** when the change of medians is beyond the tolerance *and* the one-sided
  Mann-Whitney U test on the raw per-round samples is significant (p < ``alpha``);
* **improvement** (a stale baseline) when the same holds in the good direction;
* otherwise within noise or within tolerance.

For the pass rate (a proportion of rounds), a drop is a regression when it exceeds the
allowed drop in points *and* the one-sided Fisher exact test is significant
(p < ``quality_alpha``). The choice of ``alpha`` is checked against real A/A data in
``benchmarks/bench_gate.py`` (README, "Baselines and the regression gate").
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pytest_tokrate.core.stats import (
    bootstrap_ratio_ci,
    fisher_exact_less,
    mann_whitney_u,
    median,
    wilson_interval,
)
from pytest_tokrate.gate.metrics import (
    DEFAULT_METRICS,
    DEFAULT_TOLERANCES,
    FALLBACK_TOLERANCE,
    METRICS,
)

# The parsers lived here before :mod:`.parsers`; re-exported so that ``rule.parse_*`` and
# the deprecated alias ``pytest_tokrate.compare`` keep working.
from pytest_tokrate.gate.parsers import (
    GATE_MODES,
    MISMATCH_MODES,
    MISSING_MODES,
    STALE_MODES,
    UNSETTLED_MODES,
    TradeoffPolicy,
    parse_fraction,
    parse_metrics,
    parse_min_tokens,
    parse_mode,
    parse_tolerance,
    parse_tradeoff,
)
from pytest_tokrate.machine.calibration import adjusted, reference_key, reference_rates

#: Significance level of the speed test (one-sided Mann-Whitney U).
ALPHA = 0.01
#: Significance level of the pass-rate test (one-sided Fisher exact).
QUALITY_ALPHA = 0.05
#: Per-token decode figures are judged only when the answers (median of the rounds, in
#: the baseline and now) have at least this many tokens. Shorter answers give a handful
#: of decode steps whose timing moves with a scheduler tick: in the gate benchmark,
#: 8-token answers raised false alarms above 1% where 64-token answers stayed under it.
MIN_DECODE_TOKENS = 32
#: The figures that rule applies to: rates and times per decoded token.
DECODE_METRICS = frozenset({"decode_tps", "decode_tps_client", "decode_tps_engine", "tpot"})


# -- settings ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GateSettings:
    """How one test is gated, after precedence (CLI > marker > ini > default)."""

    mode: str = "enforce"
    metrics: tuple[str, ...] = DEFAULT_METRICS
    tolerances: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))
    fallback_tolerance: float = FALLBACK_TOLERANCE
    alpha: float = ALPHA
    quality_alpha: float = QUALITY_ALPHA
    on_missing: str = "warn"
    on_mismatch: str = "warn"
    on_stale: str = "warn"
    min_decode_tokens: int = MIN_DECODE_TOKENS
    #: Pass-rate drops accepted for a speed gain when the model changed (none by default).
    tradeoffs: tuple[TradeoffPolicy, ...] = ()
    #: ``rounds="auto"`` that reached its maximum without a settled verdict: warn or fail.
    on_unsettled: str = "warn"

    def tolerance(self, metric: str) -> float:
        if metric in self.tolerances:
            return self.tolerances[metric]
        if metric == "pass_rate":
            return DEFAULT_TOLERANCES["pass_rate"]
        return self.fallback_tolerance

    def with_tolerance(self, layer: Mapping[str, float]) -> GateSettings:
        """Apply a higher-precedence tolerance: its ``*`` resets every speed metric."""
        tolerances = dict(self.tolerances)
        fallback = self.fallback_tolerance
        if "*" in layer:
            fallback = layer["*"]
            tolerances = {k: v for k, v in tolerances.items() if k == "pass_rate"}
        tolerances.update({k: v for k, v in layer.items() if k != "*"})
        return replace(self, tolerances=tolerances, fallback_tolerance=fallback)


# -- one metric -----------------------------------------------------------------------


def _clean(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and not math.isnan(float(v))]


def min_p_value(n1: int, n2: int) -> float:
    """Smallest one-sided p-value the exact Mann-Whitney U test can give at these sizes."""
    return 1.0 / math.comb(n1 + n2, n1) if n1 and n2 else 1.0


@dataclass(frozen=True)
class Comparison:
    """One metric, baseline against current. ``change`` is relative for speed metrics
    (``current / baseline - 1``) and in points for the pass rate."""

    metric: str
    baseline: float
    current: float
    change: float
    ci: tuple[float, float]
    p_value: float
    tolerance: float
    verdict: str  # regression, improvement, ok, underpowered, too short, no data
    n_baseline: int
    n_current: int
    ci_label: str = "95% CI of change"
    #: Medians of the machine reference (baseline, current) when the change, interval and
    #: p are machine-adjusted (see :mod:`~pytest_tokrate.machine.calibration`); ``None`` for raw.
    machine_ref: tuple[float, float] | None = None
    #: The change of the raw medians shown (``current / baseline - 1``; points for the
    #: pass rate). Equal to ``change`` unless the comparison is machine-adjusted.
    raw_change: float = math.nan
    #: Why a figure is shown but not judged (its meaning changed with the configuration).
    why: str = ""

    @property
    def adjusted(self) -> bool:
        return self.machine_ref is not None

    @property
    def name(self) -> str:
        return METRICS[self.metric][0]

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric][3]


def speed_verdict(
    baseline: Sequence[float],
    current: Sequence[float],
    tolerance: float,
    higher_is_better: bool,
    alpha: float = ALPHA,
) -> tuple[str, float, float]:
    """The gate's rule on clean samples: ``(verdict, change of medians, p-value)``.

    The p-value is the one-sided Mann-Whitney U test in the direction of the change.
    """
    change = statistics.median(current) / statistics.median(baseline) - 1.0
    p_lower = mann_whitney_u(current, baseline, "less")
    p_higher = mann_whitney_u(current, baseline, "greater")
    if higher_is_better:
        worse, better, p_worse, p_better = (
            change < -tolerance,
            change > tolerance,
            p_lower,
            p_higher,
        )
    else:
        worse, better, p_worse, p_better = (
            change > tolerance,
            change < -tolerance,
            p_higher,
            p_lower,
        )
    p = p_lower if change < 0 else p_higher
    if worse and p_worse < alpha:
        return "regression", change, p
    if better and p_better < alpha:
        return "improvement", change, p
    if (worse or better) and min_p_value(len(baseline), len(current)) >= alpha:
        return "underpowered", change, p
    return "ok", change, p


def compare_speed(
    metric: str,
    baseline: Sequence[Any],
    current: Sequence[Any],
    tolerance: float,
    alpha: float = ALPHA,
    references: tuple[Sequence[float | None], Sequence[float | None]] | None = None,
) -> Comparison:
    """Compare the samples of one speed metric (see the module docstring).

    With ``references`` (the machine reference's rate in each round of the baseline and
    of the current run), the verdict, change, interval and p are computed on the figures
    relative to the reference (:mod:`pytest_tokrate.machine.calibration`); the medians
    shown stay raw.
    """
    base, cur = _clean(baseline), _clean(current)
    if len(base) < 2 or len(cur) < 2 or statistics.median(base) == 0:
        shown = [math.nan if m is None else m for m in (median(base), median(cur))]
        return Comparison(
            metric, shown[0], shown[1], math.nan, (math.nan, math.nan), math.nan,
            tolerance, "no data", len(base), len(cur), raw_change=math.nan,
        )  # fmt: skip
    higher = METRICS[metric][3]
    judged_base, judged_cur, machine = base, cur, None
    if references is not None:
        adj_base = adjusted(baseline, references[0], higher)
        adj_cur = adjusted(current, references[1], higher)
        if adj_base and adj_cur and len(adj_base) >= 2 and len(adj_cur) >= 2:
            judged_base, judged_cur = adj_base, adj_cur
            machine = (
                statistics.median(v for v in references[0] if v is not None),
                statistics.median(v for v in references[1] if v is not None),
            )
    verdict, change, p = speed_verdict(judged_base, judged_cur, tolerance, higher, alpha)
    _, low, high = bootstrap_ratio_ci(judged_cur, judged_base)
    return Comparison(
        metric,
        statistics.median(base),
        statistics.median(cur),
        change,
        (low - 1.0, high - 1.0),
        p,
        tolerance,
        verdict,
        len(judged_base),
        len(judged_cur),
        machine_ref=machine,
        raw_change=statistics.median(cur) / statistics.median(base) - 1.0,
    )


def compare_pass_rate(
    baseline: tuple[int, int],
    current: tuple[int, int],
    max_drop: float,
    alpha: float = QUALITY_ALPHA,
) -> Comparison:
    """Compare pass rates given as ``(passed, total)``; ``max_drop`` in points (0.1 = 10)."""
    (bp, bn), (cp, cn) = baseline, current
    base_rate, cur_rate = bp / bn, cp / cn
    change = cur_rate - base_rate
    p_lower = fisher_exact_less(cp, cn, bp, bn)
    p_higher = fisher_exact_less(bp, bn, cp, cn)
    low, high = wilson_interval(cp, cn)
    if change < -max_drop and p_lower < alpha:
        verdict = "regression"
    elif change > max_drop and p_higher < alpha:
        verdict = "improvement"
    else:
        verdict = "ok"
    return Comparison(
        "pass_rate",
        base_rate,
        cur_rate,
        change,
        (low, high),
        p_lower if change <= 0 else p_higher,
        max_drop,
        verdict,
        bn,
        cn,
        ci_label="95% CI (current)",
        raw_change=change,
    )


def compare_runs(
    baseline: Mapping[str, Any], current: Mapping[str, Any], settings: GateSettings
) -> list[Comparison]:
    """Every gated metric of two stored runs (see ``records.run_record``); speed
    metrics machine-adjusted when both runs recorded the machine reference."""
    out = []
    too_short = answer_tokens(baseline, current, settings.min_decode_tokens) is not None
    for metric in settings.metrics:
        tol = settings.tolerance(metric)
        if metric == "pass_rate":
            bq, cq = baseline.get("quality"), current.get("quality")
            if bq is None and cq is None:
                continue
            b = (bq["passed"], bq["total"]) if bq else (baseline["rounds"], baseline["rounds"])
            c = (cq["passed"], cq["total"]) if cq else (current["rounds"], current["rounds"])
            out.append(compare_pass_rate(b, c, tol, settings.quality_alpha))
            continue
        base = baseline["samples"].get(metric)
        cur = current["samples"].get(metric)
        if base is None and cur is None:
            continue
        references = machine_references(metric, baseline, current)
        comparison = compare_speed(metric, base or [], cur or [], tol, settings.alpha, references)
        if too_short and metric in DECODE_METRICS and comparison.verdict != "no data":
            comparison = replace(comparison, verdict="too short")
        out.append(comparison)
    return out


def machine_references(
    metric: str, baseline: Mapping[str, Any], current: Mapping[str, Any]
) -> tuple[list[float | None], list[float | None]] | None:
    """The per-round machine reference rates a metric of two runs is judged against
    (prefill rates for TTFT when both runs have them, else decode rates), or ``None``
    when either run lacks them or their references ran differently: judged raw."""
    if reference_threads(baseline) != reference_threads(current):
        return None
    key = reference_key(metric, baseline, current)
    base, cur = reference_rates(baseline, key), reference_rates(current, key)
    return (base, cur) if base and cur else None


def reference_threads(run: Mapping[str, Any]) -> Any:
    """Threads the machine reference of a run ran on: recorded since it is fixed at one;
    before that it followed the test's own (``engine_threads``). Runs whose references
    ran differently are compared raw."""
    return run.get("machine_ref_threads", run.get("engine_threads"))


def answer_tokens(
    baseline: Mapping[str, Any], current: Mapping[str, Any], minimum: int = MIN_DECODE_TOKENS
) -> float | None:
    """The answers' length (median tokens of the shorter side) when it is under
    ``minimum``, too short to judge per-token decode figures; else ``None``."""
    medians = []
    for run in (baseline, current):
        tokens = [t for t in run.get("samples", {}).get("output_tokens") or [] if t is not None]
        if tokens:
            medians.append(statistics.median(tokens))
    if medians and min(medians) < minimum:
        return float(min(medians))
    return None


__all__ = [
    "ALPHA",
    "DECODE_METRICS",
    "DEFAULT_METRICS",
    "DEFAULT_TOLERANCES",
    "FALLBACK_TOLERANCE",
    "GATE_MODES",
    "METRICS",
    "MIN_DECODE_TOKENS",
    "MISMATCH_MODES",
    "MISSING_MODES",
    "QUALITY_ALPHA",
    "STALE_MODES",
    "UNSETTLED_MODES",
    "Comparison",
    "GateSettings",
    "answer_tokens",
    "compare_pass_rate",
    "compare_runs",
    "compare_speed",
    "machine_references",
    "min_p_value",
    "parse_fraction",
    "parse_metrics",
    "parse_min_tokens",
    "parse_mode",
    "parse_tolerance",
    "parse_tradeoff",
    "speed_verdict",
]
