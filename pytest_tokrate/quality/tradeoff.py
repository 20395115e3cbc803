"""Several models in one run: speed ratio and pass-rate change, per test.

When ``--tokrate-model=a,b`` runs every test once per model, each test yields one
measurement per model. The first model listed is the reference; for every other model
this module computes, per test:

- the ratio of median decode rates ``median(other) / median(reference)`` with a 95%
  percentile-bootstrap interval over the raw rounds (:func:`stats.bootstrap_ratio_ci`);
- the pass rates (Wilson 95% intervals) and the one-sided Fisher exact p-value that the
  other model passes fewer rounds than the reference (:func:`stats.fisher_exact_less`).

Pure: returns rows and plain text lines; the glue prints them.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .result import Measurement
from .stats import bootstrap_ratio_ci, fisher_exact_less, wilson_interval

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


def tradeoff_lines(rows: Sequence[TradeoffRow]) -> list[str]:
    """The trade-off table, then one summary line per model."""
    if not rows:
        return []
    from .report import table

    header = ["test", "model", "decode tok/s ratio [95% CI]", "pass rate (ref -> model)",
              "change", "p(worse)", "verdict"]  # fmt: skip
    body = []
    for r in rows:
        body.append(
            [
                r.test,
                r.model,
                _ratio(r.ratio, r.ratio_low, r.ratio_high),
                _passes(r.pass_ref, r.pass_other),
                _change(r.pass_ref, r.pass_other),
                "-" if r.p_worse is None else f"{r.p_worse:.3g}",
                f"{r.speed_verdict}, {r.quality_verdict}",
            ]
        )
    lines = table(body, header)
    reference = rows[0].reference
    lines.append(
        f"reference: {reference} (the first --tokrate-model); ratio > 1 means faster than the "
        "reference; p(worse): one-sided Fisher exact test of a lower pass rate"
    )
    if any(r.repeated and r.p_worse is not None for r in rows):
        lines.append(
            "note: some tests gave one same answer in every round (temperature 0, fixed seed): "
            "their rounds are repeats, not independent trials, so p(worse) overstates the "
            "evidence; judge quality across more prompts"
        )
    lines.extend(summary_lines(rows))
    return lines


def summary_lines(rows: Sequence[TradeoffRow]) -> list[str]:
    """Per model: geometric mean of the speed ratios, pooled pass rates."""
    out = []
    for model in dict.fromkeys(r.model for r in rows):
        mine = [r for r in rows if r.model == model]
        ratios = [r.ratio for r in mine if r.ratio > 0 and not math.isnan(r.ratio)]
        speed = f"{statistics.geometric_mean(ratios):.2f}x" if ratios else "-"
        judged = [r for r in mine if r.pass_ref is not None and r.pass_other is not None]
        quality = "no quality checks"
        if judged:
            ref = PassCount(sum(r.pass_ref.passed for r in judged if r.pass_ref),
                            sum(r.pass_ref.total for r in judged if r.pass_ref))  # fmt: skip
            oth = PassCount(sum(r.pass_other.passed for r in judged if r.pass_other),
                            sum(r.pass_other.total for r in judged if r.pass_other))  # fmt: skip
            p = fisher_exact_less(oth.passed, oth.total, ref.passed, ref.total)
            quality = (
                f"pass rate {_pct(ref.rate)} -> {_pct(oth.rate)} "
                f"({ref.passed}/{ref.total} -> {oth.passed}/{oth.total} rounds, "
                f"p(worse) {p:.3g})"
            )
        out.append(
            f"{model} vs {mine[0].reference}: decode speed {speed} (geometric mean over "
            f"{len(ratios)} test(s)), {quality}"
        )
    return out


def _ratio(ratio: float, low: float, high: float) -> str:
    if math.isnan(ratio):
        return "-"
    if math.isnan(low) or math.isnan(high):
        return f"{ratio:.2f}x"
    return f"{ratio:.2f}x [{low:.2f}, {high:.2f}]"


def _passes(ref: PassCount | None, other: PassCount | None) -> str:
    if ref is None or other is None:
        return "-"
    return f"{ref.passed}/{ref.total} -> {other.passed}/{other.total}"


def _change(ref: PassCount | None, other: PassCount | None) -> str:
    if ref is None or other is None:
        return "-"
    points = (other.rate - ref.rate) * 100
    return f"{points:+.0f} pp"


def _pct(rate: float) -> str:
    return "-" if math.isnan(rate) else f"{rate * 100:.0f}%"


def _clean(x: float) -> float | None:
    return None if math.isnan(x) else x


__all__ = [
    "PassCount",
    "TradeoffRow",
    "compare_models",
    "comparison_key",
    "summary_lines",
    "tradeoff_lines",
]
