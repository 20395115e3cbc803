"""The plots' structure, read from the matplotlib figures (not pixels): a legend entry per
model and per level instead of per curve, legends outside the axes, one colour per model,
the engine note said once, and no data outside the visible axes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")

from matplotlib.colors import to_hex
from matplotlib.text import Text

from pytest_tokrate.reports.plotlines import LinePlot, line_figure
from pytest_tokrate.reports.plots import LINE_PLOTS, write_plots

PLOTS = {plot.file: plot for plot in LINE_PLOTS}
LATENCY = PLOTS["latency_vs_concurrency.png"]
THROUGHPUT = PLOTS["throughput_vs_concurrency.png"]
GEN_LENGTH = PLOTS["tps_vs_gen_length.png"]
NOTE = "one request at a time"


def level(c: int, n: int, slow: float) -> dict[str, Any]:
    """A sweep level as the JSON report has it; latency grows with c and n, by ``slow``."""
    e2e = slow * (0.5 + 0.02 * n) * c
    return {
        "concurrency": c,
        "num_predict": n,
        "prompt_length": None,
        "completed": 2 * c,
        "throughput_tps": n / e2e,
        "summaries": {
            "e2e": {"p50": e2e, "p99": 1.6 * e2e},  # p99 well above p50: a taller panel
            "ttft": {"p50": 0.3 * e2e},
            "decode_tps": {"median": 30.0 / slow},
            "e2e_tps": {"median": n / e2e},
        },
    }


def sweep(model: str, lengths: Sequence[int], *, serialised: bool = True, slow: float = 1.0,
          test: str = "test_x.py::test_grid", concurrency: Sequence[int] = (1, 2, 4),
          ) -> dict[str, Any]:  # fmt: skip
    return {
        "model": {"name": model},
        "test_id": f"{test}[{model}]",
        "label": None,
        "serialised": serialised,
        "levels": [level(c, n, slow) for n in lengths for c in concurrency],
    }


def figure(plot: LinePlot, *sweeps: dict[str, Any]) -> Any:
    fig = line_figure({"sweeps": list(sweeps)}, plot)
    assert fig is not None
    fig.canvas.draw()  # lays the figure out, as saving it does
    return fig


def legend_texts(fig: Any) -> list[list[str]]:
    return [[t.get_text() for t in leg.get_texts()] for leg in fig.legends]


def all_text(fig: Any) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(Text))


def colours_by_model(fig: Any, models: Sequence[str]) -> dict[str, set[str]]:
    """Each curve's colour, keyed by the model whose curves are drawn in that order."""
    out: dict[str, set[str]] = {m: set() for m in models}
    for ax in fig.axes:
        lines = ax.get_lines()
        per_model = len(lines) // len(models)
        for i, line in enumerate(lines):
            out[models[i // per_model]].add(to_hex(line.get_color()))
    return out


def test_two_models_three_lengths_have_a_legend_entry_per_model_and_length() -> None:
    fig = figure(LATENCY, sweep("smollm2", (16, 32, 64)), sweep("q2", (16, 32, 64), slow=0.7))
    # before: 18 entries (2 models x 3 lengths x 3 figures), each with the engine note
    assert legend_texts(fig) == [["smollm2", "q2"], ["16", "32", "64"]]
    assert [leg.get_title().get_text() for leg in fig.legends] == [
        "model",
        "generation length (tokens)",
    ]
    assert [ax.get_title() for ax in fig.axes] == [
        "end-to-end p50",
        "end-to-end p99",
        "time to first token p50",
    ]
    assert all(len(ax.get_lines()) == 6 for ax in fig.axes)


def test_legends_sit_outside_every_panel() -> None:
    for plot in (LATENCY, THROUGHPUT, GEN_LENGTH):
        fig = figure(plot, sweep("smollm2", (16, 32, 64)), sweep("q2", (16, 32, 64)))
        renderer = fig.canvas.get_renderer()
        assert fig.legends
        for leg in fig.legends:
            box = leg.get_window_extent(renderer)
            assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes)
        # and not over the title either
        title = fig._suptitle.get_window_extent(renderer)
        assert not any(title.overlaps(leg.get_window_extent(renderer)) for leg in fig.legends)


def test_a_model_keeps_one_colour_and_a_length_one_line_style() -> None:
    fig = figure(LATENCY, sweep("smollm2", (16, 32)), sweep("q2", (16, 32)))
    colours = colours_by_model(fig, ["smollm2", "q2"])
    assert all(len(c) == 1 for c in colours.values())
    assert colours["smollm2"] != colours["q2"]
    legend_colours = [to_hex(h.get_color()) for h in fig.legends[0].legend_handles]
    assert legend_colours == [*colours["smollm2"], *colours["q2"]]
    for ax in fig.axes:  # per model: length 16, then 32; the two models' styles agree
        styles = [(line.get_linestyle(), line.get_marker()) for line in ax.get_lines()]
        assert styles[0] == styles[2] and styles[1] == styles[3] and styles[0] != styles[1]


def test_the_engine_note_appears_once_in_the_title() -> None:
    fig = figure(THROUGHPUT, sweep("smollm2", (16, 32, 64)), sweep("q2", (16, 32, 64)))
    assert all_text(fig).count(NOTE) == 1
    assert NOTE in fig._suptitle.get_text()
    assert not any(NOTE in t for texts in legend_texts(fig) for t in texts)


def test_the_note_names_the_serialised_model_when_only_one_is() -> None:
    fig = figure(LATENCY, sweep("smollm2", (16, 32)), sweep("vllm-x", (16, 32), serialised=False))
    (line,) = [ln for ln in fig._suptitle.get_text().splitlines() if NOTE in ln]
    assert line.startswith("smollm2: the engine") and "vllm-x" not in line


def test_no_engine_note_where_requests_never_overlapped() -> None:
    fig = figure(GEN_LENGTH, sweep("smollm2", (16, 32), concurrency=(1,)))
    assert NOTE not in all_text(fig)
    assert "c=1" in fig._suptitle.get_text()  # the level every curve shares, said once


def test_one_model_is_named_in_the_title_and_lengths_get_colours() -> None:
    fig = figure(LATENCY, sweep("smollm2", (16, 48)))
    assert legend_texts(fig) == [["16", "48"]]
    assert fig._suptitle.get_text().splitlines()[1].startswith("smollm2 · test_grid")
    first = fig.axes[0].get_lines()
    assert to_hex(first[0].get_color()) != to_hex(first[1].get_color())


def test_one_curve_needs_no_legend() -> None:
    fig = figure(THROUGHPUT, sweep("smollm2", (32,)))
    assert fig.legends == []
    assert "n=32" in fig._suptitle.get_text() and "2-8 requests per level" in all_text(fig)


def test_every_point_is_inside_the_visible_axes() -> None:
    # the p99 panel is the tallest: a y limit fixed by the first panel would cut it off
    fig = figure(LATENCY, sweep("smollm2", (16, 64)), sweep("q2", (16, 64), slow=3.0))
    for ax in fig.axes:
        low, high = ax.get_ylim()
        assert low == 0
        assert all(low <= y <= high for line in ax.get_lines() for y in line.get_ydata())
        assert [int(x) for x in ax.get_xticks()] == [1, 2, 4]


def test_six_lengths_get_six_distinct_styles_on_a_log_axis() -> None:
    lengths = (8, 16, 32, 64, 128, 256)
    fig = figure(
        LATENCY,
        *(sweep(m, lengths, concurrency=(1, 8, 32)) for m in ("smollm2", "q2", "q4")),
    )
    assert legend_texts(fig) == [["smollm2", "q2", "q4"], [str(n) for n in lengths]]
    handles = fig.legends[1].legend_handles
    assert len({(str(h.get_linestyle()), h.get_marker()) for h in handles}) == 6
    assert fig.axes[0].get_xscale() == "log"  # 1..32 spans more than 8x


def test_two_tests_and_two_lengths_share_one_legend_of_levels() -> None:
    fig = figure(
        LATENCY,
        sweep("smollm2", (16, 32), test="test_a.py::test_short"),
        sweep("smollm2", (16, 32), test="test_b.py::test_long"),
    )
    assert legend_texts(fig) == [
        ["test_short · n=16", "test_short · n=32", "test_long · n=16", "test_long · n=32"]
    ]
    assert fig.legends[0].get_title().get_text() == "test · n"


def test_write_plots_draws_files_and_says_what_it_skipped(tmp_path: Path) -> None:
    report = {"sweeps": [sweep("smollm2", (16,)), sweep("q2", (16,))], "measurements": []}
    result = write_plots(report, tmp_path)
    assert [p.name for _, p in result.files] == [
        "latency_vs_concurrency.png",
        "throughput_vs_concurrency.png",
    ]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for _, p in result.files)
    assert result.skipped == [
        "tok/s vs generation length: no sweep with 2+ generation lengths",
        "speed vs quality: no measurement with quality checks",
    ]
