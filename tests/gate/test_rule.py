"""The pure gate: option parsing, the statistical rule on real recorded samples, findings."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import pytest

from pytest_tokrate.errors import UsageError
from pytest_tokrate.gate import judge as gate
from pytest_tokrate.gate import rule as compare
from pytest_tokrate.gate.rule import GateSettings, compare_pass_rate, speed_verdict

# -- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10%", {"*": 0.10}),
        ("0.15", {"*": 0.15}),
        (0.2, {"*": 0.2}),
        ("decode_tps=5%, ttft=25%", {"decode_tps": 0.05, "ttft": 0.25}),
        ("12.5%,pass_rate=0", {"*": 0.125, "pass_rate": 0.0}),
        ({"ttft": "30%"}, {"ttft": 0.30}),
    ],
)
def test_parse_tolerance(value: object, expected: dict[str, float]) -> None:
    assert compare.parse_tolerance(value, "t") == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("10", "10% written with a percent sign"),
        ("fast", "a percentage such as 10%"),
        ("-5%", "a percentage >= 0"),
        ("100%", "below 100%"),
        ("decode=10%", "unknown metric 'decode'"),
        ("", "a tolerance such as 10%"),
    ],
)
def test_bad_tolerance_names_the_value(value: str, fragment: str) -> None:
    with pytest.raises(UsageError, match="--tokrate-tolerance") as info:
        compare.parse_tolerance(value, "--tokrate-tolerance")
    assert fragment in str(info.value) and repr(value) in str(info.value)


def test_tolerance_layers_cli_over_marker_over_ini() -> None:
    s = GateSettings()
    assert (s.tolerance("decode_tps"), s.tolerance("ttft"), s.tolerance("tpot")) == (
        0.10,
        0.25,
        0.10,
    )
    ini = s.with_tolerance({"ttft": 0.30, "pass_rate": 0.2})
    marker = ini.with_tolerance({"decode_tps": 0.15})
    assert (marker.tolerance("decode_tps"), marker.tolerance("ttft")) == (0.15, 0.30)
    cli = marker.with_tolerance({"*": 0.05})  # a bare value resets every speed metric
    assert (cli.tolerance("decode_tps"), cli.tolerance("ttft"), cli.tolerance("e2e")) == (
        0.05,
        0.05,
        0.05,
    )
    assert cli.tolerance("pass_rate") == 0.2


def test_parse_metrics() -> None:
    assert compare.parse_metrics("decode_tps, ttft,decode_tps", "m") == ("decode_tps", "ttft")
    assert compare.parse_metrics("none", "m") == ()
    with pytest.raises(UsageError, match="invalid value 'tokens'"):
        compare.parse_metrics("tokens", "m")


# -- the rule, on samples recorded from the real model -------------------------------------


def quiet_window(values: Sequence[float], n: int) -> list[float]:
    """The n consecutive rounds with the smallest spread (a window without load bursts)."""
    windows = [list(values[i : i + n]) for i in range(len(values) - n + 1)]
    return min(windows, key=lambda w: statistics.stdev(w) / statistics.mean(w))


@pytest.fixture
def decode(recorded: dict[str, dict[str, list[float]]]) -> list[float]:
    return quiet_window(recorded["a1"]["decode_tps"], 5)


def test_identical_samples_pass(decode: list[float]) -> None:
    assert speed_verdict(decode, list(decode), 0.10, True)[0] == "ok"


def slower(values: Sequence[float]) -> list[float]:
    """Every round slower than the slowest original round: ranks separate completely."""
    factor = 0.5 * min(values) / max(values)
    return [v * factor for v in values]


def test_a_big_slowdown_is_a_significant_regression(decode: list[float]) -> None:
    verdict, change, p = speed_verdict(decode, slower(decode), 0.10, True)
    assert verdict == "regression"
    assert change < -0.5
    assert p == pytest.approx(1 / 252)  # 5 v 5 rounds, complete separation


def test_direction_per_metric(recorded: dict[str, dict[str, list[float]]]) -> None:
    ttft = quiet_window(recorded["a1"]["ttft"], 5)
    spread = max(ttft) / min(ttft)
    longer = [v * 2 * spread for v in ttft]
    shorter = [v / (2 * spread) for v in ttft]
    assert speed_verdict(ttft, longer, 0.25, False)[0] == "regression"
    assert speed_verdict(ttft, shorter, 0.25, False)[0] == "improvement"


def test_double_speed_is_a_stale_baseline(decode: list[float]) -> None:
    faster = [v * 2 * max(decode) / min(decode) for v in decode]
    assert speed_verdict(decode, faster, 0.10, True)[0] == "improvement"


def test_within_tolerance_is_not_a_regression_even_if_significant(decode: list[float]) -> None:
    verdict, change, p = speed_verdict(decode, [v * 0.95 for v in decode], 0.10, True)
    assert verdict == "ok" and change == pytest.approx(-0.05) and p < 1


def test_a_big_but_noisy_change_needs_significance() -> None:
    # one fast outlier round in the current run keeps the ranks mixed: p >= alpha
    base = [100.0, 101.0, 99.0, 102.0, 98.0]
    cur = [80.0, 120.0, 79.0, 81.0, 99.5]
    verdict, change, p = speed_verdict(base, cur, 0.10, True)
    assert change < -0.10 and p >= compare.ALPHA and verdict == "ok"


def test_too_few_rounds_cannot_be_significant(decode: list[float]) -> None:
    verdict, _, _ = speed_verdict(decode[:3], slower(decode[:3]), 0.10, True)
    assert verdict == "underpowered"
    assert compare.min_p_value(3, 3) == pytest.approx(0.05)
    assert compare.min_p_value(5, 5) < compare.ALPHA


def test_compare_speed_reports_a_bootstrap_interval(decode: list[float]) -> None:
    c = compare.compare_speed("decode_tps", decode, slower(decode), 0.10)
    assert c.ci[0] <= c.change <= c.ci[1] < -0.10
    assert c.n_baseline == c.n_current == 5


def test_pass_rate() -> None:
    drop = compare_pass_rate((5, 5), (0, 5), max_drop=0.10)
    assert drop.verdict == "regression" and drop.p_value == pytest.approx(1 / 252)
    assert compare_pass_rate((10, 10), (9, 10), max_drop=0.10).verdict == "ok"
    assert compare_pass_rate((10, 10), (2, 10), max_drop=0.90).verdict == "ok"  # allowed drop
    assert compare_pass_rate((0, 5), (5, 5), max_drop=0.10).verdict == "improvement"


# -- findings --------------------------------------------------------------------------------


def run(
    decode: Sequence[float], definition: str = "d1", passed: int | None = None
) -> dict[str, Any]:
    return {
        "definition": {
            "hash": definition,
            "prompt": "p",
            "options": {},
            "cache": "bust",
            "checks": None,
        },
        "rounds": len(decode),
        "warmup": 1,
        "samples": {"decode_tps": list(decode)},
        "summaries": {},
        "quality": None if passed is None else {"passed": passed, "total": len(decode)},
    }


FP = {"hardware": {"cpu_model": "X"}, "engine": {}, "model": {"name": "smollm2"}, "plugin": {}}


def judge(baseline: dict[str, Any] | None, current: dict[str, Any], **kw: Any) -> list[Any]:
    """The findings, without the ``gate`` record that ends every judged run's list."""
    return [f for f in judge_all(baseline, current, **kw) if f.kind != "gate"]


def verdict(baseline: dict[str, Any] | None, current: dict[str, Any], **kw: Any) -> Any:
    """The ``gate`` record: the verdict every report shows."""
    (record,) = [f for f in judge_all(baseline, current, **kw) if f.kind == "gate"]
    assert record.severity == "info"
    return record.data["gate"]


def judge_all(baseline: dict[str, Any] | None, current: dict[str, Any], **kw: Any) -> list[Any]:
    settings = kw.pop("settings", GateSettings())
    return gate.judge_run(
        test_id="t.py::test_x[smollm2]",
        where="baselines/t/test_x[smollm2]@embedded.json",
        baseline=baseline,
        baseline_fingerprint=kw.pop("fingerprint", FP if baseline is not None else None),
        current=current,
        current_fingerprint=FP,
        settings=settings,
        **kw,
    )


def test_findings_for_each_situation(decode: list[float]) -> None:
    slow = slower(decode)
    (missing,) = judge(None, run(decode))
    assert (missing.kind, missing.severity) == ("no-baseline", "warn")
    strict = GateSettings(on_missing="fail")
    assert judge(None, run(decode), settings=strict)[0].severity == "fail"
    assert judge(run(decode), run(decode)) == []
    (reg,) = judge(run(decode), run(slow))
    assert (reg.kind, reg.severity) == ("regression", "fail")
    assert "decode tok/s" in reg.message and "regression" in reg.message
    report = judge(run(decode), run(slow), settings=GateSettings(mode="report"))
    assert [(f.kind, f.severity) for f in report] == [("regression", "warn")]
    assert judge(run(decode), run(slow), settings=GateSettings(mode="off")) == []
    (stale,) = judge(run(slow), run(decode))
    assert (stale.kind, stale.severity) == ("stale-baseline", "warn")
    other = {**FP, "hardware": {"cpu_model": "Y"}}
    (nc,) = judge(run(decode), run(slow), fingerprint=other)
    assert nc.kind == "not-comparable" and "hardware.cpu_model: 'Y' -> 'X'" in nc.message
    assert "for information only" in nc.message
    # A changed test definition is configuration: judged (here: within noise), and named.
    assert judge(run(decode), run(decode, definition="d2")) == []
    changed = verdict(run(decode), run(decode, definition="d2"))
    assert changed["verdict"] == "ok" and changed["changes"] == ["test definition changed"]
    (reg,) = judge(run(decode), run(slow, definition="d2"))
    assert reg.kind == "regression" and "configuration changed: test definition" in reg.message
    skip = GateSettings(on_mismatch="skip")
    assert judge(run(decode), run(decode), fingerprint=other, settings=skip)[0].severity == "skip"
    assert verdict(run(decode), run(slow), fingerprint=other)["verdict"] == "not comparable"
    assert verdict(None, run(decode))["verdict"] == "no baseline"
    assert verdict(run(decode), run(slow))["verdict"] == "regression"
    assert verdict(run(slow), run(decode))["verdict"] == "stale"


def test_a_busy_machine_withholds_speed_but_not_quality(decode: list[float]) -> None:
    slow = slower(decode)
    (busy,) = judge(run(decode), run(slow), busy="other processes used 1.50 CPU cores")
    assert (busy.kind, busy.severity) == ("machine-busy", "warn")
    assert "not judged" in busy.message and "regression?" in busy.message
    quality = judge(run(decode, passed=5), run(decode, passed=0), busy="busy")
    assert [f.kind for f in quality] == ["regression"]
    assert "pass rate" in quality[0].message


def test_table_columns(decode: list[float]) -> None:
    c = compare.compare_speed("decode_tps", decode, slower(decode), 0.10)
    header, row = gate.table([c])
    for column in ("metric", "baseline -> current", "change", "95% CI", "p", "tolerance"):
        assert column in header
    assert row.split()[:2] == ["decode", "tok/s"]
    assert f"{c.change * 100:+.1f}%" in row and "0.0040" in row and "-10%" in row
    assert row.rstrip().endswith("regression")


def test_short_answers_leave_decode_figures_unjudged(decode: list[float]) -> None:
    """Under ``min_decode_tokens`` (the median answer, either side) decode tok/s and TPOT
    are shown as ``too short``; TTFT is judged as usual."""

    def answers(tokens: int, values: Sequence[float]) -> dict[str, Any]:
        r = run(values)
        r["samples"]["output_tokens"] = [tokens] * len(values)
        r["samples"]["ttft"] = [0.05] * len(values)
        return r

    slow = slower(decode)
    assert compare.answer_tokens(answers(8, decode), answers(64, slow)) == 8
    assert compare.answer_tokens(answers(64, decode), answers(32, slow)) is None
    assert compare.answer_tokens(run(decode), run(slow)) is None  # no token counts
    (info,) = judge(answers(8, decode), answers(8, slow))
    assert (info.kind, info.severity) == ("decode-not-gated", "info")
    assert "answers of 8 tokens" in info.message and "at least 32" in info.message
    settings = GateSettings(metrics=("decode_tps", "ttft"))
    verdicts = [
        c.verdict for c in compare.compare_runs(answers(8, decode), answers(8, slow), settings)
    ]
    assert verdicts == ["too short", "ok"]
    lowered = GateSettings(min_decode_tokens=8)
    assert [f.kind for f in judge(answers(8, decode), answers(8, slow), settings=lowered)] == [
        "regression"
    ]
    with pytest.raises(UsageError, match="expected a whole number of tokens >= 1"):
        compare.parse_min_tokens("0", "--tokrate-min-decode-tokens")


def test_underpowered_says_how_many_rounds(decode: list[float]) -> None:
    (finding,) = judge(run(decode[:2]), run(slower(decode)[:2]))
    assert (finding.kind, finding.severity) == ("underpowered", "warn")
    assert "with 2 baseline and 2 current rounds" in finding.message
    assert "use at least 3 rounds against a baseline refreshed with" in finding.message
