"""The gate's verdicts as a person reads them: a line per test for the terminal (or one
summary line under ``pytest -q``), a Markdown section, and the JSON report's ``gate`` array.

Pure: no pytest. The verdicts come from the report data alone: the judge leaves one
finding of kind ``"gate"`` on every measurement it compared with baselines, whose
``data["gate"]`` is a JSON-ready verdict dict (see ``gateVerdict`` in
schemas/report.schema.json). A figure's ``baseline`` and ``current`` medians are in the
report's units (seconds, tokens per second, the pass rate as a fraction), shown scaled to
the figure's ``unit`` as the gate's tables show them (milliseconds, %, points).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_tokrate.gate.metrics import METRICS
from pytest_tokrate.reports.fmt import MISSING, number, percent
from pytest_tokrate.reports.mdtext import md_escape, md_table

KIND = "gate"
#: Verdicts of a comparison that was made, in the order the summary line counts them.
COMPARED = ("ok", "regression", "stale", "accepted", "not settled")
#: Verdicts of a test that was not compared (or not judged), in the summary's order.
NOT_COMPARED = ("not judged", "no baseline", "not comparable")
#: The machine reference moving more than this (relative) is said in words.
MACHINE_MOVED = 0.03
_SAY_WHY = ("not judged", "no baseline", "not comparable", "accepted", "not settled")
_FIGURE_QUIET = ("ok", "", None)  # figure verdicts that the line does not repeat
_MD_MARK = {"ok": "✅", "accepted": "✅", "regression": "❌"}


def collect(measurements: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The verdict of every measurement compared with baselines, in test id order
    (the measurements of one test keep their order, so labelled runs stay together)."""
    found: list[tuple[str, dict[str, Any]]] = []
    for m in measurements:
        for finding in m.get("findings") or ():
            verdict = (finding.get("data") or {}).get("gate")
            if finding.get("kind") == KIND and isinstance(verdict, Mapping):
                found.append((str(m.get("test_id") or ""), dict(verdict)))
    # Sorted, not in arrival order: under xdist the workers' fragments arrive in any order.
    found.sort(key=lambda pair: pair[0])
    return [verdict for _, verdict in found]


# -- words ------------------------------------------------------------------------------


def _is_pass_rate(fig: Mapping[str, Any]) -> bool:
    return fig.get("metric") == "pass_rate"


def _change(value: Any, points: bool) -> str:
    if value is None:
        return MISSING
    return f"{value * 100:+.0f} pts" if points else f"{value * 100:+.1f}%"


def figure_text(fig: Mapping[str, Any]) -> str:
    """``decode tok/s 51.3 -> 59.9 (+16.7%, machine-adjusted -12.5%)``, then the figure's
    own verdict unless ok, and why it was not judged."""
    name = str(fig.get("name") or fig.get("metric") or "?")
    points = _is_pass_rate(fig)
    if points:
        base, cur, unit = percent(fig.get("baseline")), percent(fig.get("current")), ""
    else:
        scale = METRICS[fig["metric"]][1] if fig.get("metric") in METRICS else 1.0
        base, cur = number(fig.get("baseline"), scale), number(fig.get("current"), scale)
        unit = str(fig.get("unit") or "")
        unit = "" if not unit or unit in name else f" {unit}"
    parts = [_change(fig.get("change"), points)]
    if fig.get("adjusted") is not None:
        parts.append(f"machine-adjusted {_change(fig['adjusted'], points)}")
    text = f"{name} {base} -> {cur}{unit} ({', '.join(parts)})"
    verdict = fig.get("verdict")
    if verdict not in _FIGURE_QUIET:
        text += f" {verdict}"
        if fig.get("why"):
            text += f": {fig['why']}"
    return text


def _shown(fig: Mapping[str, Any]) -> bool:
    """A figure with neither median (no data) says nothing on the line."""
    return fig.get("baseline") is not None or fig.get("current") is not None


def machine_note(verdict: Mapping[str, Any]) -> str | None:
    """The machine reference's move in words, when it moved more than a few percent."""
    machine = verdict.get("machine") or {}
    change = machine.get("change")
    if change is None or abs(change) <= MACHINE_MOVED:
        return None
    pace = "faster" if change > 0 else "slower"
    note = f"the machine ran {abs(change) * 100:.0f}% {pace}"
    if any(f.get("adjusted") is not None for f in verdict.get("figures") or ()):
        note += "; verdicts use the adjusted change"
    return note


def details(verdict: Mapping[str, Any]) -> str:
    """Why (where the verdict needs one), the key figures and the machine's move."""
    parts: list[str] = []
    word = verdict.get("verdict")
    why = str(verdict.get("why") or "")
    rounds = verdict.get("rounds")
    if isinstance(rounds, Mapping) and rounds.get("auto"):
        parts.append(f"rounds=auto: {rounds.get('used')} of at most {rounds.get('max')}")
    if word == "accepted":
        parts.append(f"policy: {why or '?'}")
    elif word in _SAY_WHY:
        parts.append(why or ("none recorded" if word == "no baseline" else "no reason given"))
    figures = [figure_text(f) for f in verdict.get("figures") or () if _shown(f)]
    if figures:
        parts.append("; ".join(figures))
    note = machine_note(verdict)
    if note:
        parts.append(note)
    return " · ".join(parts)  # not "; ": that separates the figures


def changes(verdict: Mapping[str, Any]) -> list[str]:
    """The configuration changes, and the baseline's model when no change names it."""
    out = [str(c) for c in verdict.get("changes") or ()]
    base_model, model = verdict.get("baseline_model"), verdict.get("model")
    if base_model and base_model != model and not any(c.startswith("model ") for c in out):
        out.insert(0, f"baseline recorded on {base_model}")
    return out


def tradeoff_text(verdict: Mapping[str, Any]) -> str | None:
    """``decode tok/s x1.80 (CI 1.70..1.90), pass rate 100% -> 60% (-40 pts, p=0.005): ...``"""
    t = verdict.get("tradeoff")
    if not t:
        return None
    metric = t.get("speed_metric")
    names = {f.get("metric"): f.get("name") for f in verdict.get("figures") or ()}
    speed = f"{names.get(metric) or metric} {_ratio(t.get('speed_ratio'))}"
    ci = t.get("speed_ci") or [None, None]
    if None not in ci:
        speed += f" (CI {_ratio(ci[0], '')}..{_ratio(ci[1], '')})"
    rate = (
        f"pass rate {percent(t.get('pass_rate_baseline'))} -> "
        f"{percent(t.get('pass_rate_current'))} "
        f"({_change(t.get('pass_rate_change'), True)}, {_p(t.get('p_value'))})"
    )
    word = str(t.get("verdict") or "?")
    policy = t.get("policy")
    if policy:
        word += f" (policy: {policy})"
    return f"trade-off: {speed}, {rate}: {word}"


def _ratio(value: Any, prefix: str = "x") -> str:
    return MISSING if value is None else f"{prefix}{value:.2f}"


def _p(value: Any) -> str:
    """``p=0.0054`` or ``p<0.0001``."""
    if value is None:
        return f"p={MISSING}"
    return "p<0.0001" if value < 1e-4 else f"p={value:.2g}"


# -- terminal ---------------------------------------------------------------------------


def gate_lines(verdicts: Sequence[Mapping[str, Any]], quiet: bool) -> list[str]:
    """The terminal section: one aligned line per test (its trade-off indented beneath),
    or with ``quiet`` one summary line. No verdicts, no lines."""
    if not verdicts:
        return []
    if quiet:
        return [summary_line(verdicts)]
    words = [str(v.get("verdict") or "?") for v in verdicts]
    tests = [str(v.get("test") or "?") for v in verdicts]
    w_word, w_test = max(map(len, words)), max(map(len, tests))
    out: list[str] = []
    for word, test, verdict in zip(words, tests, verdicts, strict=True):
        line = f"{word:<{w_word}}  {test:<{w_test}}  {details(verdict)}"
        changed = changes(verdict)
        if changed:
            line += f"  [{'; '.join(changed)}]"
        out.append(line.rstrip())
        tradeoff = tradeoff_text(verdict)
        if tradeoff:
            out.append(" " * (w_word + 2) + tradeoff)
    return out


def summary_line(verdicts: Sequence[Mapping[str, Any]]) -> str:
    """``tokrate gate: 6 compared: 4 ok, 1 regression, 1 stale; 1 no baseline; ...``"""
    counts: dict[str, int] = {}
    for v in verdicts:
        word = str(v.get("verdict") or "?")
        counts[word] = counts.get(word, 0) + 1
    compared = [w for w in COMPARED if counts.get(w)]
    text = f"tokrate gate: {sum(counts[w] for w in compared)} compared"
    if compared:
        text += ": " + ", ".join(f"{counts[w]} {w}" for w in compared)
    # Unknown words are counted too, after the known ones, so no verdict goes unsaid.
    rest = [w for w in NOT_COMPARED if counts.get(w)]
    rest += sorted(w for w in counts if w not in COMPARED and w not in NOT_COMPARED)
    return "; ".join([text, *(f"{counts[w]} {w}" for w in rest)])


# -- Markdown ---------------------------------------------------------------------------


def gate_markdown(verdicts: Sequence[Mapping[str, Any]]) -> list[str]:
    """The section "Baselines and gate" of the Markdown summary; empty without verdicts.
    Every text is escaped: test ids and model names come from outside."""
    if not verdicts:
        return []
    rows = []
    for v in verdicts:
        word = str(v.get("verdict") or "?")
        rows.append(
            [
                f"{_MD_MARK.get(word, '⚠️')} {md_escape(word)}",
                md_escape(v.get("test") or "?"),
                md_escape(details(v), 600) or MISSING,
                md_escape("; ".join(changes(v)), 400) or MISSING,
            ]
        )
    out = [
        "### Baselines and gate",
        "",
        *md_table(["verdict", "test", "key figures", "configuration changes"], rows, right=4),
        "",
    ]
    tradeoffs = [(v, tradeoff_text(v)) for v in verdicts]
    for v, text in tradeoffs:
        if text:
            out.append(f"- {md_escape(v.get('test') or '?')}: {md_escape(text, 400)}")
    if any(text for _, text in tradeoffs):
        out.append("")
    out.append(
        "Medians of the baseline and of this run, their raw change, and the change adjusted "
        "for the machine's own speed where the gate used it."
    )
    out.append("")
    return out


__all__ = [
    "COMPARED",
    "KIND",
    "NOT_COMPARED",
    "changes",
    "collect",
    "details",
    "figure_text",
    "gate_lines",
    "gate_markdown",
    "machine_note",
    "summary_line",
    "tradeoff_text",
]
