"""Turning measurements into text: the terminal table at the end of a run.

Pure: returns plain strings; the glue writes them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from .result import Measurement
from .stats import Summary


def fmt_value(x: float, scale: float = 1.0, digits: int = 1) -> str:
    if x is None or math.isnan(x):
        return "-"
    return f"{x * scale:.{digits}f}"


def fmt_summary(s: Summary, scale: float = 1.0, digits: int = 1) -> str:
    """``median ±stdev`` of a summary, '-' when there is no value."""
    if s.n == 0:
        return "-"
    if s.n == 1:
        return fmt_value(s.median, scale, digits)
    return f"{fmt_value(s.median, scale, digits)} ±{fmt_value(s.stdev, scale, digits)}"


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
    name = m.test_id or "?"
    if m.label:
        name += f" ({m.label})"
    return name


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
                fmt_value(out, digits=0),
                fmt_value(norm, digits=0),
                fmt_value(words, digits=0),
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


__all__ = ["fmt_summary", "table", "terminal_lines", "yardstick_lines"]
