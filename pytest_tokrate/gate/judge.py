"""The gate's words: comparisons as a table, one test's findings, and two versions of a
baseline file run by run. Pure.

:mod:`.rule` decides each metric's verdict; this module turns a baseline run and the
current run into what the user reads: the regression, stale-baseline, not-comparable,
no-baseline, machine-busy, short-answer and underpowered findings, each with its table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from pytest_tokrate.core.findings import Finding
from pytest_tokrate.gate.changes import (
    ConfigChange,
    configuration_changes,
    environment_changes,
    model_changed,
    unjudged,
)
from pytest_tokrate.gate.rule import (
    Comparison,
    GateSettings,
    answer_tokens,
    compare_runs,
)
from pytest_tokrate.gate.table import table
from pytest_tokrate.gate.verdict import (
    mark_unjudged,
    overall,
    record,
    tradeoff,
    tradeoff_text,
)
from pytest_tokrate.machine.fingerprint import Change

if TYPE_CHECKING:
    pass

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
    #: Configuration differences from the baseline (judged, and named in every finding).
    changes: Sequence[ConfigChange] = ()
    #: The trade-off line after a model change, or empty.
    trade: str = ""

    def context(self) -> list[str]:
        """Lines under a finding's table: what changed, and the trade-off."""
        lines = []
        if self.changes:
            lines.append("  configuration changed: " + "; ".join(map(str, self.changes)))
        if self.trade:
            lines.append(f"  {self.trade}")
        return lines


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
            *run.context(),
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
        "\n".join([head, *table(comparisons), *run.context(), foot]),
        run.data,
    )


def _stale_baseline(run: _Judged, comparisons: Sequence[Comparison]) -> Finding | None:
    improvements = [c for c in comparisons if c.verdict == "improvement"]
    if not improvements or run.trade:  # after a model change the gain is the trade-off's
        return None
    names = ", ".join(c.name for c in improvements)
    text = "\n".join(
        [
            f"tokrate: stale baseline for {run.test_id}: {names} much better than "
            f"{run.where}{run.when}; {_REFRESH} so that a later regression is caught.",
            *table(comparisons),
            *run.context(),
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


def _accepted(run: _Judged, comparisons: Sequence[Comparison]) -> Finding | None:
    """A pass-rate drop a trade-off policy accepted: said, not failed."""
    if not any(c.verdict == "accepted" for c in comparisons):
        return None
    return Finding(
        "accepted-tradeoff",
        "warn",
        "\n".join(
            [
                f"tokrate: the pass rate of {run.test_id} dropped against {run.where}, "
                "accepted for the speed gain (--tokrate-accept-tradeoff):",
                *table(comparisons),
                *run.context(),
            ]
        ),
        run.data,
    )


#: The findings about a comparable run, in the order they are reported.
_BUILDERS: tuple[Callable[[_Judged, Sequence[Comparison]], Finding | None], ...] = (
    _regression,
    _accepted,
    _stale_baseline,
    _decode_not_gated,
    _underpowered,
)


@dataclass(frozen=True)
class Subject:
    """What is judged: the test (with its run label), the baseline file as shown, and
    the models of both sides."""

    test_id: str
    where: str
    model: str | None = None
    baseline_model: str | None = None
    #: ``{"used": n, "auto": bool, "max": m}``: the rounds measured (shown in reports).
    rounds: Mapping[str, Any] | None = None


def _gate_finding(subject: Subject, verdict: str, **fields: Any) -> Finding:
    data = record(
        test=subject.test_id,
        verdict=verdict,
        baseline=subject.where if verdict != "no baseline" else None,
        baseline_model=subject.baseline_model,
        model=subject.model,
        rounds=subject.rounds,
        **fields,
    )
    changes = f" [{'; '.join(data['changes'])}]" if data["changes"] else ""
    return Finding(
        "gate", "info", f"tokrate gate: {verdict}: {subject.test_id}{changes}", {"gate": data}
    )


def _compare(
    baseline: Mapping[str, Any],
    current: Mapping[str, Any],
    baseline_fingerprint: Mapping[str, Any],
    current_fingerprint: Mapping[str, Any],
    settings: GateSettings,
) -> tuple[list[Change], list[ConfigChange], list[Comparison], dict[str, Any] | None]:
    """Environment and configuration changes, every gated figure compared (those a
    change made meaningless marked not judged), and the trade-off after a model change."""
    env = environment_changes(baseline_fingerprint, current_fingerprint)
    config = configuration_changes(
        baseline_fingerprint, current_fingerprint, baseline["definition"], current["definition"]
    )
    comparisons = mark_unjudged(compare_runs(baseline, current, settings), unjudged(config))
    trade: dict[str, Any] | None = None
    if model_changed(config) and not env:
        comparisons, trade = tradeoff(comparisons, settings)
    return env, config, comparisons, trade


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
    subject: Subject | None = None,
) -> list[Finding]:
    """Findings for one run of a test against its stored baseline run (``None``: none),
    ending with the ``gate`` finding whose data is the verdict every report shows.

    A different environment (:mod:`.changes`) makes the baseline not comparable; a
    different configuration is judged, each difference named. ``busy`` says why speed
    figures cannot be trusted (other processes took the CPU while measuring, see
    :mod:`pytest_tokrate.machine.load`): a speed regression or improvement is then
    reported as not judged instead of failing. The pass rate is judged regardless.
    """
    if settings.mode == "off":
        return []
    subject = subject or Subject(test_id, where)
    if baseline is None or baseline_fingerprint is None:
        return [
            _no_baseline(test_id, where, settings),
            _gate_finding(subject, "no baseline", why=f"looked for {where}"),
        ]
    env, config, comparisons, trade = _compare(
        baseline, current, baseline_fingerprint, current_fingerprint, settings
    )
    data: dict[str, Any] = {"path": where, "comparisons": [asdict(c) for c in comparisons]}
    if env:
        why = "; ".join(str(c) for c in env)
        return [
            _not_comparable(test_id, where, settings, env, comparisons, data),
            _gate_finding(
                subject, "not comparable", why=why, changes=config, comparisons=comparisons
            ),
        ]
    when = f", recorded {recorded_at}" if recorded_at else ""
    run = _Judged(
        test_id, where, settings, baseline, current, data, when, config,
        tradeoff_text(trade) if trade else "",
    )  # fmt: skip
    findings, comparisons = _comparable_findings(run, comparisons, busy)
    verdict = overall([f.kind for f in findings])
    why = ""
    if verdict == "ok" and any(c.verdict == "accepted" for c in comparisons):
        verdict, why = "accepted", str((trade or {}).get("policy") or "")
    elif verdict == "not judged":
        why = busy or ""
    findings.append(
        _gate_finding(
            subject, verdict, why=why, changes=config, comparisons=comparisons, trade=trade
        )
    )
    return findings


def _comparable_findings(
    run: _Judged, comparisons: list[Comparison], busy: str | None
) -> tuple[list[Finding], list[Comparison]]:
    """The findings about a comparable run, and its comparisons as finally judged (speed
    verdicts withheld while the machine was busy)."""
    findings: list[Finding] = []
    if busy:
        comparisons, withheld = _machine_busy(run, comparisons, busy)
        if withheld is not None:
            findings.append(withheld)
    for build in _BUILDERS:
        finding = build(run, comparisons)
        if finding is not None:
            findings.append(finding)
    return findings, comparisons


# Re-exported: the console script reads the table and the file diff from here.
from pytest_tokrate.gate.diff import RunDiff, diff_runs  # noqa: E402
from pytest_tokrate.gate.table import HEADER, row  # noqa: E402

__all__ = ["HEADER", "RunDiff", "Subject", "diff_runs", "judge_run", "row", "table"]
