"""Several models in one run: speed ratio and pass-rate change, per test.

When ``--tokrate-model=a,b`` runs every test once per model, each test yields one
measurement per model. The first model listed is the reference; for every other model
this module computes, per test:

- the ratio of median decode rates ``median(other) / median(reference)`` with a 95%
  percentile-bootstrap interval over the raw rounds (:func:`stats.bootstrap_ratio_ci`);
- the pass rates (Wilson 95% intervals) and the one-sided Fisher exact p-value that the
  other model passes fewer rounds than the reference (:func:`stats.fisher_exact_less`).

Pure: returns rows and per-model summaries; :mod:`pytest_tokrate.reports.tradeoff`
words them as text lines.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytest_tokrate.core.result import Measurement
from pytest_tokrate.core.stats import bootstrap_ratio_ci, fisher_exact_less, wilson_interval

#: p-value below which a lower pass rate is called significant in the verdict column.
ALPHA = 0.05


@dataclass(frozen=True)
class PassCount:
    passed: int
    total: int

    @property
    def rate(self) -> float:
        return self.passed / self.total if self.total else math.nan

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.passed, self.total)


@dataclass(frozen=True)
class TradeoffRow:
    """One test (and label) on one model, compared with the reference model."""

    test: str
    model: str
    reference: str
    ratio: float
    ratio_low: float
    ratio_high: float
    pass_ref: PassCount | None
    pass_other: PassCount | None
    p_worse: float | None
    #: Every round of each model gave one same answer (deterministic sampling).
    repeated: bool = False

    @property
    def speed_verdict(self) -> str:
        if math.isnan(self.ratio_low) or math.isnan(self.ratio_high):
            return "speed ?"
        if self.ratio_low > 1:
            return "faster"
        if self.ratio_high < 1:
            return "slower"
        return "same speed"

    @property
    def quality_verdict(self) -> str:
        if self.pass_ref is None or self.pass_other is None:
            return "no checks"
        if self.p_worse is not None and self.p_worse < ALPHA:
            return "worse answers"
        if self.pass_other.rate > self.pass_ref.rate:
            return "answers no worse"
        if self.pass_other.rate < self.pass_ref.rate:
            return "fewer passes (not significant: add rounds)"
        return "same answers"

    def to_dict(self) -> dict[str, Any]:
        def count(p: PassCount | None) -> dict[str, int] | None:
            return None if p is None else {"passed": p.passed, "total": p.total}

        return {
            "test": self.test,
            "model": self.model,
            "reference": self.reference,
            "decode_tps_ratio": _clean(self.ratio),
            "decode_tps_ratio_ci95": [_clean(self.ratio_low), _clean(self.ratio_high)],
            "pass_reference": count(self.pass_ref),
            "pass_model": count(self.pass_other),
            "p_worse": self.p_worse,
            "verdict": f"{self.speed_verdict}, {self.quality_verdict}",
        }


def comparison_key(measurement: Measurement) -> str:
    """The test id without the model's parameter, plus the run label."""
    test_id = measurement.test_id or "?"
    m = re.fullmatch(r"(?P<base>.*?)\[(?P<params>.*)\]", test_id, re.DOTALL)
    if m is not None:
        rest = _drop_param(m.group("params"), measurement.model.name)
        test_id = f"{m.group('base')}[{rest}]" if rest else m.group("base")
    return f"{test_id} ({measurement.label})" if measurement.label else test_id


def _drop_param(params: str, model: str) -> str:
    """Remove the model's id from pytest's '-'-joined parameter ids (once, whole)."""
    if params == model:
        return ""
    if params.startswith(model + "-"):
        return params[len(model) + 1 :]
    if params.endswith("-" + model):
        return params[: -len(model) - 1]
    return params.replace(f"-{model}-", "-", 1)


def _pass_count(m: Measurement) -> PassCount | None:
    quality = m.quality
    if quality is None:
        return None
    passed = getattr(quality, "passed_rounds", None)
    total = getattr(quality, "total", None)
    if not isinstance(passed, int) or not isinstance(total, int) or total <= 0:
        return None
    return PassCount(passed, total)


def compare_models(results: Sequence[Measurement], models: Sequence[str] = ()) -> list[TradeoffRow]:
    """Rows for every test measured on the reference and at least one other model.

    ``models`` gives the order (the first is the reference); by default the order in
    which models first appear in ``results``.
    """
    order = list(models) or list(dict.fromkeys(m.model.name for m in results))
    seen = {m.model.name for m in results}
    order = [name for name in order if name in seen]
    if len(order) < 2:
        return []
    reference = order[0]
    by_test: dict[str, dict[str, Measurement]] = {}
    for m in results:
        by_test.setdefault(comparison_key(m), {}).setdefault(m.model.name, m)
    rows = []
    for test, per_model in by_test.items():
        ref = per_model.get(reference)
        if ref is None:
            continue
        for name in order[1:]:
            other = per_model.get(name)
            if other is None:
                continue
            ratio, low, high = bootstrap_ratio_ci(
                list(other.decode_tps.values), list(ref.decode_tps.values)
            )
            pass_ref, pass_other = _pass_count(ref), _pass_count(other)
            p_worse = None
            if pass_ref is not None and pass_other is not None:
                p_worse = fisher_exact_less(
                    pass_other.passed, pass_other.total, pass_ref.passed, pass_ref.total
                )
            repeated = len(set(ref.texts)) <= 1 and len(set(other.texts)) <= 1
            rows.append(
                TradeoffRow(
                    test, name, reference, ratio, low, high, pass_ref, pass_other, p_worse, repeated
                )
            )
    return rows


@dataclass(frozen=True)
class ModelSummary:
    """One model against the reference over every compared test."""

    model: str
    reference: str
    #: Geometric mean of the per-test decode-rate ratios; None when no test had one.
    speed_ratio: float | None
    #: How many tests had a usable (positive, not NaN) ratio.
    ratio_tests: int
    #: Rounds pooled over the tests that had checks on both models; None without any.
    pass_ref: PassCount | None
    pass_other: PassCount | None
    #: One-sided Fisher exact p-value that the pooled pass rate is lower.
    p_worse: float | None


def summarize_models(rows: Sequence[TradeoffRow]) -> list[ModelSummary]:
    """Per model, in the order of ``rows``: mean speed ratio and pooled pass rates."""
    out = []
    for model in dict.fromkeys(r.model for r in rows):
        mine = [r for r in rows if r.model == model]
        ratios = [r.ratio for r in mine if r.ratio > 0 and not math.isnan(r.ratio)]
        speed = statistics.geometric_mean(ratios) if ratios else None
        refs = [r.pass_ref for r in mine if r.pass_ref is not None and r.pass_other is not None]
        others = [r.pass_other for r in mine if r.pass_ref is not None and r.pass_other is not None]
        ref = _pooled(refs) if refs else None
        oth = _pooled(others) if others else None
        p_worse = None
        if ref is not None and oth is not None:
            p_worse = fisher_exact_less(oth.passed, oth.total, ref.passed, ref.total)
        out.append(ModelSummary(model, mine[0].reference, speed, len(ratios), ref, oth, p_worse))
    return out


def _pooled(counts: Sequence[PassCount]) -> PassCount:
    return PassCount(sum(c.passed for c in counts), sum(c.total for c in counts))


def _clean(x: float) -> float | None:
    return None if math.isnan(x) else x


__all__ = [
    "ModelSummary",
    "PassCount",
    "TradeoffRow",
    "compare_models",
    "comparison_key",
    "summarize_models",
]
