"""The gate's words: comparisons as a table, and one test's findings. Pure.

:mod:`.compare` decides each metric's verdict; this module turns a baseline run and the
current run into what the user reads: the regression, stale-baseline, not-comparable,
no-baseline, machine-busy, short-answer and underpowered findings, each with its table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any

from .calibration import footnote
from .compare import (
    METRICS,
    Comparison,
    GateSettings,
    answer_tokens,
    compare_runs,
)
from .fingerprint import Change, definition_changes, environment_changes
from .verdict import Finding

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
        change = "-" if math.isnan(c.change) else f"{c.change * 100:+.0f} pts"
        ci = f"{_pct(c.ci[0], False)} .. {_pct(c.ci[1], False)}"
        tol = f"-{c.tolerance * 100:g} pts"
    else:
        change = _pct(c.change)
        ci = "-" if math.isnan(c.ci[0]) else f"{_pct(c.ci[0])} .. {_pct(c.ci[1])}"
        tol = f"{'-' if higher else '+'}{c.tolerance * 100:g}%"
    return [
        f"{name}{unit and ' (' + unit.strip() + ')'}",
        f"{_num(c.baseline, scale)} -> {_num(c.current, scale)}",
        change,
        ci,
        _pvalue(c.p_value),
        tol,
        c.verdict,
    ]


HEADER = ["metric", "baseline -> current", "change", "95% CI", "p", "tolerance", "verdict"]


def table(comparisons: Sequence[Comparison], indent: str = "  ") -> list[str]:
    """Aligned text rows; medians for speed metrics; a last line when the speed figures
    were judged relative to the machine reference."""
    rows = [HEADER, *(row(c) for c in comparisons)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = [
        indent + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in rows
    ]
    machine = next((c.machine_ref for c in comparisons if c.machine_ref), None)
    if machine is not None:
        lines.append(indent + footnote(*machine))
    return lines


# -- findings -------------------------------------------------------------------------


def _severity(mode: str, on: str) -> str:
    """``report`` mode turns every failure into a warning."""
    if on == "fail" and mode == "report":
        return "warn"
    return on


def judge_run(
    *,
    test_id: str,
    where: str,
    baseline: Mapping[str, Any] | None,
    baseline_fingerprint: Mapping[str, Any] | None,
    current: Mapping[str, Any],
    current_fingerprint: Mapping[str, Any],
    settings: GateSettings,
    recorded_at: str | None = None,
    busy: str | None = None,
) -> list[Finding]:
    """Findings for one run of a test against its stored baseline run (``None``: none).

    ``busy`` says why speed figures cannot be trusted (other processes took the CPU while
    measuring, see :mod:`.loadprobe`): a speed regression or improvement is then reported
    as not judged instead of failing. The pass rate is judged regardless.
    """
    mode = settings.mode
    if mode == "off":
        return []
    refresh = "refresh it with `pytest --tokrate-update-baselines`"
    if baseline is None or baseline_fingerprint is None:
        return [
            Finding(
                "no-baseline",
                _severity(mode, settings.on_missing),
                f"tokrate: no baseline for {test_id} (looked for {where}): record one with "
                "`pytest --tokrate-update-baselines` and commit it.",
                {"path": where},
            )
        ]
    changes: list[Change] = environment_changes(baseline_fingerprint, current_fingerprint)
    changes += definition_changes(baseline["definition"], current["definition"])
    comparisons = compare_runs(baseline, current, settings)
    data: dict[str, Any] = {
        "path": where,
        "comparisons": [asdict(c) for c in comparisons],
    }
    if changes:
        severity = settings.on_mismatch
        if mode == "report" and severity in ("fail", "skip"):
            severity = "warn"
        lines = [
            f"tokrate: baseline not comparable for {test_id} ({where}): "
            + "; ".join(str(c) for c in changes)
            + f". If the change is intended, {refresh}."
        ]
        if comparisons:
            lines.append("  for information only:")
            lines.extend(table(comparisons, indent="  "))
        data["changes"] = [str(c) for c in changes]
        return [Finding("not-comparable", severity, "\n".join(lines), data)]
    findings: list[Finding] = []
    if busy:
        withheld = [
            c
            for c in comparisons
            if c.metric != "pass_rate" and c.verdict in ("regression", "improvement")
        ]
        if withheld:
            comparisons = [
                replace(c, verdict=f"{c.verdict}?") if c in withheld else c for c in comparisons
            ]
            findings.append(
                Finding(
                    "machine-busy",
                    "warn",
                    "\n".join(
                        [
                            f"tokrate: speed of {test_id} not judged against {where}: {busy}. "
                            "The change below may come from that load, not from the code: "
                            "rerun on a quiet machine.",
                            *table(comparisons),
                        ]
                    ),
                    data,
                )
            )
    regressions = [c for c in comparisons if c.verdict == "regression"]
    improvements = [c for c in comparisons if c.verdict == "improvement"]
    underpowered = [c for c in comparisons if c.verdict == "underpowered"]
    when = f", recorded {recorded_at}" if recorded_at else ""
    if regressions:
        names = ", ".join(c.name for c in regressions)
        head = f"tokrate: regression of {names} in {test_id} against the baseline {where}{when}:"
        foot = (
            f"  A regression is a change beyond the tolerance that is also significant "
            f"(one-sided Mann-Whitney U p < {settings.alpha:g} for speed, Fisher exact "
            f"p < {settings.quality_alpha:g} for the pass rate). If it is intended, {refresh}."
        )
        findings.append(
            Finding(
                "regression",
                _severity(mode, "fail"),
                "\n".join([head, *table(comparisons), foot]),
                data,
            )
        )
    if improvements:
        names = ", ".join(c.name for c in improvements)
        findings.append(
            Finding(
                "stale-baseline",
                _severity(mode, settings.on_stale),
                "\n".join(
                    [
                        f"tokrate: stale baseline for {test_id}: {names} much better than "
                        f"{where}{when}; {refresh} so that a later regression is caught.",
                        *table(comparisons),
                    ]
                ),
                data,
            )
        )
    short = [c for c in comparisons if c.verdict == "too short"]
    if short:
        tokens = answer_tokens(baseline, current, settings.min_decode_tokens)
        findings.append(
            Finding(
                "decode-not-gated",
                "info",
                f"tokrate: {', '.join(c.name for c in short)} of {test_id} not judged: "
                f"answers of {tokens:g} tokens are too few decode steps to time (at least "
                f"{settings.min_decode_tokens}, --tokrate-min-decode-tokens); TTFT and the "
                "pass rate are still judged.",
                data,
            )
        )
    if underpowered and not regressions:
        names = ", ".join(c.name for c in underpowered)
        findings.append(
            Finding(
                "underpowered",
                "warn",
                f"tokrate: {names} of {test_id} changed beyond the tolerance, but with "
                f"{underpowered[0].n_baseline} baseline and {underpowered[0].n_current} current "
                f"rounds no change can be significant at p < {settings.alpha:g}: use at least "
                "3 rounds against a baseline refreshed with `pytest --tokrate-update-baselines` "
                "(it records 4x the rounds), or 5 in both.",
                data,
            )
        )
    return findings


__all__ = ["HEADER", "judge_run", "row", "table"]
