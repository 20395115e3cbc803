"""One test's verdict against its baseline, as data: the figures not judged after a
configuration change, the trade-off verdict after a model change, and the verdict record
every report shows (terminal section, JSON ``gate``, Markdown). Pure.

:mod:`.judge` builds the findings; this module decides what they say.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from pytest_tokrate.gate.changes import ConfigChange
from pytest_tokrate.gate.metrics import METRICS
from pytest_tokrate.gate.rule import Comparison, GateSettings

#: Verdict words of the gate record, worst first (a record takes its worst finding's).
VERDICTS = (
    "regression",
    "not comparable",
    "no baseline",
    "not judged",
    "stale",
    "accepted",
    "not settled",
    "ok",
)
#: How far the machine reference may move before the verdict says so in words.
MACHINE_NOTE = 0.03


def mark_unjudged(comparisons: Sequence[Comparison], why: Mapping[str, str]) -> list[Comparison]:
    """Figures whose meaning a configuration change removed: shown, verdict "not judged"."""
    return [
        replace(c, verdict="not judged", why=why[c.metric]) if c.metric in why else c
        for c in comparisons
    ]


def _speed_for(comparisons: Sequence[Comparison], metric: str | None = None) -> Comparison | None:
    """The speed figure a trade-off is read on: the named one, else the first judged."""
    for c in comparisons:
        if c.metric == "pass_rate" or math.isnan(c.change):
            continue
        if metric is None or c.metric == metric:
            return c
    return None


def _gain(c: Comparison) -> float:
    """The change in the metric's good direction (+0.3: 30% better)."""
    return c.change if c.higher_is_better else -c.change


def _accepting(
    comparisons: Sequence[Comparison], quality: Comparison, settings: GateSettings
) -> str | None:
    """The first policy that accepts this pass-rate drop, in words, or ``None``."""
    for policy in settings.tradeoffs:
        speed = _speed_for(comparisons, policy.metric)
        if speed is None or -quality.change > policy.max_drop + 1e-9:
            continue
        significant = speed.p_value < settings.alpha
        if significant and _gain(speed) >= policy.min_gain:
            return str(policy)
    return None


def tradeoff(
    comparisons: Sequence[Comparison], settings: GateSettings
) -> tuple[list[Comparison], dict[str, Any] | None]:
    """After a model change: the speed ratio with its interval against the pass-rate
    change with its p-value. A pass-rate regression stays one (it fails the build)
    unless a policy of ``--tokrate-accept-tradeoff`` accepts it: then its verdict is
    ``accepted``. ``None`` when there is no pass rate or no speed figure to weigh."""
    quality = next((c for c in comparisons if c.metric == "pass_rate"), None)
    speed = _speed_for(comparisons, "decode_tps") or _speed_for(comparisons)
    if quality is None or speed is None or quality.verdict == "not judged":
        return list(comparisons), None
    policy = _accepting(comparisons, quality, settings) if quality.verdict == "regression" else None
    if policy is not None:
        comparisons = [replace(c, verdict="accepted") if c is quality else c for c in comparisons]
    speed_bad = speed.verdict == "regression"
    verdict = (
        "accepted"
        if policy
        else ("regression" if quality.verdict == "regression" or speed_bad else "ok")
    )
    data = {
        "speed_metric": speed.metric,
        "speed_ratio": _finite(1.0 + speed.change),
        "speed_ci": [_finite(1.0 + speed.ci[0]), _finite(1.0 + speed.ci[1])],
        "pass_rate_baseline": _finite(quality.baseline),
        "pass_rate_current": _finite(quality.current),
        "pass_rate_change": _finite(quality.change),
        "p_value": _finite(quality.p_value),
        "verdict": verdict,
        "policy": policy,
    }
    return list(comparisons), data


def tradeoff_text(data: Mapping[str, Any]) -> str:
    """``is the trade-off worth it?`` in one line."""
    name = METRICS[data["speed_metric"]][0]
    ratio, (low, high) = data["speed_ratio"], data["speed_ci"]
    speed = "-" if ratio is None else f"{ratio:.2f}x"
    ci = "" if low is None or high is None else f" (95% CI {low:.2f}x .. {high:.2f}x)"
    change, p = data["pass_rate_change"], data["p_value"]
    quality = "-" if change is None else f"{change * 100:+.0f} pts"
    pv = "" if p is None else (", p < 0.0001" if p < 1e-4 else f", p = {p:.4f}")
    tail = {
        "regression": "regression",
        "accepted": f"accepted by the policy '{data['policy']}'",
        "ok": "no regression",
    }[data["verdict"]]
    return f"trade-off: {name} {speed}{ci}, pass rate {quality}{pv}: {tail}"


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def figure(c: Comparison) -> dict[str, Any]:
    """One compared figure as the reports show it."""
    name, _, unit, _ = METRICS[c.metric]
    return {
        "metric": c.metric,
        "name": name,
        "unit": unit.strip() or ("tok/s" if "tok/s" in name else ""),
        "baseline": _finite(c.baseline),
        "current": _finite(c.current),
        "change": _finite(c.raw_change),
        "adjusted": _finite(c.change) if c.adjusted else None,
        "verdict": c.verdict,
        "why": c.why,
    }


def machine_moved(comparisons: Sequence[Comparison]) -> dict[str, Any] | None:
    """The machine reference's medians (baseline, now) and their change, if adjusted."""
    ref = next((c.machine_ref for c in comparisons if c.machine_ref), None)
    if ref is None:
        return None
    return {
        "baseline": _finite(ref[0]),
        "current": _finite(ref[1]),
        "change": _finite(ref[1] / ref[0] - 1),
    }


def machine_words(comparisons: Sequence[Comparison]) -> str | None:
    """In words, when the machine itself moved more than :data:`MACHINE_NOTE`."""
    moved = machine_moved(comparisons)
    if moved is None or moved["change"] is None or abs(moved["change"]) <= MACHINE_NOTE:
        return None
    way = "faster" if moved["change"] > 0 else "slower"
    return (
        f"the machine itself ran {abs(moved['change']) * 100:.0f}% {way} than when the baseline "
        "was recorded: the verdicts read the machine-adjusted change, not the raw one"
    )


def record(
    *,
    test: str,
    verdict: str,
    why: str = "",
    baseline: str | None = None,
    baseline_model: str | None = None,
    model: str | None = None,
    changes: Sequence[ConfigChange] = (),
    comparisons: Sequence[Comparison] = (),
    trade: Mapping[str, Any] | None = None,
    rounds: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The gate verdict of one run, JSON-able (the ``gate`` finding's data)."""
    return {
        **({"rounds": dict(rounds)} if rounds else {}),
        "test": test,
        "verdict": verdict,
        "why": why,
        "baseline": baseline,
        "baseline_model": baseline_model,
        "model": model,
        "changes": [str(c) for c in changes],
        "figures": [figure(c) for c in comparisons],
        "machine": machine_moved(comparisons),
        "tradeoff": dict(trade) if trade else None,
    }


def overall(kinds: Sequence[str]) -> str:
    """The verdict word of a judged run from its findings' kinds."""
    if "regression" in kinds:
        return "regression"
    if "machine-busy" in kinds:
        return "not judged"
    if "stale-baseline" in kinds:
        return "stale"
    return "ok"


__all__ = [
    "MACHINE_NOTE",
    "VERDICTS",
    "figure",
    "machine_moved",
    "machine_words",
    "mark_unjudged",
    "overall",
    "record",
    "tradeoff",
    "tradeoff_text",
]
