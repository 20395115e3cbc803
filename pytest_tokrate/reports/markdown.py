"""The Markdown summary of a run (and the sweep table of the terminal report).

Pure: renders the report dictionary of :mod:`pytest_tokrate.reporting`. Everything that
comes from outside (test ids, model names, model output quoted in verdicts, error
messages) is escaped, so a model answer cannot break the tables or inject HTML.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any


def fmt(x: Any, scale: float = 1.0, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{float(x) * scale:.{digits}f}"


def _stat(summaries: Mapping[str, Any], figure: str, stat: str) -> Any:
    return (summaries.get(figure) or {}).get(stat)


# -- Markdown -------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~#])")


def md_escape(text: Any, limit: int = 200) -> str:
    """Make any text (test ids, model names, model output) safe inside a Markdown table
    cell: HTML and Markdown syntax neutralised, one line, at most ``limit`` characters."""
    s = " ".join(str(text).split())
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", s)


def md_fence(text: str) -> str:
    """A fenced code block that no backtick run inside ``text`` can close."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: int = 2) -> list[str]:
    align = [":--" if i < right else "--:" for i in range(len(header))]
    return [_row(header), _row(align), *(_row(r) for r in rows)]


def _verdict_cell(m: Mapping[str, Any]) -> str:
    sev = [f.get("severity") for f in m.get("findings", [])]
    for level, label in (("fail", "❌ fail"), ("warn", "⚠️ warn")):
        if level in sev:
            kinds = sorted({f.get("kind", "?") for f in m["findings"] if f["severity"] == level})
            return f"{label} ({md_escape(', '.join(kinds))})"
    return "✅ ok"


def _name(entry: Mapping[str, Any]) -> str:
    name = str(entry.get("test_id") or "?")
    if entry.get("label"):
        name += f" ({entry['label']})"
    return name


def markdown(
    report: Mapping[str, Any],
    plot_links: Sequence[tuple[str, str]] = (),
    embed_images: bool = True,
) -> str:
    """The run as Markdown: headline, tables, sweep notes and errors, verdicts, plot links.

    ``plot_links`` pairs a title with a path relative to the summary file; the images are
    embedded, or with ``embed_images=False`` (a CI job summary, which cannot show local
    files) listed as paths to find in the uploaded artifacts.
    """
    s = report["summary"]
    out = ["## pytest-tokrate", ""]
    outcome_text = ", ".join(f"{n} {k}" for k, n in sorted(s["outcomes"].items())) or "none"
    v = s["verdicts"]
    out.append(
        f"**{s['tests']} tokrate test(s)**: {outcome_text} · {s['measurements']} "
        f"measurement(s) · {s['sweeps']} sweep(s), {s['sweep_errors']} failed request(s) · "
        f"verdicts: {v['fail']} fail, {v['warn']} warn"
    )
    out.append("")
    measurements = report["measurements"]
    if measurements:
        out += ["### Speed per test and model", ""]
        header = [
            "test", "model", "decode tok/s", "e2e tok/s", "e2e tok/s (cl100k)", "words/s",
            "TTFT p50 ms", "E2E p50 ms", "out tok", "cl100k tok", "words", "pass rate",
            "verdict",
        ]  # fmt: skip
        rows = []
        for m in measurements:
            sm, y = m["summaries"], m["yardstick"]
            rate = m.get("pass_rate")
            rows.append(
                [
                    md_escape(_name(m)),
                    md_escape(m["model"]["name"]),
                    fmt(_stat(sm, "decode_tps", "median")),
                    fmt(y["e2e_tps"]),
                    fmt(y["normalized_tps"]),
                    fmt(y["words_per_s"]),
                    fmt(_stat(sm, "ttft", "p50"), 1000),
                    fmt(_stat(sm, "e2e", "p50"), 1000, 0),
                    fmt(y["engine_tokens"], digits=0),
                    fmt(y["cl100k_tokens"], digits=0),
                    fmt(y["words"], digits=0),
                    "-" if rate is None else f"{100 * rate:.0f}%",
                    _verdict_cell(m),
                ]
            )
        out += _table(header, rows)
        out += [
            "",
            "Medians over the measured rounds. *e2e tok/s* counts the engine's tokens, "
            "*(cl100k)* re-counts each answer with tiktoken's cl100k_base (comparable across "
            "model families), *words/s* is the `len(text.split())` method.",
            "",
        ]
    for sweep in report["sweeps"]:
        out += _sweep_markdown(sweep)
    fails = [(m, f) for m in measurements for f in m.get("findings", []) if f["severity"] != "info"]
    if fails:
        out += ["### Verdicts", ""]
        for m, f in fails:
            out.append(
                f"**{f['severity']}** · {md_escape(_name(m))} on "
                f"{md_escape(m['model']['name'])} · {md_escape(f.get('kind', ''))}"
            )
            out += ["", md_fence(str(f.get("message", ""))), ""]
    if plot_links:
        out += ["### Plots", ""]
        for title, target in plot_links:
            if embed_images:
                out.append(f"![{md_escape(title)}](<{target}>)")
            else:
                out.append(f"- {md_escape(title)}: `{target}`")
        out.append("")
    gpu = report["gpu"]
    if gpu.get("available"):
        names = ", ".join(md_escape(d.get("name")) for d in gpu.get("devices", []))
        out.append(f"GPU: {names}, driver {md_escape(gpu.get('driver'))}.")
    else:
        out.append(f"GPU telemetry: absent ({md_escape(gpu.get('reason'))}).")
    tok = report["tokenizer"]
    if not tok.get("available"):
        out.append(
            f"Normalized token counts: unavailable ({md_escape(tok.get('reason'))}); the "
            "cl100k columns are empty."
        )
    out.append("")
    return "\n".join(out)


def _sweep_markdown(sweep: Mapping[str, Any]) -> list[str]:
    varied = ", ".join(sweep["varied"]) or "one level"
    out = [
        f"### Sweep: {md_escape(_name(sweep))} on {md_escape(sweep['model']['name'])} "
        f"({md_escape(varied)})",
        "",
    ]
    header = [
        "level", "ok / failed", "TTFT p50/p90/p99 ms", "TPOT p50 ms", "E2E p50/p90/p99 ms",
        "decode tok/s per request", "aggregate tok/s", "aggregate tok/s (cl100k)", "J/token",
    ]  # fmt: skip
    rows = []
    for lv in sweep["levels"]:
        sm = lv["summaries"]
        ttft = "/".join(fmt(_stat(sm, "ttft", p), 1000, 0) for p in ("p50", "p90", "p99"))
        e2e = "/".join(fmt(_stat(sm, "e2e", p), 1000, 0) for p in ("p50", "p90", "p99"))
        gpu = lv.get("gpu") or {}
        rows.append(
            [
                md_escape(lv["name"]),
                f"{lv['completed']} / {lv['failed']}",
                ttft,
                fmt(_stat(sm, "tpot", "p50"), 1000, 2),
                e2e,
                fmt(_stat(sm, "decode_tps", "median")),
                fmt(lv["throughput_tps"]),
                fmt(lv["normalized_throughput_tps"]),
                fmt(gpu.get("j_per_token"), digits=3),
            ]
        )
    out += _table(header, rows, right=1)
    out.append("")
    for note in sweep["notes"]:
        out.append(f"- {md_escape(note, 400)}")
    for lv in sweep["levels"]:
        for err in lv["errors"]:
            out.append(
                f"- level {md_escape(lv['name'])}: {err['count']} × {md_escape(err['message'])}"
            )
    out.append("")
    return out


# -- terminal -----------------------------------------------------------------------------------


def sweep_terminal_lines(sweeps: Sequence[Mapping[str, Any]]) -> list[str]:
    """One block per sweep: a row per level, then its notes and errors."""
    from .report import table

    lines: list[str] = []
    for sweep in sweeps:
        lines.append(f"{_name(sweep)} on {sweep['model']['name']}")
        header = [
            "level", "ok", "err", "TTFT p50 ms", "TTFT p99 ms", "E2E p50 ms", "E2E p99 ms",
            "tok/s/req", "agg tok/s", "agg cl100k/s",
        ]  # fmt: skip
        rows = []
        for lv in sweep["levels"]:
            sm = lv["summaries"]
            rows.append(
                [
                    lv["name"],
                    str(lv["completed"]),
                    str(lv["failed"]),
                    fmt(_stat(sm, "ttft", "p50"), 1000, 0),
                    fmt(_stat(sm, "ttft", "p99"), 1000, 0),
                    fmt(_stat(sm, "e2e", "p50"), 1000, 0),
                    fmt(_stat(sm, "e2e", "p99"), 1000, 0),
                    fmt(_stat(sm, "decode_tps", "median")),
                    fmt(lv["throughput_tps"]),
                    fmt(lv["normalized_throughput_tps"]),
                ]
            )
        lines += ["  " + line for line in table(rows, header)]
        lines += [f"  note: {n}" for n in sweep["notes"]]
        for lv in sweep["levels"]:
            for err in lv["errors"]:
                lines.append(f"  errors at {lv['name']}: {err['count']} x {err['message']}")
    return lines


__all__ = ["fmt", "markdown", "md_escape", "md_fence", "sweep_terminal_lines"]
