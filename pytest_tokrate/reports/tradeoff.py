"""The model-vs-model trade-off as text: a table per test, then one line per model.

The figures come from :mod:`pytest_tokrate.quality.tradeoff`; this module only words
them. Pure: returns plain strings; the glue writes them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pytest_tokrate.quality.text import pct
from pytest_tokrate.quality.tradeoff import PassCount, TradeoffRow, summarize_models
from pytest_tokrate.reports.terminal import table


def tradeoff_lines(rows: Sequence[TradeoffRow]) -> list[str]:
    """The trade-off table, then one summary line per model."""
    if not rows:
        return []
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
    for s in summarize_models(rows):
        speed = "-" if s.speed_ratio is None else f"{s.speed_ratio:.2f}x"
        quality = "no quality checks"
        ref, oth = s.pass_ref, s.pass_other
        if ref is not None and oth is not None and s.p_worse is not None:
            quality = (
                f"pass rate {pct(ref.rate)} -> {pct(oth.rate)} "
                f"({ref.passed}/{ref.total} -> {oth.passed}/{oth.total} rounds, "
                f"p(worse) {s.p_worse:.3g})"
            )
        out.append(
            f"{s.model} vs {s.reference}: decode speed {speed} (geometric mean over "
            f"{s.ratio_tests} test(s)), {quality}"
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


__all__ = ["summary_lines", "tradeoff_lines"]
