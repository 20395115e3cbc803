"""The gate's verdicts in words (``reports/gate.py``): terminal lines, the ``-q`` summary
line, the Markdown section, and the JSON report's ``gate`` array against its schema."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from pytest_tokrate.core.findings import Finding
from pytest_tokrate.errors import ReportError
from pytest_tokrate.reports.document import (
    build_report,
    fragment,
    merge_fragments,
    validate_report,
)
from pytest_tokrate.reports.gate import collect, gate_lines, gate_markdown, summary_line
from pytest_tokrate.reports.markdown import markdown

TEST = "examples/test_article.py::test_team_country[smollm2]"


def figure(metric: str, base: float | None, cur: float | None, **kw: Any) -> dict[str, Any]:
    names = {
        "decode_tps": ("decode tok/s", "tok/s"),
        "ttft": ("TTFT", "ms"),
        "e2e": ("E2E latency", "ms"),
        "pass_rate": ("pass rate", "%"),
    }
    name, unit = names[metric]
    change = (
        None
        if base is None or cur is None
        else cur - base
        if metric == "pass_rate"
        else cur / base - 1
    )
    return {
        "metric": metric,
        "name": name,
        "unit": unit,
        "baseline": base,
        "current": cur,
        "change": change,
        "adjusted": None,
        "verdict": "ok",
        "why": "",
    } | kw


def verdict(word: str = "ok", test: str = TEST, **kw: Any) -> dict[str, Any]:
    return {
        "test": test,
        "verdict": word,
        "why": "",
        "baseline": "baselines/examples/test_article/test_team_country[smollm2]@embedded.json",
        "baseline_model": "smollm2",
        "model": "smollm2",
        "changes": [],
        "figures": [figure("decode_tps", 51.3, 59.9), figure("pass_rate", 1.0, 1.0)],
        "machine": None,
        "tradeoff": None,
    } | kw


TRADEOFF = {
    "speed_metric": "decode_tps",
    "speed_ratio": 1.8,
    "speed_ci": [1.7, 1.9],
    "pass_rate_baseline": 1.0,
    "pass_rate_current": 0.6,
    "pass_rate_change": -0.4,
    "p_value": 0.005,
    "verdict": "regression",
    "policy": None,
}


# -- terminal lines -------------------------------------------------------------------------


def test_a_line_shows_medians_raw_change_adjusted_change_and_configuration_changes() -> None:
    v = verdict(
        changes=["num_ctx 2048 -> 4096", "system prompt: +212 characters"],
        figures=[
            figure("decode_tps", 51.3, 59.9, change=0.167, adjusted=-0.125),
            figure("pass_rate", 1.0, 1.0),
        ],
    )
    (line,) = gate_lines([v], quiet=False)
    assert line.startswith(f"ok  {TEST}  ")
    assert "decode tok/s 51.3 -> 59.9 (+16.7%, machine-adjusted -12.5%)" in line
    assert "pass rate 100% -> 100% (+0 pts)" in line
    assert line.endswith("[num_ctx 2048 -> 4096; system prompt: +212 characters]")


def test_times_show_in_milliseconds_and_units_are_not_repeated() -> None:
    v = verdict(figures=[figure("ttft", 0.1204, 0.118), figure("decode_tps", 50.0, 50.0)])
    (line,) = gate_lines([v], quiet=False)
    assert "TTFT 120.4 -> 118.0 ms (-2.0%)" in line
    assert "decode tok/s 50.0 -> 50.0 (+0.0%)" in line  # not "tok/s tok/s"


def test_lines_align_the_test_ids_and_the_figures() -> None:
    lines = gate_lines(
        [
            verdict("ok", test="t.py::test_a"),
            verdict("regression", test="t.py::test_long_name[qwen] (label)"),
        ],
        quiet=False,
    )
    assert [line.index("t.py::") for line in lines] == [len("regression") + 2] * 2
    assert len({line.index("decode tok/s") for line in lines}) == 1


def test_a_failing_figure_says_its_own_verdict_and_the_pass_rate_reads_in_points() -> None:
    v = verdict(
        "regression",
        figures=[
            figure("decode_tps", 51.3, 92.3, verdict="improvement"),
            figure("pass_rate", 1.0, 0.6, verdict="regression"),
        ],
    )
    (line,) = gate_lines([v], quiet=False)
    assert line.startswith("regression  ")
    assert "decode tok/s 51.3 -> 92.3 (+79.9%) improvement" in line
    assert "pass rate 100% -> 60% (-40 pts) regression" in line


def test_a_figure_not_judged_is_shown_with_the_reason() -> None:
    e2e = figure("e2e", 1.2, 2.4, verdict="not judged", why="num_predict changed")
    (line,) = gate_lines([verdict(figures=[e2e])], quiet=False)
    assert "E2E latency 1200.0 -> 2400.0 ms (+100.0%) not judged: num_predict changed" in line


def test_a_figure_without_data_says_nothing() -> None:
    (line,) = gate_lines([verdict(figures=[figure("ttft", None, None, verdict="no data")])], False)
    assert "TTFT" not in line


@pytest.mark.parametrize(
    ("word", "why", "shown"),
    [
        ("not comparable", "hardware.cpu_model: 'AMD EPYC' -> 'Intel Xeon'", "hardware.cpu_model"),
        ("not judged", "the machine was busy", "the machine was busy"),
        ("no baseline", "", "none recorded"),
        ("accepted", "5 points for decode_tps +30%", "policy: 5 points for decode_tps +30%"),
    ],
)
def test_verdicts_that_need_a_reason_say_it(word: str, why: str, shown: str) -> None:
    compared = word in ("not judged", "accepted")  # figures were measured, not compared
    v = verdict(word, why=why) if compared else verdict(word, why=why, figures=[])
    (line,) = gate_lines([v], quiet=False)
    assert line.startswith(f"{word}  {TEST}  {shown}")
    assert ("decode tok/s 51.3 -> 59.9" in line) == compared


def test_the_machine_moving_is_said_once_when_beyond_three_percent() -> None:
    adjusted = [
        figure("decode_tps", 51.3, 59.9, adjusted=-0.125),
        figure("ttft", 0.1, 0.09, adjusted=0.01),
    ]
    fast = verdict(figures=adjusted, machine={"baseline": 54.1, "current": 60.2, "change": 0.113})
    (line,) = gate_lines([fast], quiet=False)
    assert line.count("the machine ran 11% faster; verdicts use the adjusted change") == 1
    steady = verdict(figures=adjusted, machine={"baseline": 54.1, "current": 55.0, "change": 0.017})
    assert "machine ran" not in gate_lines([steady], quiet=False)[0]
    slow = verdict(machine={"baseline": 54.1, "current": 43.3, "change": -0.2})
    (line,) = gate_lines([slow], quiet=False)  # no figure was adjusted: only the move is said
    assert line.endswith("the machine ran 20% slower")


def test_a_model_change_is_named_and_a_silent_baseline_model_is_added() -> None:
    v = verdict(model="qwen", changes=["model smollm2 -> qwen (Q4_1 -> Q2_K)"])
    (line,) = gate_lines([v], quiet=False)
    assert line.endswith("[model smollm2 -> qwen (Q4_1 -> Q2_K)]")
    (line,) = gate_lines([verdict(model="qwen")], quiet=False)
    assert line.endswith("[baseline recorded on smollm2]")


def test_the_tradeoff_reads_under_its_test() -> None:
    lines = gate_lines([verdict("regression", tradeoff=TRADEOFF), verdict("ok")], quiet=False)
    assert len(lines) == 3
    assert lines[1] == (
        " " * len("regression  ") + "trade-off: decode tok/s x1.80 (CI 1.70..1.90), "
        "pass rate 100% -> 60% (-40 pts, p=0.005): regression"
    )
    accepted = TRADEOFF | {"verdict": "accepted", "policy": "5 points for decode_tps +30%"}
    line = gate_lines([verdict("accepted", tradeoff=accepted)], quiet=False)[1]
    assert line.endswith(": accepted (policy: 5 points for decode_tps +30%)")


# -- the -q summary ---------------------------------------------------------------------------


def test_quiet_is_exactly_one_summary_line() -> None:
    words = ["ok"] * 4 + ["regression", "stale", "no baseline", "not comparable"]
    verdicts = [verdict(w, test=f"t.py::test_{i}") for i, w in enumerate(words)]
    assert gate_lines(verdicts, quiet=True) == [
        "tokrate gate: 6 compared: 4 ok, 1 regression, 1 stale; 1 no baseline; 1 not comparable"
    ]


def test_summary_counts_every_word_even_unknown_ones() -> None:
    verdicts = [verdict("not judged"), verdict("accepted"), verdict("mystery")]
    assert summary_line(verdicts) == (
        "tokrate gate: 1 compared: 1 accepted; 1 not judged; 1 mystery"
    )


def test_no_verdicts_no_lines_and_no_section() -> None:
    assert gate_lines([], quiet=False) == gate_lines([], quiet=True) == []
    assert gate_markdown([]) == []


# -- collecting and the Markdown section --------------------------------------------------------


def _entry(test_id: str, *findings: dict[str, Any]) -> dict[str, Any]:
    return {"test_id": test_id, "findings": list(findings)}


def _gate_finding(v: dict[str, Any]) -> dict[str, Any]:
    return Finding("gate", "info", "compared", {"gate": v}).to_dict()


def test_collect_takes_the_gate_findings_in_test_order() -> None:
    b1, b2 = verdict(test="t.py::test_b (one)"), verdict(test="t.py::test_b (two)")
    a = verdict(test="t.py::test_a")
    other = Finding("quality", "fail", "bad answer", {"gate": "not a verdict"}).to_dict()
    measurements = [
        _entry("t.py::test_b", _gate_finding(b1)),
        _entry("t.py::test_c", other),
        _entry("t.py::test_a", _gate_finding(a)),
        _entry("t.py::test_b", _gate_finding(b2)),
    ]
    assert collect(measurements) == [a, b1, b2]


def test_markdown_section_escapes_and_lists_the_tradeoff() -> None:
    hostile = "t.py::test_x[<script>|a]"
    lines = gate_markdown([verdict("regression", test=hostile, tradeoff=TRADEOFF)])
    assert lines[0] == "### Baselines and gate"
    assert lines[2] == "| verdict | test | key figures | configuration changes |"
    row = lines[4]
    assert row.startswith("| ❌ regression | t.py::test\\_x\\[&lt;script&gt;\\|a\\] | decode tok/s")
    assert row.count(" | ") == 3  # the escaped | does not open a fifth column
    assert any(
        line.startswith("- t.py::test") and "x1.80 (CI 1.70..1.90)" in line for line in lines
    )


# -- the JSON report --------------------------------------------------------------------------


def _report(measurement: Any, *verdicts: dict[str, Any]) -> dict[str, Any]:
    m = dataclasses.replace(
        measurement, findings=[Finding("gate", "info", "compared", {"gate": v}) for v in verdicts]
    )
    merged = merge_fragments([fragment([m], [], {})])
    return build_report(
        merged,
        {"available": False, "reason": "no GPU in this test", "driver": None, "devices": []},
        tokenizer={"encoding": "cl100k_base", "available": False, "reason": "not needed here"},
        created=datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc),
    )


def test_json_report_carries_the_verdicts_and_validates(measurement: Any) -> None:
    full = verdict(
        "regression",
        test=measurement.test_id,
        changes=["model smollm2 -> qwen (Q4_1 -> Q2_K)"],
        figures=[
            figure("decode_tps", 51.3, 59.9, adjusted=-0.125),
            figure("e2e", 1.2, 2.4, verdict="not judged", why="num_predict changed"),
            figure("pass_rate", 1.0, 0.6, verdict="regression"),
        ],
        machine={"baseline": 54.1, "current": 60.2, "change": 0.113},
        tradeoff=TRADEOFF,
    )
    missing = verdict("no baseline", test=measurement.test_id, baseline=None, baseline_model=None)
    report = _report(measurement, full, missing)
    validate_report(report)
    assert report["gate"] == [full, missing]
    text = markdown(report)
    assert text.index("### Speed per test and model") < text.index("### Baselines and gate")
    assert "### Baselines and gate" not in markdown(_report(measurement))


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"verdict": "fine"}, "gate/0/verdict"),
        (
            {"figures": [figure("decode_tps", 1.0, 2.0, verdict="better")]},
            "gate/0/figures/0/verdict",
        ),
        ({"tradeoff": TRADEOFF | {"p_value": 2.0}}, "gate/0/tradeoff/p_value"),
    ],
)
def test_json_schema_rejects_a_malformed_verdict(
    measurement: Any, change: dict[str, Any], where: str
) -> None:
    report = _report(measurement, verdict(**change))
    with pytest.raises(ReportError, match=where):
        validate_report(report)
