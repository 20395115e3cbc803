"""The gate's comparison table: one row per metric, raw and machine-adjusted changes in
their own columns, and the machine reference's footnote. Pure text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pytest_tokrate.gate.metrics import METRICS
from pytest_tokrate.gate.rule import Comparison
from pytest_tokrate.gate.verdict import machine_words
from pytest_tokrate.machine.calibration import footnote

# -- text ------------------------------------------------------------------------------


def _num(x: float, scale: float = 1.0) -> str:
    if x is None or math.isnan(x):
        return "-"
    v = x * scale
    return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"


def _pct(x: float, sign: bool = True) -> str:
    if math.isnan(x):
        return "-"
    return f"{x * 100:+.1f}%" if sign else f"{x * 100:.1f}%"


def _pvalue(p: float) -> str:
    if math.isnan(p):
        return "-"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def row(c: Comparison) -> list[str]:
    name, scale, unit, higher = METRICS[c.metric]
    if c.metric == "pass_rate":
        change = "-" if math.isnan(c.raw_change) else f"{c.raw_change * 100:+.0f} pts"
        ci = f"{_pct(c.ci[0], False)} .. {_pct(c.ci[1], False)}"
        tol = f"-{c.tolerance * 100:g} pts"
    else:
        change = _pct(c.raw_change)
        ci = "-" if math.isnan(c.ci[0]) else f"{_pct(c.ci[0])} .. {_pct(c.ci[1])}"
        tol = f"{'-' if higher else '+'}{c.tolerance * 100:g}%"
    verdict = f"{c.verdict} ({c.why})" if c.why else c.verdict
    return [
        f"{name}{unit and ' (' + unit.strip() + ')'}",
        f"{_num(c.baseline, scale)} -> {_num(c.current, scale)}",
        change,
        _pct(c.change) if c.adjusted else "-",
        ci,
        _pvalue(c.p_value),
        tol,
        verdict,
    ]


#: The raw change of the medians beside them; the machine-adjusted change (what the
#: verdict reads, when the machine reference ran) in its own column, with its interval.
HEADER = [
    "metric", "baseline -> current", "change", "machine-adjusted", "95% CI", "p",
    "tolerance", "verdict",
]  # fmt: skip


def table(comparisons: Sequence[Comparison], indent: str = "  ") -> list[str]:
    """Aligned text rows; medians for speed metrics; a last line when the speed figures
    were judged relative to the machine reference, in words when the machine moved."""
    rows = [HEADER, *(row(c) for c in comparisons)]
    if not any(c.adjusted for c in comparisons):
        rows = [r[:3] + r[4:] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        indent + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in rows
    ]
    machine = next((c.machine_ref for c in comparisons if c.machine_ref), None)
    if machine is not None:
        lines.append(indent + footnote(*machine))
        words = machine_words(comparisons)
        if words:
            lines.append(indent + words[0].upper() + words[1:] + ".")
    return lines


__all__ = ["HEADER", "row", "table"]
