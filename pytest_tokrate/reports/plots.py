"""Plots of a run, drawn from the report dictionary: one PNG file per plot.

=============================  ==========================================================
``latency_vs_concurrency.png``  E2E p50/p99 and TTFT p50 (s) vs requests in flight
``throughput_vs_concurrency.png``  aggregate tok/s and per-request decode tok/s vs concurrency
``tps_vs_gen_length.png``       decode and end-to-end tok/s vs generation length (num_predict)
``ttft_vs_prompt_length.png``   TTFT (s) vs prompt tokens
``speed_vs_quality.png``        speed vs pass rate per model, Pareto frontier marked
=============================  ==========================================================

A plot is drawn only when its data exist (a sweep with two or more levels along its axis,
or quality checks on at least one model); otherwise :class:`PlotResult` says why it was
skipped. The line plots (one panel per figure, colour per model, style per level) are
built in :mod:`pytest_tokrate.reports.plotlines`. matplotlib is imported lazily and used
through its Agg canvas only (no pyplot, no change to the process-wide backend).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_tokrate.errors import ReportError, UsageError
from pytest_tokrate.reports.fmt import summary_stat
from pytest_tokrate.reports.plotlines import Getter, LinePlot, line_figure
from pytest_tokrate.reports.plotlines import save_png as _save

PLOTS_EXTRA = '`pip install "pytest-tokrate[plots]"` (matplotlib)'


def require_matplotlib(setting: str = "--tokrate-plots") -> None:
    """Raise :class:`UsageError` when plots are asked for but matplotlib is missing."""
    try:
        found = importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise UsageError(
            f"{setting} needs matplotlib to draw plots, and it is not installed: install "
            f"it with {PLOTS_EXTRA}, or drop {setting}."
        )


@dataclass
class PlotResult:
    files: list[tuple[str, Path]] = field(default_factory=list)  # (title, path)
    skipped: list[str] = field(default_factory=list)


def _stat(figure: str, stat: str) -> Getter:
    return lambda lv: summary_stat(lv, figure, stat)


_CONCURRENCY = "concurrency (requests in flight)"
_NO_CONCURRENCY = "latency/throughput vs concurrency: no sweep with 2+ concurrency levels"

#: every line plot, in the order they are drawn and listed
LINE_PLOTS: tuple[LinePlot, ...] = (
    LinePlot(
        "latency_vs_concurrency.png",
        "Latency vs concurrency",
        "concurrency",
        _CONCURRENCY,
        "latency per request (s)",
        (
            ("end-to-end p50", _stat("e2e", "p50")),
            ("end-to-end p99", _stat("e2e", "p99")),
            ("time to first token p50", _stat("ttft", "p50")),
        ),
        _NO_CONCURRENCY,
    ),
    LinePlot(
        "throughput_vs_concurrency.png",
        "Throughput vs concurrency",
        "concurrency",
        _CONCURRENCY,
        "output tokens/s",
        (
            ("aggregate (all requests)", lambda lv: lv.get("throughput_tps")),
            ("per request (decode, median)", _stat("decode_tps", "median")),
        ),
    ),  # skipped together with the latency plot: one line in the terminal
    LinePlot(
        "tps_vs_gen_length.png",
        "Tokens/s vs generation length",
        "num_predict",
        "generation length (tokens requested, num_predict)",
        "output tokens/s per request (median)",
        (
            ("decode", _stat("decode_tps", "median")),
            ("end-to-end (incl. time to first token)", _stat("e2e_tps", "median")),
        ),
        "tok/s vs generation length: no sweep with 2+ generation lengths",
    ),
    LinePlot(
        "ttft_vs_prompt_length.png",
        "Time to first token vs prompt length",
        "prompt_length",
        "prompt length (cl100k tokens requested)",
        "time to first token (s)",
        (("p50", _stat("ttft", "p50")),),
    ),
)


def _pareto(points: Sequence[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Points no other point beats on both speed and quality, fastest first."""
    frontier: list[tuple[str, float, float]] = []
    best_quality = float("-inf")
    for name, speed, quality in sorted(points, key=lambda p: (-p[1], -p[2])):
        if quality > best_quality:
            frontier.append((name, speed, quality))
            best_quality = quality
    return frontier


def quality_points(report: Mapping[str, Any]) -> tuple[list[tuple[str, float, float]], str]:
    """(model, speed, pass rate %) per model with quality checks, and the speed's unit.

    Speed is the median end-to-end rate in cl100k tokens/s when every model has it
    (comparable across tokenizers), else in the engine's own tokens/s.
    """
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for m in report.get("measurements", []):
        if m.get("pass_rate") is not None:
            groups.setdefault(m["model"]["name"], []).append(m)
    normalized = all(
        m["yardstick"]["normalized_tps"] is not None for g in groups.values() for m in g
    )
    key = "normalized_tps" if normalized else "e2e_tps"
    unit = "cl100k tokens/s" if normalized else "tokens/s (engine's tokenizer)"
    points = []
    for model, entries in groups.items():
        speeds = sorted(m["yardstick"][key] for m in entries if m["yardstick"][key] is not None)
        if not speeds:
            continue
        rounds = sum(max(m["rounds"], 1) for m in entries)
        quality = sum(m["pass_rate"] * max(m["rounds"], 1) for m in entries) / rounds
        points.append((model, speeds[len(speeds) // 2], 100.0 * quality))
    return points, unit


def _quality_plot(report: Mapping[str, Any], path: Path) -> bool:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points, unit = quality_points(report)
    if not points:
        return False
    fig = Figure(figsize=(7.5, 4.8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    # the frontier is named in the title, not a legend that could cover a model
    fig.suptitle(
        "Speed vs quality per model\ncircled: the Pareto frontier "
        "(no other model is both faster and better)",
        fontsize="large",
    )
    ax.set_xlabel(f"end-to-end speed ({unit}, median)")
    ax.set_ylabel("pass rate (%)")
    ax.grid(True, alpha=0.3)
    ax.scatter([p[1] for p in points], [p[2] for p in points], color="C0", zorder=3)
    for name, x, y in points:
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 6), fontsize="small")
    frontier = _pareto(points)
    ax.step(
        [p[1] for p in frontier],
        [p[2] for p in frontier],
        where="post",
        color="C3",
        alpha=0.6,
        marker="o",
        markersize=11,
        markerfacecolor="none",
    )
    ax.set_ylim(-5, 110)  # room above 100% for the names
    ax.set_xlim(0, 1.25 * max(p[1] for p in points))  # and right of the fastest
    _save(fig, path)
    return True


def write_plots(report: Mapping[str, Any], out_dir: Path) -> PlotResult:
    """Draw every plot the report has data for into ``out_dir``."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ReportError(f"plots need matplotlib: install it with {PLOTS_EXTRA}.") from None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create the plot directory {out_dir}: {exc.strerror}") from None
    result = PlotResult()
    for plot in LINE_PLOTS:
        fig = line_figure(report, plot)
        if fig is None:
            if plot.skip:
                result.skipped.append(plot.skip)
            continue
        path = out_dir / plot.file
        _save(fig, path)
        result.files.append((plot.title, path))
    path = out_dir / "speed_vs_quality.png"
    if _quality_plot(report, path):
        result.files.append(("Speed vs quality", path))
    else:
        result.skipped.append("speed vs quality: no measurement with quality checks")
    return result


__all__ = ["LINE_PLOTS", "PlotResult", "quality_points", "require_matplotlib", "write_plots"]
