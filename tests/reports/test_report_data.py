"""The report's data path, on a real SmolLM2 measurement: a measurement rebuilt from its
report entry reads as the live one (what an xdist controller relies on), the model
trade-off reaches the JSON and the Markdown with the terminal's cells, and the counts
are pytest's."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from pytest_tokrate.core.rebuild import measurement_from_dict
from pytest_tokrate.core.result import Measurement
from pytest_tokrate.machine.telemetry import default_monitor
from pytest_tokrate.quality.checks import parse_checks
from pytest_tokrate.quality.evaluate import evaluate
from pytest_tokrate.quality.tradeoff import compare_models
from pytest_tokrate.reports.document import (
    build_report,
    fragment,
    measurement_entry,
    merge_fragments,
    validate_report,
)
from pytest_tokrate.reports.markdown import markdown, outcome_text
from pytest_tokrate.reports.terminal import terminal_lines
from pytest_tokrate.reports.tradeoff import row_cells, tradeoff_lines

pytestmark = pytest.mark.e2e
GPU = default_monitor().status().to_dict()
TOKENIZER = {"encoding": "cl100k_base", "available": True, "reason": None}


def on_model(m: Measurement, name: str, checks: list[dict[str, Any]]) -> Measurement:
    """The real measurement filed under another model name, judged by ``checks``."""
    test_id = f"tests/test_demo.py::test_demo[{name}]"
    out = dataclasses.replace(m, model=dataclasses.replace(m.model, name=name), test_id=test_id)
    out.quality = evaluate(parse_checks(checks, test_id), out.samples)
    return out


@pytest.fixture(scope="module")
def pair(measure: Callable[..., Measurement]) -> list[Measurement]:
    measurement = measure("Say hi.", rounds=3, num_thread=1)
    always = [{"type": "regex", "value": "."}]
    never = [{"type": "contains", "value": "zzz-never-said"}]
    return [on_model(measurement, "smollm2", always), on_model(measurement, "other", never)]


def entry(m: Measurement) -> dict[str, Any]:
    """The measurement as an xdist worker sends it: its report entry through JSON."""
    data: dict[str, Any] = json.loads(json.dumps(measurement_entry(m)))
    return data


def test_a_rebuilt_measurement_reads_as_the_live_one(pair: list[Measurement]) -> None:
    live = pair[0]
    rebuilt = measurement_from_dict(entry(live))
    assert rebuilt.summaries() == live.summaries()
    assert rebuilt.texts == live.texts and rebuilt.rounds == live.rounds
    assert terminal_lines([rebuilt]) == terminal_lines([live])
    assert (rebuilt.quality.passed_rounds, rebuilt.quality.total) == (live.rounds, live.rounds)
    assert rebuilt.pass_rate == live.pass_rate == 1.0


def test_the_tradeoff_of_rebuilt_entries_equals_the_live_one(pair: list[Measurement]) -> None:
    rebuilt = [measurement_from_dict(entry(m)) for m in pair]
    live_rows = compare_models(pair, ["smollm2", "other"])
    rows = compare_models(rebuilt, ["smollm2", "other"])
    assert rows == live_rows and len(rows) == 1
    assert rows[0].ratio == pytest.approx(1.0)  # one measurement under two names
    assert rows[0].quality_verdict != "same answers"  # every round vs none
    assert tradeoff_lines(rows) == tradeoff_lines(live_rows)


def test_the_tradeoff_reaches_the_json_and_the_markdown(pair: list[Measurement]) -> None:
    rows = compare_models(pair, ["smollm2", "other"])
    merged = merge_fragments([fragment(pair, [], {})])
    report = build_report(merged, GPU, TOKENIZER, tradeoff=rows)
    validate_report(report)
    (row,) = report["tradeoff"]
    rounds = pair[0].rounds
    assert row["test"] == "tests/test_demo.py::test_demo" and row["model"] == "other"
    assert row["pass_reference"] == {"passed": rounds, "total": rounds}
    assert row["pass_model"] == {"passed": 0, "total": rounds}
    assert row["speed_verdict"] == "same speed" and row["repeated"] in (True, False)
    (per_model,) = report["tradeoff_models"]
    assert per_model["model"] == "other" and per_model["ratio_tests"] == 1
    md = markdown(report)
    assert md.index("### Trade-off between models") < md.index("### Speed per test and model")
    cells = row_cells(row)
    assert cells[3] == f"{rounds}/{rounds} -> 0/{rounds}" and cells[4] == "-100 pp"
    assert f"| {rounds}/{rounds} -&gt; 0/{rounds} | -100 pp |" in md
    terminal_row = tradeoff_lines(rows)[2]
    assert all(cell in terminal_row for cell in cells)
    assert "- other vs smollm2: decode speed 1.00x (geometric mean over 1 test(s))" in md


def test_one_model_gives_an_empty_tradeoff(pair: list[Measurement]) -> None:
    report = build_report(merge_fragments([fragment(pair[:1], [], {})]), GPU, TOKENIZER)
    validate_report(report)
    assert report["tradeoff"] == [] and report["tradeoff_models"] == []
    assert "Trade-off" not in markdown(report)


def test_counts_are_pytests_and_every_test_is_listed(pair: list[Measurement]) -> None:
    ids = [m.test_id or "" for m in pair]
    tests = {
        "t.py::test_plain": {"outcome": "error", "duration_s": 0.1},
        ids[1]: {"outcome": "failed", "duration_s": 2.0},
        ids[0]: {"outcome": "passed", "duration_s": 1.0},
    }
    worker = fragment(pair, [], {}, tokrate_ids=ids)
    controller = fragment([], [], tests, outcomes={"passed": 2, "failed": 1, "error": 1})
    merged = merge_fragments([controller, worker], order=list(tests))
    assert [m["test_id"] for m in merged["measurements"]] == [ids[1], ids[0]]  # as they ran
    report = build_report(merged, GPU, TOKENIZER)
    validate_report(report)
    listed = {t["test_id"]: (t["tokrate"], t["measurements"]) for t in report["tests"]}
    assert listed == {"t.py::test_plain": (False, 0), ids[0]: (True, 1), ids[1]: (True, 1)}
    summary = report["summary"]
    assert summary["outcomes"] == {"passed": 2, "failed": 1, "error": 1}  # pytest's, per report
    assert summary["tokrate_outcomes"] == {"passed": 1, "failed": 1}
    assert (
        "**3 test(s)**: 1 failed, 2 passed, 1 error (as pytest counts them) · "
        "**2 used tokrate**: 1 failed, 1 passed · 2 measurement(s)" in markdown(report)
    )


def test_outcomes_are_worded_as_pytest_words_them() -> None:
    counts = {"error": 2, "passed": 5, "xfailed": 1, "failed": 3, "rerun": 1}
    assert outcome_text(counts) == "3 failed, 5 passed, 1 xfailed, 2 errors, 1 rerun"
    assert outcome_text({}) == "none"
