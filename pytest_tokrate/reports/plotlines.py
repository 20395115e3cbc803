"""Line plots of sweep levels, built so that a plot of many models and lengths stays readable.

A curve is one model at one *variant* (the level dimensions other than the x axis: the
generation length, concurrency or prompt length held fixed, the test, the label). Colour
names the model and line style with marker names the variant, so the legend has one entry
per model plus one per variant, not one per curve and figure. Each figure gets a panel of
its own (sharing the y axis), the legends sit outside the axes, and what every curve
shares (the one model, a fixed level, an engine that serves one request at a time) is
said once, under the title. matplotlib is used through its Agg canvas only.
"""

from __future__ import annotations

import io
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_tokrate.reports.document import write_bytes

Getter = Callable[[Mapping[str, Any]], float | None]


@dataclass(frozen=True)
class LinePlot:
    """What one line-plot file shows: the x axis and one panel per figure of a level."""

    file: str
    title: str
    x_key: str  # a level's dimension: concurrency, num_predict or prompt_length
    xlabel: str
    ylabel: str
    panels: tuple[tuple[str, Getter], ...]
    skip: str | None = None  # why it is absent, for the terminal; None: not worth a line


@dataclass(frozen=True)
class Curve:
    model: str
    variant: tuple[tuple[str, Any], ...]  # (dimension, value), dimensions in DIMENSIONS order
    serialised: bool
    points: Mapping[int, Mapping[str, Any]]  # x -> level


# dimension -> (legend title when it alone varies, short prefix when several vary)
DIMENSIONS: dict[str, tuple[str, str]] = {
    "test": ("test", ""),
    "label": ("label", ""),
    "concurrency": ("concurrency (requests in flight)", "c="),
    "num_predict": ("generation length (tokens)", "n="),
    "prompt_length": ("prompt length (cl100k tokens)", "p="),
}
LEVEL_KEYS = ("concurrency", "num_predict", "prompt_length")
# line style and marker together, so variants differ in print and for colour-blind readers
STYLES: tuple[tuple[Any, str], ...] = (
    ("-", "o"),
    ("--", "s"),
    (":", "^"),
    ("-.", "D"),
    ((0, (6, 2)), "v"),
    ((0, (3, 1, 1, 1, 1, 1)), "P"),
    ((0, (1, 3)), "X"),
    ((0, (8, 2, 1, 2)), "*"),
)
ENGINE_NOTE = "serves one request at a time (requests queue, no batching)"


def _base_test(test_id: str | None) -> str:
    """Parametrized items of one test (``test_x[c8]``, ``test_x[c32]``) join one curve."""
    return re.sub(r"\[.*\]$", "", test_id or "?")


def _shown(dim: str, value: Any) -> str:
    """A variant value as a legend or title shows it (a test by its function name)."""
    return str(value).rsplit("::", 1)[-1] if dim == "test" else str(value)


def curves(report: Mapping[str, Any], x_key: str) -> list[Curve]:
    """The report's sweep levels as curves along ``x_key``; a curve needs two points."""
    grouped: dict[tuple[str, tuple[tuple[str, Any], ...]], dict[int, Mapping[str, Any]]] = {}
    serialised: set[tuple[str, tuple[tuple[str, Any], ...]]] = set()
    for sweep in report.get("sweeps", []):
        for lv in sweep["levels"]:
            if lv.get(x_key) is None or not lv["completed"]:
                continue
            variant = (
                ("test", _base_test(sweep.get("test_id"))),
                ("label", sweep.get("label")),
                *((k, lv.get(k)) for k in LEVEL_KEYS if k != x_key),
            )
            key = (str(sweep["model"]["name"]), variant)
            grouped.setdefault(key, {})[int(lv[x_key])] = lv
            if sweep.get("serialised"):
                serialised.add(key)
    return [
        Curve(model, variant, (model, variant) in serialised, points)
        for (model, variant), points in grouped.items()
        if len(points) >= 2
    ]


def _order(value: Any) -> tuple[int, float, str]:
    """Numbers in numeric order, then text, then None."""
    if isinstance(value, int | float):
        return (0, float(value), "")
    return (1, 0.0, str(value)) if value is not None else (2, 0.0, "")


@dataclass(frozen=True)
class Layout:
    """Who gets which colour and style, the legend groups, and what is said once."""

    models: list[str]
    variants: list[tuple[tuple[str, Any], ...]]
    varying: list[str]  # the variant dimensions that differ between curves
    constant: list[str]  # "n=32", "test_grid": shared by every curve

    @classmethod
    def of(cls, found: Sequence[Curve]) -> Layout:
        models = list(dict.fromkeys(c.model for c in found))  # first seen first: the reference
        variants = sorted({c.variant for c in found}, key=lambda v: [_order(x) for _, x in v])
        varying, constant = [], []
        for i, (dim, _) in enumerate(variants[0]):
            values = {v[i][1] for v in variants}
            if len(values) > 1:
                varying.append(dim)
            elif (value := next(iter(values))) is not None:
                constant.append(f"{DIMENSIONS[dim][1]}{_shown(dim, value)}")
        return cls(models, variants, varying, constant)

    def color(self, curve: Curve) -> str:
        """By model; with one model, by variant (colour reads faster than dashes)."""
        if len(self.models) > 1:
            return f"C{self.models.index(curve.model) % 10}"
        return f"C{self.variants.index(curve.variant) % 10}"

    def style(self, variant: tuple[tuple[str, Any], ...]) -> tuple[Any, str]:
        return STYLES[self.variants.index(variant) % len(STYLES)]

    def variant_name(self, variant: tuple[tuple[str, Any], ...]) -> str:
        values = dict(variant)
        if len(self.varying) == 1:
            return _shown(self.varying[0], values[self.varying[0]])
        return " · ".join(f"{DIMENSIONS[d][1]}{_shown(d, values[d])}" for d in self.varying)

    def variant_title(self) -> str:
        if len(self.varying) == 1:
            return DIMENSIONS[self.varying[0]][0]
        return " · ".join(DIMENSIONS[d][1].rstrip("=") or d for d in self.varying)


def _subtitle(found: Sequence[Curve], layout: Layout, x_key: str) -> list[str]:
    """What every curve shares, and the engine note once (where requests overlapped)."""
    parts = list(layout.models[:1] if len(layout.models) == 1 else [])
    parts += [c for c in layout.constant if c.strip("? ")]  # a sweep without a test id
    counts = sorted({int(lv["completed"]) for c in found for lv in c.points.values()})
    # a p99 of a handful of requests is their maximum: say how many there were
    many = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    parts.append(f"{many} requests per level")
    overlapped = any(
        c.serialised and (x_key == "concurrency" or (dict(c.variant).get("concurrency") or 1) > 1)
        for c in found
    )
    if overlapped:
        slow = [m for m in layout.models if any(c.serialised for c in found if c.model == m)]
        if len(slow) == len(layout.models):
            parts.append(f"the engine {ENGINE_NOTE}")
        else:
            parts.append(f"{', '.join(slow)}: the engine {ENGINE_NOTE}")
    return parts


def _wrap(parts: Sequence[str], width: int) -> list[str]:
    """Parts joined by " · " into lines of at most ``width`` characters, breaking between
    parts (a part longer than a line wraps on its own)."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + 3 + len(part) <= width:
            lines[-1] += f" · {part}"
        else:
            lines += textwrap.wrap(part, width)
    return lines


def _log2_x(ax: Any, xs: Sequence[int]) -> None:
    ticks = sorted(set(xs))
    if ticks and ticks[0] > 0 and ticks[-1] / ticks[0] >= 8:
        ax.set_xscale("log", base=2)
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(x) for x in ticks])


def _draw_panel(ax: Any, found: Sequence[Curve], layout: Layout, getter: Getter) -> None:
    for curve in found:
        kept = [(x, y) for x in sorted(curve.points) if (y := getter(curve.points[x])) is not None]
        if not kept:
            continue
        linestyle, marker = layout.style(curve.variant)
        ax.plot(
            [x for x, _ in kept],
            [y for _, y in kept],
            color=layout.color(curve),
            linestyle=linestyle,
            marker=marker,
            markersize=5,
            linewidth=1.6,
        )
    ax.grid(True, alpha=0.3)


def _legends(fig: Any, layout: Layout) -> None:
    """One legend of models (colour), one of variants (style), both outside the axes."""
    from matplotlib.lines import Line2D

    several_models = len(layout.models) > 1
    common = {"fontsize": "small", "title_fontsize": "small", "alignment": "left"}
    if several_models:
        handles = [
            Line2D([], [], color=f"C{i % 10}", linewidth=2.5, label=model)
            for i, model in enumerate(layout.models)
        ]
        fig.legend(handles=handles, loc="outside right upper", title="model", **common)
    if len(layout.variants) > 1:
        handles = []
        for i, variant in enumerate(layout.variants):
            linestyle, marker = layout.style(variant)
            color = "0.25" if several_models else f"C{i % 10}"
            handles.append(
                Line2D(
                    [], [], color=color, linestyle=linestyle, marker=marker,
                    label=layout.variant_name(variant),
                )
            )  # fmt: skip
        where = "outside right lower" if several_models else "outside right upper"
        fig.legend(handles=handles, loc=where, title=layout.variant_title(), **common)


def line_figure(report: Mapping[str, Any], plot: LinePlot) -> Any | None:
    """The figure of ``plot`` (a matplotlib Figure), or None when no curve has two points."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    found = curves(report, plot.x_key)
    if not found:
        return None
    layout = Layout.of(found)
    found = sorted(
        found, key=lambda c: (layout.models.index(c.model), layout.variants.index(c.variant))
    )
    entries = len(layout.models) + len(layout.variants) + 4  # with the legend titles
    height = max(4.6, 0.5 + 0.24 * entries)  # every legend entry fits beside the panels
    area = max(3.9 * len(plot.panels), 6.0)  # inches of panels; one panel is not a sliver
    fig = Figure(figsize=(area + 1.8, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(plot.panels), sharex=True, sharey=True, squeeze=False)[0]
    for ax, (name, getter) in zip(axes, plot.panels, strict=True):
        _draw_panel(ax, found, layout, getter)
        ax.set_title(name, fontsize="medium")
        _log2_x(ax, [x for c in found for x in c.points])
    # only once every panel is drawn: an earlier limit would cut the taller panels' lines
    axes[0].set_ylim(bottom=0)
    axes[0].set_ylabel(plot.ylabel)
    fig.supxlabel(plot.xlabel, fontsize="medium")
    # left-aligned and wrapped to the panels' width, so it never runs under the legends
    width = int(9.5 * area) - 4  # characters of the large font (about 9.5 per inch)
    lines = [plot.title, *_wrap(_subtitle(found, layout, plot.x_key), width)]
    fig.suptitle("\n".join(lines), x=0.01, ha="left", fontsize="large")
    _legends(fig, layout)
    return fig


def save_png(fig: Any, path: Path) -> None:
    """Render ``fig`` and write it atomically (umask mode, symlinks written through)."""
    buffer = io.BytesIO()
    if fig.get_layout_engine() is None:  # a constrained figure lays itself out
        fig.tight_layout()
    fig.savefig(buffer, format="png")
    write_bytes(path, buffer.getvalue(), what=f"the plot {path}")


__all__ = ["Curve", "Layout", "LinePlot", "curves", "line_figure", "save_png"]
