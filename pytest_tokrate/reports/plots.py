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
skipped. matplotlib is imported lazily and used through its Agg canvas only (no pyplot,
no change to the process-wide backend).
"""

from __future__ import annotations

import importlib.util
import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_tokrate.errors import ReportError, UsageError
from pytest_tokrate.reports.document import write_bytes
from pytest_tokrate.reports.fmt import summary_stat

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


def _base_test(test_id: str | None) -> str:
    return re.sub(r"\[.*\]$", "", test_id or "?")


Series = dict[tuple[Any, ...], dict[int, Mapping[str, Any]]]


def _series(report: Mapping[str, Any], x_key: str, fixed: Sequence[str]) -> Series:
    """Levels grouped into lines: same model, test, label and fixed values; keyed by x.

    Parametrized items of one test (``test_x[c8]``, ``test_x[c32]``) join one line.
    """
    out: Series = {}
    for sweep in report.get("sweeps", []):
        for lv in sweep["levels"]:
            if lv.get(x_key) is None or not lv["completed"]:
                continue
            key = (
                sweep["model"]["name"],
                _base_test(sweep.get("test_id")),
                sweep.get("label"),
                bool(sweep.get("serialised")),
                tuple((k, lv.get(k)) for k in fixed),
            )
            out.setdefault(key, {})[int(lv[x_key])] = lv
    return {k: v for k, v in out.items() if len(v) >= 2}


def _labels(series: Series, show_serialised: bool) -> dict[tuple[Any, ...], str]:
    tests = {key[1] for key in series}
    labels = {}
    for key in series:
        model, test, label, serialised, fixed = key
        parts = [str(model)]
        if len(tests) > 1:
            parts.append(test.rsplit("::", 1)[-1])
        if label:
            parts.append(str(label))
        parts += [f"{_SHORT.get(k, k)}={v}" for k, v in fixed if v is not None]
        if serialised and show_serialised:
            parts.append("engine serves 1 at a time")
        labels[key] = " · ".join(parts)
    return labels


_SHORT = {"concurrency": "c", "num_predict": "n", "prompt_length": "p"}


def _figure(title: str, xlabel: str, ylabel: str) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _log2_x(ax: Any, xs: Sequence[int]) -> None:
    if xs and min(xs) > 0 and max(xs) / min(xs) >= 8:
        ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(set(xs)))
    ax.set_xticklabels([str(x) for x in sorted(set(xs))])


def _save(fig: Any, path: Path) -> None:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    write_bytes(path, buffer.getvalue(), what=f"the plot {path}")


Line = tuple[str, Callable[[Mapping[str, Any]], float | None], str]


def _line_plot(
    series: Series,
    lines: Sequence[Line],
    title: str,
    xlabel: str,
    ylabel: str,
    path: Path,
) -> None:
    fig, ax = _figure(title, xlabel, ylabel)
    labels = _labels(series, show_serialised=xlabel.startswith("concurrency"))
    colors = [f"C{i % 10}" for i in range(len(series))]
    all_x: list[int] = []
    for color, (key, points) in zip(colors, sorted(series.items(), key=str), strict=True):
        xs = sorted(points)
        all_x += xs
        for name, getter, style in lines:
            pairs = [(x, getter(points[x])) for x in xs]
            kept = [(x, y) for x, y in pairs if y is not None]
            if not kept:
                continue
            ax.plot(
                [x for x, _ in kept],
                [y for _, y in kept],
                style,
                color=color,
                marker="o",
                markersize=4,
                label=f"{labels[key]}: {name}",
            )
    _log2_x(ax, all_x)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small")
    _save(fig, path)


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
    points, unit = quality_points(report)
    if not points:
        return False
    fig, ax = _figure("Speed vs quality per model", f"end-to-end speed ({unit})", "pass rate (%)")
    ax.scatter([p[1] for p in points], [p[2] for p in points], color="C0", zorder=3)
    for name, x, y in points:
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5), fontsize="small")
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
        label="Pareto frontier (no model is both faster and better)",
    )
    ax.set_ylim(-5, 105)
    ax.set_xlim(left=0)
    ax.legend(fontsize="small")
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
    _concurrency_plots(report, out_dir, result)
    _gen_length_plot(report, out_dir, result)
    _prompt_length_plot(report, out_dir, result)
    path = out_dir / "speed_vs_quality.png"
    if _quality_plot(report, path):
        result.files.append(("Speed vs quality", path))
    else:
        result.skipped.append("speed vs quality: no measurement with quality checks")
    return result


def _concurrency_plots(report: Mapping[str, Any], out_dir: Path, result: PlotResult) -> None:
    """Latency and throughput against requests in flight, one line per sweep."""
    by_conc = _series(report, "concurrency", ("num_predict", "prompt_length"))
    if not by_conc:
        result.skipped.append(
            "latency/throughput vs concurrency: no sweep with 2+ concurrency levels"
        )
        return
    conc_axis = "concurrency (requests in flight)"
    path = out_dir / "latency_vs_concurrency.png"
    _line_plot(
        by_conc,
        [
            ("E2E p50", lambda lv: summary_stat(lv, "e2e", "p50"), "-"),
            ("E2E p99", lambda lv: summary_stat(lv, "e2e", "p99"), ":"),
            ("TTFT p50", lambda lv: summary_stat(lv, "ttft", "p50"), "--"),
        ],
        "Latency vs concurrency",
        conc_axis,
        "latency per request (s)",
        path,
    )
    result.files.append(("Latency vs concurrency", path))
    path = out_dir / "throughput_vs_concurrency.png"
    _line_plot(
        by_conc,
        [
            ("aggregate", lambda lv: lv.get("throughput_tps"), "-"),
            ("per request (decode)", lambda lv: summary_stat(lv, "decode_tps", "median"), "--"),
        ],
        "Throughput vs concurrency",
        conc_axis,
        "output tokens/s",
        path,
    )
    result.files.append(("Throughput vs concurrency", path))


def _gen_length_plot(report: Mapping[str, Any], out_dir: Path, result: PlotResult) -> None:
    by_gen = _series(report, "num_predict", ("concurrency", "prompt_length"))
    if not by_gen:
        result.skipped.append("tok/s vs generation length: no sweep with 2+ generation lengths")
        return
    path = out_dir / "tps_vs_gen_length.png"
    _line_plot(
        by_gen,
        [
            ("decode", lambda lv: summary_stat(lv, "decode_tps", "median"), "-"),
            ("end-to-end", lambda lv: summary_stat(lv, "e2e_tps", "median"), "--"),
        ],
        "Tokens/s vs generation length",
        "generation length (tokens requested, num_predict)",
        "output tokens/s per request (median)",
        path,
    )
    result.files.append(("Tokens/s vs generation length", path))


def _prompt_length_plot(report: Mapping[str, Any], out_dir: Path, result: PlotResult) -> None:
    by_prompt = _series(report, "prompt_length", ("concurrency", "num_predict"))
    if not by_prompt:
        return
    path = out_dir / "ttft_vs_prompt_length.png"
    _line_plot(
        by_prompt,
        [("TTFT p50", lambda lv: summary_stat(lv, "ttft", "p50"), "-")],
        "Time to first token vs prompt length",
        "prompt length (cl100k tokens requested)",
        "TTFT (s)",
        path,
    )
    result.files.append(("TTFT vs prompt length", path))


__all__ = ["PlotResult", "quality_points", "require_matplotlib", "write_plots"]
