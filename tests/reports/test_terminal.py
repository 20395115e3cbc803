"""The terminal table (``report.terminal_lines``) and the Measurement summaries."""

from __future__ import annotations

import math

from pytest_tokrate.backends.base import ModelInfo
from pytest_tokrate.core.measure import EngineReport, RawRound, StampedChunk, derive_sample
from pytest_tokrate.core.result import Measurement
from pytest_tokrate.reports.terminal import terminal_lines

MS = 1_000_000


def measurement(rounds: list[RawRound], test_id: str = "t.py::test_x") -> Measurement:
    return Measurement(
        model=ModelInfo(name="smollm2", backend="embedded"),
        samples=[derive_sample(r, i) for i, r in enumerate(rounds)],
        settings={},
        request={},
        cache_busting="kv-reset",
        versions={},
        test_id=test_id,
    )


def spoken(t_first_ms: int, n: int, step_ms: int = 10) -> RawRound:
    chunks = tuple(StampedChunk("w ", (t_first_ms + i * step_ms) * MS) for i in range(n))
    t_end = (t_first_ms + (n - 1) * step_ms) * MS
    return RawRound(
        0,
        chunks,
        t_end,
        EngineReport(
            output_tokens=n,
            prompt_tokens=10,
            decode_tokens=n - 1,
            decode_ns=(n - 1) * step_ms * MS,
            prefill_ns=20 * MS,
        ),
    )


def silent() -> RawRound:
    return RawRound(0, (), 25 * MS, EngineReport(output_tokens=0, prompt_tokens=10))


def test_table_has_one_row_per_measurement_with_median_and_spread() -> None:
    m = measurement([spoken(30, 5), spoken(40, 5), spoken(50, 5)])
    lines = terminal_lines([m])
    header = lines[0].split()
    for column in ("decode", "prefill", "TTFT", "TPOT", "E2E", "out", "rounds"):
        assert column in header
    row = lines[2]
    assert row.startswith("t.py::test_x")
    assert "smollm2" in row
    assert "40.0 ±10.0" in row  # TTFT ms: median 40, stdev 10
    assert "100.0" in row  # decode tok/s: 4 tokens over 40 ms
    assert row.rstrip().endswith("3")  # rounds
    assert lines[3].startswith("values: median ±stdev")


def test_empty_rounds_show_dashes_and_a_note_without_dividing_by_zero() -> None:
    m = measurement([silent(), silent()])
    assert m.empty_rounds == 2
    assert m.decode_tps.n == 0 and math.isnan(m.decode_tps.median)
    assert m.output_tokens.median == 0.0
    lines = terminal_lines([m])
    row = lines[2].split()
    assert row[2] == "-"  # decode tok/s
    assert any("2 of 2 rounds produced no tokens" in line for line in lines)


def test_client_fallback_is_noted() -> None:
    raw = RawRound(
        0,
        (StampedChunk("a", 10 * MS), StampedChunk("b", 20 * MS)),
        20 * MS,
        EngineReport(output_tokens=2),
    )
    lines = terminal_lines([measurement([raw])])
    assert any("no engine timings" in line for line in lines)


def test_no_results_no_table() -> None:
    assert terminal_lines([]) == []


def test_measurement_to_dict_keeps_raw_samples_and_summaries() -> None:
    m = measurement([spoken(30, 4), silent()])
    d = m.to_dict()
    assert d["rounds"] == 2
    assert len(d["samples"]) == 2
    assert d["samples"][1]["output_tokens"] == 0
    assert d["summaries"]["ttft"]["n"] == 1
    assert d["summaries"]["decode_tps"]["median"] == m.decode_tps.median
    assert d["cache_busting"] == "kv-reset"
