"""Adaptive rounds: is the gate's verdict settled yet? Pure.

With ``rounds="auto"`` the runner measures a round, asks :func:`settle` whether every
gated metric is decided, and stops when it is (or at the maximum). Looking after every
round and stopping on what is seen inflates the error rates of a test made for one look:
ten looks at 1% each can raise a false alarm on up to 10% of unchanged runs. So the
significance level is *spent* across the looks (the alpha-spending approach of group
sequential designs, Lan and DeMets 1983, *Biometrika* 70(3):659-663), here with linear
spending in equal parts, :func:`look_alpha` = ``alpha / looks``: by the union (Bonferroni)
bound, the chance that *any* look crosses is at most the sum of the per-look levels, that
is ``alpha``, whatever the correlation between looks and whatever the stopping rule.
That bound is conservative for looks that share most of their data (a constant level
calibrated to their correlation, Pocock 1977, *Biometrika* 64(2):191-199, would be
larger), but it needs no joint distribution of the rank statistics, no table per
baseline size, and the benchmark measured no false alarm in the runs the gate judges.

Libraries looked at: scipy has no sequential rank test; ``confseq`` (Howard and
Ramdas; quantile confidence sequences) is C++ with Boost and marked not stable;
``expectation`` and ``ville`` (e-values, confidence sequences for means) have no
two-sample rank test against a fixed baseline; gsDesign and rpact are R. None fits a
pure-Python plugin, so the method is written here on :mod:`pytest_tokrate.core.stats`.

At each look, for each gated speed metric (machine-adjusted as in :mod:`.rule`):

* **regression** / **improvement**: the gate's own rule (:func:`.rule.speed_verdict`:
  change of medians beyond the tolerance and one-sided Mann-Whitney p < the per-look
  level);
* **ok**: equivalence shown, two one-sided Mann-Whitney tests (Schuirmann's TOST, 1987,
  *J. Pharmacokin. Biopharm.* 15(6):657-680): the current rounds lie significantly above
  the baseline scaled by ``1 - tolerance`` and significantly below it scaled by
  ``1 + tolerance``, each at ``look_alpha(OK_ERROR, ...)``. This is the futility boundary
  of a group sequential design, with its own error spent (beta spending): over all looks,
  a change *exactly at* the tolerance is passed as "ok" at most ``OK_ERROR`` (20%) of the
  time, a change beyond it less often (a 15% drop against the 10% tolerance: 0.3% of
  judged simulated runs, ``benchmarks/bench_adaptive.py --real --trials 2000``).
  Spending 1% there too made an unchanged test measure about twice as many rounds
  (median 11 instead of 5 in that benchmark, ``ok_error=0.01``), while the gate at fixed
  rounds passes a change at the tolerance about half the time. An "ok" never raises a
  false alarm: those stay at most ``alpha`` over all looks;
* otherwise **open**: measure another round.

A metric the gate does not judge (decode figures of answers shorter than
``min_decode_tokens``, a figure neither run has) is settled and left out of the verdicts.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_tokrate.core.stats import fisher_exact_less, mann_whitney_u, median_ci
from pytest_tokrate.gate.metrics import METRICS
from pytest_tokrate.gate.rule import (
    DECODE_METRICS,
    GateSettings,
    answer_tokens,
    machine_references,
    speed_verdict,
)
from pytest_tokrate.machine.calibration import adjusted

#: Fewest rounds before the first look. Three rounds can show "ok"; a regression needs
#: more: against a 40-round baseline, ``core.stats.mann_whitney_u`` uses its normal
#: approximation (exact only up to 25 per side), whose smallest p at 3 and 4 rounds
#: (0.0023, 0.0006) stays above 1% / 18 looks, so a slowdown is first caught at 5.
MIN_ROUNDS = 3
#: Overall error of an "ok" (within tolerance) verdict for a change exactly at the
#: tolerance, spent over the looks as ``alpha`` is (see the module docstring).
OK_ERROR = 0.20
#: Precision target of a first recording: the median's 95% interval within +-2%.
PRECISION = 0.02

OPEN, OK, REGRESSION, IMPROVEMENT = "open", "ok", "regression", "improvement"


def _check_rounds(min_rounds: int, max_rounds: int) -> None:
    if not 2 <= min_rounds <= max_rounds:
        raise ValueError(
            f"adaptive rounds: invalid minimum {min_rounds!r} and maximum {max_rounds!r}: "
            "expected 2 <= minimum <= maximum, e.g. a minimum of 3 and "
            "--tokrate-max-rounds=20."
        )


def looks(min_rounds: int, max_rounds: int) -> int:
    """Interim looks of an adaptive run: one after each round from the minimum to the
    maximum, both included."""
    _check_rounds(min_rounds, max_rounds)
    return max_rounds - min_rounds + 1


def look_alpha(alpha: float, min_rounds: int, max_rounds: int) -> float:
    """The significance level of each look: ``alpha / looks`` (linear alpha spending,
    Bonferroni), so that over all looks together the level stays at most ``alpha``."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"adaptive rounds: invalid alpha {alpha!r}: expected 0 < alpha < 1.")
    return alpha / looks(min_rounds, max_rounds)


@dataclass(frozen=True)
class Look:
    """What one look found: whether to stop, each gated metric's verdict (``regression``,
    ``improvement``, ``ok`` or ``open``), and one line saying why."""

    settled: bool
    verdicts: dict[str, str]
    reason: str


def within(
    baseline: Sequence[float], current: Sequence[float], tolerance: float, alpha: float
) -> bool:
    """Equivalence shown: ``current`` lies significantly (one-sided Mann-Whitney, level
    ``alpha`` each) above ``baseline * (1 - tolerance)`` and below ``baseline * (1 +
    tolerance)``. The tolerance is relative, so the direction of better does not matter."""
    low = [b * (1.0 - tolerance) for b in baseline]
    high = [b * (1.0 + tolerance) for b in baseline]
    return (
        mann_whitney_u(current, low, "greater") < alpha
        and mann_whitney_u(current, high, "less") < alpha
    )


def speed_look(
    baseline: Sequence[float],
    current: Sequence[float],
    tolerance: float,
    higher_is_better: bool,
    alpha: float,
    ok_alpha: float | None = None,
) -> str:
    """One speed metric at one look, on clean (machine-adjusted) samples: regression or
    improvement at ``alpha``, ok at ``ok_alpha`` (``alpha`` when not given)."""
    verdict = speed_verdict(baseline, current, tolerance, higher_is_better, alpha)[0]
    if verdict in (REGRESSION, IMPROVEMENT):
        return verdict
    ok = within(baseline, current, tolerance, alpha if ok_alpha is None else ok_alpha)
    return OK if ok else OPEN


def pass_rate_look(
    baseline: tuple[int, int], current: tuple[int, int], max_drop: float, alpha: float
) -> str:
    """The pass rate at one look (``(passed, total)``; ``max_drop`` in points).

    * **regression** (**improvement**): the rate moved beyond ``max_drop`` and the one-sided
      Fisher exact test is significant at the per-look level, as the fixed gate's rule;
      false alarms stay at most the quality alpha over all looks.
    * **open**: the rate moved beyond ``max_drop`` but not significantly yet.
    * **ok**: the current rate lies within ``max_drop`` of the baseline's. This is *not*
      a proof that the true rate does: 20 rounds cannot show a rate within 10 points of
      100% at any useful level (0.9**20 = 12%). It is the same statement the fixed gate
      makes when it passes a pass rate, so the pass rate never holds a run open on
      rounds that all agree with the baseline, and a drop seen keeps it measuring until
      the drop is significant or the maximum is reached.
    """
    (bp, bn), (cp, cn) = baseline, current
    change = cp / cn - bp / bn
    if change < -max_drop:
        return REGRESSION if fisher_exact_less(cp, cn, bp, bn) < alpha else OPEN
    if change > max_drop:
        return IMPROVEMENT if fisher_exact_less(bp, bn, cp, cn) < alpha else OPEN
    return OK


def _values(values: Iterable[Any] | None) -> list[float]:
    return [float(v) for v in values or () if v is not None and not math.isnan(float(v))]


def _rounds(run: Mapping[str, Any]) -> int:
    """Rounds measured so far: the record's count, else its longest list of samples."""
    rounds = run.get("rounds")
    if isinstance(rounds, int) and not isinstance(rounds, bool):
        return rounds
    return max((len(v) for v in run.get("samples", {}).values() if isinstance(v, list)), default=0)


def _judged(
    baseline: Mapping[str, Any], current: Mapping[str, Any], metric: str, machine: bool
) -> tuple[list[float], list[float]]:
    """A speed metric's samples as the gate judges them: relative to the machine reference
    the gate uses for it (:func:`.rule.machine_references`: prefill rates for TTFT, decode
    rates otherwise) when both runs have it, else raw."""
    base, cur = baseline["samples"].get(metric) or [], current["samples"].get(metric) or []
    references = machine_references(metric, baseline, current) if machine else None
    if references is not None:
        higher = METRICS[metric][3]
        adj_base = adjusted(base, references[0], higher)
        adj_cur = adjusted(cur, references[1], higher)
        if adj_base and adj_cur and len(adj_base) >= 2 and len(adj_cur) >= 2:
            return adj_base, adj_cur
    return _values(base), _values(cur)


def _pass_counts(run: Mapping[str, Any]) -> tuple[int, int]:
    quality = run.get("quality")
    if quality:
        return int(quality["passed"]), int(quality["total"])
    return _rounds(run), _rounds(run)  # no checks: every round passed, as compare_runs


def _verdicts(
    baseline: Mapping[str, Any],
    current: Mapping[str, Any],
    settings: GateSettings,
    levels: tuple[float, float, float],
) -> tuple[dict[str, str], list[str]]:
    """Each gated metric's verdict at this look, and the metrics left ungated (why);
    ``levels``: the per-look levels of speed changes, of "ok", of the pass rate."""
    alpha, ok_alpha, quality_alpha = levels
    machine = True  # each metric's references are checked in _judged
    too_short = answer_tokens(baseline, current, settings.min_decode_tokens) is not None
    verdicts: dict[str, str] = {}
    ungated: list[str] = []
    for metric in settings.metrics:
        tolerance = settings.tolerance(metric)
        if metric == "pass_rate":
            if baseline.get("quality") is not None or current.get("quality") is not None:
                verdicts[metric] = pass_rate_look(
                    _pass_counts(baseline), _pass_counts(current), tolerance, quality_alpha
                )
            continue
        if metric in DECODE_METRICS and too_short:
            ungated.append(f"{METRICS[metric][0]} not gated (answers too short)")
            continue
        base, cur = _judged(baseline, current, metric, machine)
        if len(base) < 2 or len(cur) < 2 or statistics.median(base) == 0:
            if base or cur:
                ungated.append(f"{METRICS[metric][0]} not gated (no data)")
            continue
        verdicts[metric] = speed_look(base, cur, tolerance, METRICS[metric][3], alpha, ok_alpha)
    return verdicts, ungated


def settle(
    baseline: Mapping[str, Any],
    current: Mapping[str, Any],
    settings: GateSettings,
    min_rounds: int = MIN_ROUNDS,
    max_rounds: int = 20,
    ok_error: float = OK_ERROR,
) -> Look:
    """The look after the current run's latest round (both runs as
    :func:`pytest_tokrate.gate.records.run_record` stores them).

    Settled when every gated metric is decided (see the module docstring), or as soon as
    one is a regression: the test fails whatever the others would say, so further rounds
    change nothing. Never settled before ``min_rounds`` rounds. Speed changes are tested
    at ``look_alpha(settings.alpha, ...)``, "ok" at ``look_alpha(ok_error, ...)``, the
    pass rate at ``look_alpha(settings.quality_alpha, ...)``.
    """
    n = _rounds(current)
    if n < min_rounds:
        looks(min_rounds, max_rounds)  # a bad minimum or maximum is an error at every look
        return Look(False, {}, f"{n} of at least {min_rounds} rounds measured")
    speed, ok, quality = (
        look_alpha(a, min_rounds, max_rounds)
        for a in (settings.alpha, ok_error, settings.quality_alpha)
    )
    verdicts, ungated = _verdicts(baseline, current, settings, (speed, ok, quality))
    still_open = [METRICS[m][0] for m, v in verdicts.items() if v == OPEN]
    regressed = [METRICS[m][0] for m, v in verdicts.items() if v == REGRESSION]
    named = ", ".join(f"{METRICS[m][0]} {v}" for m, v in verdicts.items()) or "nothing judged"
    notes = "".join(f"; {u}" for u in ungated)
    if regressed or not still_open:
        return Look(True, verdicts, f"settled after {n} rounds: {named}{notes}")
    if n >= max_rounds:
        return Look(
            False,
            verdicts,
            f"not settled in {n} rounds (the maximum): {', '.join(still_open)} still open"
            f" ({named}){notes}",
        )
    return Look(False, verdicts, f"open after {n} rounds: {', '.join(still_open)}{notes}")


def precise(
    current: Mapping[str, Any],
    metrics: Sequence[str],
    target: float = PRECISION,
    min_rounds: int = MIN_ROUNDS,
) -> bool:
    """Without a baseline (a first recording): ``True`` when every gated speed metric's
    median has a distribution-free 95% interval (:func:`~pytest_tokrate.core.stats.median_ci`)
    within ``+-target`` of the median, on the raw samples, after at least ``min_rounds``
    rounds. Decode figures of answers too short to be gated, and figures the run has no
    samples of, need no precision; the pass rate is not a speed metric and is skipped.
    With fewer than 6 samples the interval is the full range, so a few rounds that agree
    to within the target are enough only when they really do."""
    if _rounds(current) < min_rounds:
        return False
    too_short = answer_tokens(current, current) is not None
    for metric in metrics:
        if metric == "pass_rate" or metric not in METRICS:
            continue
        if metric in DECODE_METRICS and too_short:
            continue
        values = sorted(_values(current.get("samples", {}).get(metric)))
        if not values:
            continue
        middle = statistics.median(values)
        low, high = median_ci(values)
        bound = target * abs(middle)
        if middle - low > bound or high - middle > bound:
            return False
    return True


__all__ = [
    "IMPROVEMENT",
    "MIN_ROUNDS",
    "OK",
    "OK_ERROR",
    "OPEN",
    "PRECISION",
    "REGRESSION",
    "Look",
    "look_alpha",
    "looks",
    "pass_rate_look",
    "precise",
    "settle",
    "speed_look",
    "within",
]
