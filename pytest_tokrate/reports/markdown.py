"""The Markdown summary of a run.

Pure: renders the report dictionary of :mod:`pytest_tokrate.reports.document`. Everything that
comes from outside (test ids, model names, model output quoted in verdicts, error
messages) is escaped, so a model answer cannot break the tables or inject HTML.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_tokrate.reports.fmt import entry_name, number, percent, summary_stat
from pytest_tokrate.reports.gate import gate_markdown
from pytest_tokrate.reports.mdtext import md_escape, md_fence, md_table
from pytest_tokrate.reports.tradeoff import (
    HEADER,
    REPEATED_NOTE,
    model_line,
    reference_note,
    repeated,
    row_cells,
)

_TAIL = ("p50", "p90", "p99")  # the latency percentiles a sweep row shows


def _verdict_cell(m: Mapping[str, Any]) -> str:
    sev = [f.get("severity") for f in m.get("findings", [])]
    for level, label in (("fail", "❌ fail"), ("warn", "⚠️ warn")):
        if level in sev:
            kinds = sorted({f.get("kind", "?") for f in m["findings"] if f["severity"] == level})
            return f"{label} ({md_escape(', '.join(kinds))})"
    return "✅ ok"


def markdown(
    report: Mapping[str, Any],
    plot_links: Sequence[tuple[str, str]] = (),
    embed_images: bool = True,
) -> str:
    """The run as Markdown: headline, the trade-off between models, speed table, the
    gate's verdicts on baselines, sweeps with their notes and errors, failing findings,
    plot links.

    ``plot_links`` pairs a title with a path relative to the summary file; the images are
    embedded, or with ``embed_images=False`` (a CI job summary, which cannot show local
    files) listed as paths to find in the uploaded artifacts.
    """
    measurements = report["measurements"]
    out = _headline(report["summary"])
    out += _tradeoff(report)
    out += _speed_table(measurements)
    out += gate_markdown(report.get("gate") or [])
    for sweep in report["sweeps"]:
        out += _sweep_markdown(sweep)
    out += _verdicts(measurements)
    out += _plots(plot_links, embed_images)
    out += _environment(report)
    return "\n".join(out)


#: pytest's order of outcomes in its summary line; other plugins' categories follow.
_PYTEST_ORDER = ("failed", "passed", "skipped", "xfailed", "xpassed", "error")


def outcome_text(counts: Mapping[str, int]) -> str:
    """Counts worded as pytest's summary line words them ("3 failed, 5 passed, 1 error")."""
    order = [*_PYTEST_ORDER, *sorted(set(counts) - set(_PYTEST_ORDER))]
    words = []
    for key in order:
        n = counts.get(key, 0)
        if n:
            words.append(f"{n} {key}s" if key == "error" and n != 1 else f"{n} {key}")
    return ", ".join(words) or "none"


def _headline(summary: Mapping[str, Any]) -> list[str]:
    """pytest's counts over every test first, then the tests that used tokrate."""
    s, v = summary, summary["verdicts"]
    return [
        "## pytest-tokrate",
        "",
        f"**{s['tests']} test(s)**: {outcome_text(s['outcomes'])} (as pytest counts them) · "
        f"**{s['tokrate_tests']} used tokrate**: {outcome_text(s['tokrate_outcomes'])} · "
        f"{s['measurements']} measurement(s) · {s['sweeps']} sweep(s), "
        f"{s['sweep_errors']} failed request(s) · verdicts: {v['fail']} fail, {v['warn']} warn",
        "",
    ]


def _tradeoff(report: Mapping[str, Any]) -> list[str]:
    """The model trade-off: per test, then one line per model against the reference."""
    entries = report.get("tradeoff") or []
    if not entries:
        return []
    rows = [[md_escape(cell) for cell in row_cells(e)] for e in entries]
    out = ["### Trade-off between models", "", *md_table(HEADER, rows), ""]
    out += [f"- {md_escape(model_line(m), 400)}" for m in report.get("tradeoff_models") or []]
    out += ["", md_escape(reference_note(str(entries[0]["reference"])), 400)]
    if repeated(entries):
        out += ["", md_escape(REPEATED_NOTE, 400)]
    out.append("")
    return out


def _speed_table(measurements: Sequence[Mapping[str, Any]]) -> list[str]:
    """One row per test and model: medians of speed, the token yardstick and the verdict."""
    if not measurements:
        return []
    header = [
        "test", "model", "decode tok/s", "e2e tok/s", "e2e tok/s (cl100k)", "words/s",
        "TTFT p50 ms", "E2E p50 ms", "out tok", "cl100k tok", "words", "pass rate",
        "verdict",
    ]  # fmt: skip
    rows = []
    for m in measurements:
        y = m["yardstick"]
        rows.append(
            [
                md_escape(entry_name(m)),
                md_escape(m["model"]["name"]),
                number(summary_stat(m, "decode_tps", "median")),
                number(y["e2e_tps"]),
                number(y["normalized_tps"]),
                number(y["words_per_s"]),
                number(summary_stat(m, "ttft", "p50"), 1000),
                number(summary_stat(m, "e2e", "p50"), 1000, 0),
                number(y["engine_tokens"], digits=0),
                number(y["cl100k_tokens"], digits=0),
                number(y["words"], digits=0),
                percent(m.get("pass_rate")),
                _verdict_cell(m),
            ]
        )
    return [
        "### Speed per test and model",
        "",
        *md_table(header, rows),
        "",
        "Medians over the measured rounds. *e2e tok/s* counts the engine's tokens, "
        "*(cl100k)* re-counts each answer with tiktoken's cl100k_base (comparable across "
        "model families), *words/s* is the `len(text.split())` method.",
        "",
    ]


def _verdicts(measurements: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every warn and fail finding in full, fenced: its message may quote model output."""
    fails = [(m, f) for m in measurements for f in m.get("findings", []) if f["severity"] != "info"]
    if not fails:
        return []
    out = ["### Verdicts", ""]
    for m, f in fails:
        out.append(
            f"**{f['severity']}** · {md_escape(entry_name(m))} on "
            f"{md_escape(m['model']['name'])} · {md_escape(f.get('kind', ''))}"
        )
        out += ["", md_fence(str(f.get("message", ""))), ""]
    return out


def _plots(plot_links: Sequence[tuple[str, str]], embed_images: bool) -> list[str]:
    if not plot_links:
        return []
    out = ["### Plots", ""]
    for title, target in plot_links:
        if embed_images:
            out.append(f"![{md_escape(title)}](<{target}>)")
        else:
            out.append(f"- {md_escape(title)}: `{target}`")
    out.append("")
    return out


def _environment(report: Mapping[str, Any]) -> list[str]:
    """The closing lines: which GPU was watched, and whether the cl100k columns are filled."""
    out = []
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
    return out


def _sweep_markdown(sweep: Mapping[str, Any]) -> list[str]:
    varied = ", ".join(sweep["varied"]) or "one level"
    out = [
        f"### Sweep: {md_escape(entry_name(sweep))} on {md_escape(sweep['model']['name'])} "
        f"({md_escape(varied)})",
        "",
    ]
    header = [
        "level", "ok / failed", "TTFT p50/p90/p99 ms", "TPOT p50 ms", "E2E p50/p90/p99 ms",
        "decode tok/s per request", "aggregate tok/s", "aggregate tok/s (cl100k)", "J/token",
    ]  # fmt: skip
    rows = []
    for lv in sweep["levels"]:
        ttft = "/".join(number(summary_stat(lv, "ttft", p), 1000, 0) for p in _TAIL)
        e2e = "/".join(number(summary_stat(lv, "e2e", p), 1000, 0) for p in _TAIL)
        gpu = lv.get("gpu") or {}
        rows.append(
            [
                md_escape(lv["name"]),
                f"{lv['completed']} / {lv['failed']}",
                ttft,
                number(summary_stat(lv, "tpot", "p50"), 1000, 2),
                e2e,
                number(summary_stat(lv, "decode_tps", "median")),
                number(lv["throughput_tps"]),
                number(lv["normalized_throughput_tps"]),
                number(gpu.get("j_per_token"), digits=3),
            ]
        )
    out += md_table(header, rows, right=1)
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


__all__ = ["markdown", "md_escape", "md_fence", "outcome_text"]
