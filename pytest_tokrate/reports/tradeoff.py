"""The model-vs-model trade-off as report data and as text.

The figures come from :mod:`pytest_tokrate.quality.tradeoff`; this module turns them into
JSON-ready entries (the report's ``tradeoff`` and ``tradeoff_models``) and words the
entries, so the terminal table and the Markdown table read the same cells. Pure: returns
plain data and strings; the glue writes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_tokrate.quality.text import pct
from pytest_tokrate.quality.tradeoff import PassCount, TradeoffRow, summarize_models
from pytest_tokrate.reports.terminal import table

#: Column titles of the trade-off table (terminal and Markdown).
HEADER = (
    "test", "model", "decode tok/s ratio [95% CI]", "pass rate (ref -> model)", "change",
    "p(worse)", "verdict",
)  # fmt: skip


def _count(p: PassCount | None) -> dict[str, int] | None:
    return None if p is None else {"passed": p.passed, "total": p.total}


def tradeoff_entries(rows: Sequence[TradeoffRow]) -> list[dict[str, Any]]:
    """One JSON-ready entry per compared test and model (schema: ``$defs/tradeoffRow``)."""
    return [
        {
            **r.to_dict(),
            "speed_verdict": r.speed_verdict,
            "quality_verdict": r.quality_verdict,
            "repeated": r.repeated,
        }
        for r in rows
    ]


def model_entries(rows: Sequence[TradeoffRow]) -> list[dict[str, Any]]:
    """Per model against the reference: geometric-mean speed ratio, pooled pass rates."""
    return [
        {
            "model": s.model,
            "reference": s.reference,
            "decode_tps_ratio_geomean": s.speed_ratio,
            "ratio_tests": s.ratio_tests,
            "pass_reference": _count(s.pass_ref),
            "pass_model": _count(s.pass_other),
            "p_worse": s.p_worse,
        }
        for s in summarize_models(rows)
    ]


def row_cells(entry: Mapping[str, Any]) -> list[str]:
    """The cells of one trade-off entry, in :data:`HEADER` order (plain text)."""
    ratio = entry.get("decode_tps_ratio")
    low, high = entry.get("decode_tps_ratio_ci95") or (None, None)
    if ratio is None:
        ratio_text = "-"
    elif low is None or high is None:
        ratio_text = f"{ratio:.2f}x"
    else:
        ratio_text = f"{ratio:.2f}x [{low:.2f}, {high:.2f}]"
    ref, other = entry.get("pass_reference"), entry.get("pass_model")
    passes = change = "-"
    if ref is not None and other is not None:
        passes = f"{ref['passed']}/{ref['total']} -> {other['passed']}/{other['total']}"
        points = (other["passed"] / other["total"] - ref["passed"] / ref["total"]) * 100
        change = f"{points:+.0f} pp"
    p_worse = entry.get("p_worse")
    return [
        str(entry["test"]),
        str(entry["model"]),
        ratio_text,
        passes,
        change,
        "-" if p_worse is None else f"{p_worse:.3g}",
        str(entry["verdict"]),
    ]


def reference_note(reference: str) -> str:
    return (
        f"reference: {reference} (the first --tokrate-model); ratio > 1 means faster than the "
        "reference; p(worse): one-sided Fisher exact test of a lower pass rate"
    )


#: Said when a test's rounds repeated one answer: their pass counts are not independent.
REPEATED_NOTE = (
    "note: some tests gave one same answer in every round (temperature 0, fixed seed): "
    "their rounds are repeats, not independent trials, so p(worse) overstates the "
    "evidence; judge quality across more prompts"
)


def repeated(entries: Sequence[Mapping[str, Any]]) -> bool:
    return any(e.get("repeated") and e.get("p_worse") is not None for e in entries)


def model_line(entry: Mapping[str, Any]) -> str:
    """One model against the reference, in a sentence."""
    ratio = entry.get("decode_tps_ratio_geomean")
    speed = "-" if ratio is None else f"{ratio:.2f}x"
    quality = "no quality checks"
    ref, oth, p_worse = entry.get("pass_reference"), entry.get("pass_model"), entry.get("p_worse")
    if ref is not None and oth is not None and p_worse is not None:
        quality = (
            f"pass rate {pct(ref['passed'] / ref['total'])} -> "
            f"{pct(oth['passed'] / oth['total'])} "
            f"({ref['passed']}/{ref['total']} -> {oth['passed']}/{oth['total']} rounds, "
            f"p(worse) {p_worse:.3g})"
        )
    return (
        f"{entry['model']} vs {entry['reference']}: decode speed {speed} (geometric mean over "
        f"{entry['ratio_tests']} test(s)), {quality}"
    )


def tradeoff_lines(rows: Sequence[TradeoffRow]) -> list[str]:
    """The trade-off table, then one summary line per model."""
    return entry_lines(tradeoff_entries(rows), model_entries(rows))


def entry_lines(
    entries: Sequence[Mapping[str, Any]], models: Sequence[Mapping[str, Any]]
) -> list[str]:
    """The terminal's trade-off section from report entries (empty without entries)."""
    if not entries:
        return []
    lines = table([row_cells(e) for e in entries], HEADER)
    lines.append(reference_note(str(entries[0]["reference"])))
    if repeated(entries):
        lines.append(REPEATED_NOTE)
    lines.extend(model_line(m) for m in models)
    return lines


def summary_lines(rows: Sequence[TradeoffRow]) -> list[str]:
    """Per model: geometric mean of the speed ratios, pooled pass rates."""
    return [model_line(m) for m in model_entries(rows)]


__all__ = [
    "HEADER",
    "REPEATED_NOTE",
    "entry_lines",
    "model_entries",
    "model_line",
    "reference_note",
    "repeated",
    "row_cells",
    "summary_lines",
    "tradeoff_entries",
    "tradeoff_lines",
]
