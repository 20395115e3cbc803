"""The gate's words: comparisons as a table, one test's findings, and two versions of a
baseline file run by run. Pure.

:mod:`.rule` decides each metric's verdict; this module turns a baseline run and the
current run into what the user reads: the regression, stale-baseline, not-comparable,
no-baseline, machine-busy, short-answer and underpowered findings, each with its table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from pytest_tokrate.core.findings import Finding
from pytest_tokrate.gate.metrics import METRICS
from pytest_tokrate.gate.rule import (
    Comparison,
    GateSettings,
    answer_tokens,
    compare_runs,
)
from pytest_tokrate.machine.calibration import footnote
from pytest_tokrate.machine.fingerprint import Change, definition_changes, environment_changes

if TYPE_CHECKING:
    from pytest_tokrate.gate.store import Baseline

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


_REFRESH = "refresh it with `pytest --tokrate-update-baselines`"


@dataclass(frozen=True)
class _Judged:
    """One test's run against its baseline run: what every finding about it names."""

    test_id: str
    where: str
    settings: GateSettings
    baseline: Mapping[str, Any]
    current: Mapping[str, Any]
    #: The findings' data, one dict shared by all of them (as the glue expects).
    data: dict[str, Any]
    #: ``", recorded <when>"``, or empty when the baseline does not say.
    when: str


def _no_baseline(test_id: str, where: str, settings: GateSettings) -> Finding:
    return Finding(
        "no-baseline",
        _severity(settings.mode, settings.on_missing),
        f"tokrate: no baseline for {test_id} (looked for {where}): record one with "
        "`pytest --tokrate-update-baselines` and commit it.",
        {"path": where},
    )


def _not_comparable(
    test_id: str,
    where: str,
    settings: GateSettings,
    changes: Sequence[Change],
    comparisons: Sequence[Comparison],
    data: dict[str, Any],
) -> Finding:
    severity = settings.on_mismatch
    if settings.mode == "report" and severity in ("fail", "skip"):
        severity = "warn"
    lines = [
        f"tokrate: baseline not comparable for {test_id} ({where}): "
        + "; ".join(str(c) for c in changes)
        + f". If the change is intended, {_REFRESH}."
    ]
    if comparisons:
        lines.append("  for information only:")
        lines.extend(table(comparisons, indent="  "))
    data["changes"] = [str(c) for c in changes]
    return Finding("not-comparable", severity, "\n".join(lines), data)


def _machine_busy(
    run: _Judged, comparisons: list[Comparison], busy: str
) -> tuple[list[Comparison], Finding | None]:
    """Speed verdicts withheld (marked ``?``) while the machine was busy, and the finding
    that says so; the pass rate does not depend on the load and keeps its verdict."""
    withheld = [
        c
        for c in comparisons
        if c.metric != "pass_rate" and c.verdict in ("regression", "improvement")
    ]
    if not withheld:
        return comparisons, None
    comparisons = [replace(c, verdict=f"{c.verdict}?") if c in withheld else c for c in comparisons]
    text = "\n".join(
        [
            f"tokrate: speed of {run.test_id} not judged against {run.where}: {busy}. "
            "The change below may come from that load, not from the code: "
            "rerun on a quiet machine.",
            *table(comparisons),
        ]
    )
    return comparisons, Finding("machine-busy", "warn", text, run.data)


def _regression(run: _Judged, comparisons: Sequence[Comparison]) -> Finding | None:
    regressions = [c for c in comparisons if c.verdict == "regression"]
    if not regressions:
        return None
    settings = run.settings
    names = ", ".join(c.name for c in regressions)
    head = (
        f"tokrate: regression of {names} in {run.test_id} against the baseline "
        f"{run.where}{run.when}:"
    )
    foot = (
        f"  A regression is a change beyond the tolerance that is also significant "
        f"(one-sided Mann-Whitney U p < {settings.alpha:g} for speed, Fisher exact "
        f"p < {settings.quality_alpha:g} for the pass rate). If it is intended, {_REFRESH}."
    )
    return Finding(
        "regression",
        _severity(settings.mode, "fail"),
        "\n".join([head, *table(comparisons), foot]),
        run.data,
    )


def _stale_baseline(run: _Judged, comparisons: Sequence[Comparison]) -> Finding | None:
    improvements = [c for c in comparisons if c.verdict == "improvement"]
    if not improvements:
        return None
    names = ", ".join(c.name for c in improvements)
    text = "\n".join(
        [
            f"tokrate: stale baseline for {run.test_id}: {names} much better than "
            f"{run.where}{run.when}; {_REFRESH} so that a later regression is caught.",
            *table(comparisons),
        ]
    )
    return Finding(
        "stale-baseline", _severity(run.settings.mode, run.settings.on_stale), text, run.data
    )


def _decode_not_gated(run: _Judged, comparisons: Sequence[Comparison]) -> Finding | None:
    short = [c for c in comparisons if c.verdict == "too short"]
    if not short:
        return None
    minimum = run.settings.min_decode_tokens
    tokens = answer_tokens(run.baseline, run.current, minimum)
    return Finding(
        "decode-not-gated",
        "info",
        f"tokrate: {', '.join(c.name for c in short)} of {run.test_id} not judged: "
        f"answers of {tokens:g} tokens are too few decode steps to time (at least "
        f"{minimum}, --tokrate-min-decode-tokens); TTFT and the "
        "pass rate are still judged.",
        run.data,
    )


def _underpowered(run: _Judged, comparisons: Sequence[Comparison]) -> Finding | None:
    """Only without a regression: a regression already says the rounds were enough."""
    underpowered = [c for c in comparisons if c.verdict == "underpowered"]
    if not underpowered or any(c.verdict == "regression" for c in comparisons):
        return None
    names = ", ".join(c.name for c in underpowered)
    return Finding(
        "underpowered",
        "warn",
        f"tokrate: {names} of {run.test_id} changed beyond the tolerance, but with "
        f"{underpowered[0].n_baseline} baseline and {underpowered[0].n_current} current "
        f"rounds no change can be significant at p < {run.settings.alpha:g}: use at least "
        "3 rounds against a baseline refreshed with `pytest --tokrate-update-baselines` "
        "(it records 4x the rounds), or 5 in both.",
        run.data,
    )


#: The findings about a comparable run, in the order they are reported.
_BUILDERS: tuple[Callable[[_Judged, Sequence[Comparison]], Finding | None], ...] = (
    _regression,
    _stale_baseline,
    _decode_not_gated,
    _underpowered,
)


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
    measuring, see :mod:`pytest_tokrate.machine.load`): a speed regression or improvement
    is then reported as not judged instead of failing. The pass rate is judged regardless.
    """
    if settings.mode == "off":
        return []
    if baseline is None or baseline_fingerprint is None:
        return [_no_baseline(test_id, where, settings)]
    changes: list[Change] = environment_changes(baseline_fingerprint, current_fingerprint)
    changes += definition_changes(baseline["definition"], current["definition"])
    comparisons = compare_runs(baseline, current, settings)
    data: dict[str, Any] = {
        "path": where,
        "comparisons": [asdict(c) for c in comparisons],
    }
    if changes:
        return [_not_comparable(test_id, where, settings, changes, comparisons, data)]
    when = f", recorded {recorded_at}" if recorded_at else ""
    run = _Judged(test_id, where, settings, baseline, current, data, when)
    findings: list[Finding] = []
    if busy:
        comparisons, withheld = _machine_busy(run, comparisons, busy)
        if withheld is not None:
            findings.append(withheld)
    for build in _BUILDERS:
        finding = build(run, comparisons)
        if finding is not None:
            findings.append(finding)
    return findings


# -- two versions of a baseline file --------------------------------------------------


@dataclass(frozen=True)
class RunDiff:
    """One run of a baseline file against the same run in another version of the file."""

    label: str
    #: ``added`` or ``removed`` (then nothing is compared), or ``compared``.
    status: str
    #: Why the two runs are not comparable; empty when they are.
    changes: list[Change]
    comparisons: list[Comparison]

    @property
    def regressions(self) -> int:
        """Regressions that count: none when the runs are not comparable."""
        if self.changes:
            return 0
        return sum(c.verdict == "regression" for c in self.comparisons)


def diff_runs(old: Baseline, new: Baseline, settings: GateSettings) -> Iterator[RunDiff]:
    """Each run of ``old`` and ``new``, by label, judged as the gate would judge ``new``
    against ``old`` (one at a time, so a caller can print as they come)."""
    env = environment_changes(old.fingerprint, new.fingerprint)
    for label in sorted(set(old.runs) | set(new.runs)):
        if label not in old.runs or label not in new.runs:
            yield RunDiff(label, "added" if label in new.runs else "removed", [], [])
            continue
        changes = env + definition_changes(
            old.runs[label]["definition"], new.runs[label]["definition"]
        )
        comparisons = compare_runs(old.runs[label], new.runs[label], settings)
        yield RunDiff(label, "compared", changes, comparisons)


__all__ = ["HEADER", "RunDiff", "diff_runs", "judge_run", "row", "table"]
