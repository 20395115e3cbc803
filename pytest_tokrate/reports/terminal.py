"""Turning measurements into text: the terminal tables at the end of a run.

The per-test table and the token yardstick are drawn from live measurements; the sweep
table from the report dictionary (the controller of an xdist run holds only that).
Pure: returns plain strings; the glue writes them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pytest_tokrate.core.result import Measurement
from pytest_tokrate.core.stats import Summary
from pytest_tokrate.reports.fmt import entry_name, labelled_name, number, summary_stat


def fmt_summary(s: Summary, scale: float = 1.0, digits: int = 1) -> str:
    """``median ±stdev`` of a summary, '-' when there is no value."""
    if s.n == 0:
        return "-"
    if s.n == 1:
        return number(s.median, scale, digits)
    return f"{number(s.median, scale, digits)} ±{number(s.stdev, scale, digits)}"


COLUMNS: tuple[tuple[str, Callable[[Measurement], str]], ...] = (
    ("decode tok/s", lambda m: fmt_summary(m.decode_tps)),
    ("prefill tok/s", lambda m: fmt_summary(m.prefill_tps, digits=0)),
    ("TTFT ms", lambda m: fmt_summary(m.ttft, 1000.0)),
    ("TPOT ms", lambda m: fmt_summary(m.tpot, 1000.0, 2)),
    ("E2E ms", lambda m: fmt_summary(m.e2e, 1000.0, 0)),
    ("out tok", lambda m: fmt_summary(m.output_tokens, digits=0)),
    ("rounds", lambda m: str(m.rounds)),
)


def _name(m: Measurement) -> str:
    return labelled_name(m.test_id, m.label)


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> list[str]:
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in rows)
    return out


def terminal_lines(results: Sequence[Measurement]) -> list[str]:
    """One row per test and model: medians with their standard deviation."""
    if not results:
        return []
    header = ["test", "model", *(c[0] for c in COLUMNS)]
    rows = []
    for m in results:
        rows.append([_name(m), m.model.name, *(fn(m) for _, fn in COLUMNS)])
    lines = table(rows, header)
    lines.append("values: median ±stdev over the measured rounds (warm-up excluded)")
    notes = []
    for m in results:
        if m.empty_rounds:
            notes.append(
                f"note: {_name(m)} on {m.model.name}: {m.empty_rounds} of {m.rounds} rounds "
                "produced no tokens (no rates for those rounds)"
            )
        if m.decode_tps_engine.n == 0 and m.decode_tps.n > 0:
            notes.append(
                f"note: {_name(m)} on {m.model.name}: no engine timings; decode tok/s is the "
                "client-side (n-1)/(t_end - t_first)"
            )
    lines.extend(notes)
    lines.extend(yardstick_lines(results))
    return lines


def _ratio(a: float, b: float) -> str:
    if math.isnan(a) or math.isnan(b) or not b:
        return "-"
    return f"{a / b:.2f}"


def yardstick_lines(results: Sequence[Measurement]) -> list[str]:
    """Engine tokens vs one fixed tokenizer (cl100k_base) vs whitespace words.

    Raw tok/s is not comparable across tokenizers; ``norm tok/s`` re-counts each answer
    with cl100k_base (end to end, like ``e2e tok/s``), and ``words/tok`` shows how far
    the ``len(text.split())`` method is from the engine's own count.
    """
    rows = []
    for m in results:
        out, norm, words = m.output_tokens.median, m.normalized_tokens.median, m.words.median
        rows.append(
            [
                _name(m),
                m.model.name,
                number(out, digits=0),
                number(norm, digits=0),
                number(words, digits=0),
                _ratio(words, out),
                fmt_summary(m.e2e_tps),
                fmt_summary(m.normalized_tps),
            ]
        )
    if not rows:
        return []
    header = ["test", "model", "engine tok", "cl100k tok", "words", "words/tok"]
    header += ["e2e tok/s", "norm tok/s"]
    out_lines = ["", "token yardstick (medians): engine tokenizer vs cl100k_base vs words"]
    out_lines += table(rows, header)
    if all(m.normalized_tokens.n == 0 for m in results):
        out_lines.append(
            "note: cl100k_base could not be loaded, so the cl100k columns are empty "
            '(install "pytest-tokrate[tokens]")'
        )
    return out_lines


def sweep_terminal_lines(sweeps: Sequence[Mapping[str, Any]]) -> list[str]:
    """One block per sweep (report entries): a row per level, then its notes and errors."""
    header = [
        "level", "ok", "err", "TTFT p50 ms", "TTFT p99 ms", "E2E p50 ms", "E2E p99 ms",
        "tok/s/req", "agg tok/s", "agg cl100k/s",
    ]  # fmt: skip
    lines: list[str] = []
    for sweep in sweeps:
        lines.append(f"{entry_name(sweep)} on {sweep['model']['name']}")
        rows = [
            [
                lv["name"],
                str(lv["completed"]),
                str(lv["failed"]),
                number(summary_stat(lv, "ttft", "p50"), 1000, 0),
                number(summary_stat(lv, "ttft", "p99"), 1000, 0),
                number(summary_stat(lv, "e2e", "p50"), 1000, 0),
                number(summary_stat(lv, "e2e", "p99"), 1000, 0),
                number(summary_stat(lv, "decode_tps", "median")),
                number(lv["throughput_tps"]),
                number(lv["normalized_throughput_tps"]),
            ]
            for lv in sweep["levels"]
        ]
        lines += ["  " + line for line in table(rows, header)]
        lines += [f"  note: {n}" for n in sweep["notes"]]
        for lv in sweep["levels"]:
            for err in lv["errors"]:
                lines.append(f"  errors at {lv['name']}: {err['count']} x {err['message']}")
    return lines


__all__ = ["fmt_summary", "sweep_terminal_lines", "table", "terminal_lines", "yardstick_lines"]
