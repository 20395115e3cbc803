"""The regression gate's rule: a baseline run against the current run, metric by metric.
Pure; :mod:`.gate` turns the verdicts into findings and tables.

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

from .calibration import adjusted, reference_rates
from .errors import UsageError
from .stats import bootstrap_ratio_ci, fisher_exact_less, mann_whitney_u, wilson_interval

#: Significance level of the speed test (one-sided Mann-Whitney U).
ALPHA = 0.01
#: Significance level of the pass-rate test (one-sided Fisher exact).
QUALITY_ALPHA = 0.05
#: Metrics gated unless told otherwise (see README for why these).
DEFAULT_METRICS: tuple[str, ...] = ("decode_tps", "ttft", "pass_rate")
#: Tolerated change per metric: relative for speed, absolute points for the pass rate.
DEFAULT_TOLERANCES: dict[str, float] = {"decode_tps": 0.10, "ttft": 0.25, "pass_rate": 0.10}
#: Tolerance of a speed metric without its own default.
FALLBACK_TOLERANCE = 0.10
#: Per-token decode figures are judged only when the answers (median of the rounds, in
#: the baseline and now) have at least this many tokens. Shorter answers give a handful
#: of decode steps whose timing moves with a scheduler tick: in the gate benchmark,
#: 8-token answers raised false alarms above 1% where 64-token answers stayed under it.
MIN_DECODE_TOKENS = 32
#: The figures that rule applies to: rates and times per decoded token.
DECODE_METRICS = frozenset({"decode_tps", "decode_tps_client", "decode_tps_engine", "tpot"})

GATE_MODES = ("enforce", "report", "off")
MISSING_MODES = ("warn", "fail")
MISMATCH_MODES = ("warn", "skip", "fail")
STALE_MODES = ("warn", "fail")

#: metric -> (display name, display scale, unit shown, higher is better)
METRICS: dict[str, tuple[str, float, str, bool]] = {
    "decode_tps": ("decode tok/s", 1.0, "", True),
    "decode_tps_client": ("decode tok/s (client)", 1.0, "", True),
    "decode_tps_engine": ("decode tok/s (engine)", 1.0, "", True),
    "prefill_tps": ("prefill tok/s", 1.0, "", True),
    "e2e_tps": ("end-to-end tok/s", 1.0, "", True),
    "normalized_tps": ("normalized tok/s", 1.0, "", True),
    "ttft": ("TTFT", 1000.0, " ms", False),
    "tpot": ("TPOT", 1000.0, " ms", False),
    "e2e": ("E2E latency", 1000.0, " ms", False),
    "pass_rate": ("pass rate", 100.0, "%", True),
}


# -- settings ---------------------------------------------------------------------------


def _bad(source: str, value: object, expected: str) -> UsageError:
    return UsageError(f"{source}: invalid value {value!r}: expected {expected}.")


def parse_fraction(source: str, value: object) -> float:
    """``10%``, ``0.1`` or ``0`` -> 0.1; a bare number of 1 or more must carry ``%``."""
    if isinstance(value, bool):
        raise _bad(source, value, "a percentage such as 10% or a fraction such as 0.1")
    text = str(value).strip()
    percent = text.endswith("%")
    try:
        number = float(text[:-1] if percent else text)
    except ValueError:
        raise _bad(source, value, "a percentage such as 10% or a fraction such as 0.1") from None
    if math.isnan(number) or number < 0:
        raise _bad(source, value, "a percentage >= 0")
    if percent:
        number /= 100.0
    elif number >= 1:
        raise _bad(source, value, f"{number:g}% written with a percent sign, or a fraction < 1")
    if number >= 1:
        raise _bad(source, value, "a tolerance below 100%")
    return number


def parse_tolerance(value: object, source: str) -> dict[str, float]:
    """``10%`` (every speed metric), ``ttft=25%,pass_rate=0``, or a dict of those.

    The key ``*`` holds a value that applies to every speed metric.
    """
    if isinstance(value, Mapping):
        items: list[tuple[str, object]] = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        items = [("*", value)]
    else:
        items = []
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, raw = part.partition("=")
            items.append((key.strip(), raw) if sep else ("*", key))
        if not items:
            raise _bad(source, value, "a tolerance such as 10% or decode_tps=10%,ttft=25%")
    out: dict[str, float] = {}
    for key, raw_value in items:
        if key != "*" and key not in METRICS:
            raise UsageError(
                f"{source}: unknown metric {key!r} in tolerance {value!r}: use one of "
                f"{', '.join(METRICS)}."
            )
        out[key] = parse_fraction(f"{source} ({key})" if key != "*" else source, raw_value)
    return out


def parse_metrics(value: object, source: str) -> tuple[str, ...]:
    """Comma-separated metric names (or a list); ``none`` gates nothing."""
    if isinstance(value, str):
        names = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, Iterable):
        names = [str(v).strip() for v in value]
    else:
        raise _bad(source, value, "metric names separated by commas, e.g. decode_tps,ttft")
    if names == ["none"]:
        return ()
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise _bad(source, value, f"metric names from {', '.join(METRICS)} (or none)")
    return tuple(dict.fromkeys(names))


def parse_min_tokens(value: object, source: str) -> int:
    """A number of tokens >= 1 (``--tokrate-min-decode-tokens``)."""
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise _bad(source, value, "a whole number of tokens >= 1, such as 32")
    return int(text)


def parse_mode(value: object, source: str, choices: Sequence[str]) -> str:
    text = str(value).strip().lower()
    if text not in choices:
        raise _bad(source, value, "one of " + ", ".join(choices))
    return text


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
    #: p are machine-adjusted (see :mod:`.calibration`); ``None`` for raw figures.
    machine_ref: tuple[float, float] | None = None

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
    relative to the reference (:mod:`.calibration`); the medians shown stay raw.
    """
    base, cur = _clean(baseline), _clean(current)
    if len(base) < 2 or len(cur) < 2 or statistics.median(base) == 0:
        return Comparison(
            metric, _median(base), _median(cur), math.nan, (math.nan, math.nan), math.nan,
            tolerance, "no data", len(base), len(cur),
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
    )


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def compare_runs(
    baseline: Mapping[str, Any], current: Mapping[str, Any], settings: GateSettings
) -> list[Comparison]:
    """Every gated metric of two stored runs (see ``baselines.run_record``); speed
    metrics machine-adjusted when both runs recorded the machine reference."""
    out = []
    base_ref, cur_ref = reference_rates(baseline), reference_rates(current)
    references = (base_ref, cur_ref) if base_ref and cur_ref else None
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
        comparison = compare_speed(metric, base or [], cur or [], tol, settings.alpha, references)
        if too_short and metric in DECODE_METRICS and comparison.verdict != "no data":
            comparison = replace(comparison, verdict="too short")
        out.append(comparison)
    return out


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
    "GATE_MODES",
    "METRICS",
    "MIN_DECODE_TOKENS",
    "MISMATCH_MODES",
    "MISSING_MODES",
    "QUALITY_ALPHA",
    "STALE_MODES",
    "Comparison",
    "GateSettings",
    "answer_tokens",
    "compare_pass_rate",
    "compare_runs",
    "compare_speed",
    "min_p_value",
    "parse_fraction",
    "parse_metrics",
    "parse_min_tokens",
    "parse_mode",
    "parse_tolerance",
    "speed_verdict",
]
