"""The gate as users meet it: pytester runs on the real embedded model, outcomes and exit codes.

A regression is produced honestly: the test measures the real model, and the stored
baseline is edited to claim the model used to be much faster (or slower). The speed test
answers in 4 tokens to stay quick, so it lowers ``min_decode_tokens`` (default 32) to have
its decode rate judged; the default has its own test. It runs on one engine thread, as the
machine reference does: two threads on this 2-core machine stall under any neighbour in a
way a one-thread reference does not follow (a TTFT 24% faster raw read +30% adjusted once).
The speed guard against a busy machine is switched off (``--tokrate-other-load=off``) where a test
needs a verdict, because this shared machine is often busy; the guard has its own test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

MODEL = "--tokrate-model=smollm2"
QUIET = "--tokrate-other-load=off"

SPEED = """
import pytest

@pytest.mark.tokrate(min_decode_tokens=1, rounds=5, warmup=1, num_predict=4, num_thread=1)
def test_speed(tokrate):
    tokrate.run("Name three colours.")
"""

FILE = Path("baselines/test_speed/test_speed[smollm2]@embedded.json")


def text(result: pytest.RunResult) -> str:
    return result.stdout.str() + "\n" + result.stderr.str()


def update(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Write baselines with the tests' own rounds (the default, 4x, has its own test)."""
    result = pytester.runpytest(
        MODEL, "--tokrate-update-baselines", "--tokrate-baseline-rounds=1x", *args
    )
    assert "Traceback" not in text(result), text(result)
    return result


def edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def scale(figure: str, factor: float, run: str = "run 1") -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        r = data["runs"][run]
        r["samples"][figure] = [v * factor for v in r["samples"][figure]]

    return change


@pytest.fixture
def recorded(pytester: pytest.Pytester) -> Path:
    """A project with one speed test and its baseline, recorded on the real model."""
    pytester.makepyfile(test_speed=SPEED)
    result = update(pytester)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    path = pytester.path / FILE
    assert path.is_file(), text(result)
    return path


def test_update_writes_the_file_and_an_unchanged_model_passes(
    pytester: pytest.Pytester, recorded: Path
) -> None:
    data = json.loads(recorded.read_text(encoding="utf-8"))
    assert data["test_id"] == "test_speed.py::test_speed[smollm2]"
    assert data["environment"] == "embedded"
    assert len(data["runs"]["run 1"]["samples"]["decode_tps"]) == 5
    # an unchanged model: within a generous tolerance, or withheld when the machine is busy
    result = pytester.runpytest(MODEL, "--tokrate-tolerance=60%")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK


def test_regression_fails_that_test_with_a_table(pytester: pytest.Pytester, recorded: Path) -> None:
    edit(recorded, scale("decode_tps", 1000.0))
    result = pytester.runpytest(MODEL, QUIET)
    result.assert_outcomes(failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = text(result)
    assert "tokrate: regression of decode tok/s in test_speed.py::test_speed[smollm2]" in out
    assert "baselines/test_speed/test_speed[smollm2]@embedded.json" in out
    for header in ("metric", "baseline -> current", "change", "95% CI", "p", "tolerance"):
        assert header in out
    assert "-10%" in out and "regression" in out and "0.0040" in out  # 5 v 5 rounds: p=1/252
    assert "Traceback" not in out


def test_each_round_records_the_machine_reference(
    pytester: pytest.Pytester, recorded: Path
) -> None:
    run = json.loads(recorded.read_text(encoding="utf-8"))["runs"]["run 1"]
    refs = run["samples"]["machine_ref_tps"]
    assert len(refs) == 5 and all(r > 1 for r in refs), refs  # tok/s of the reference
    assert 0 <= run["wait_share"] <= 2
    update(pytester, "--tokrate-calibrate=off").assert_outcomes(passed=1)
    run = json.loads(recorded.read_text(encoding="utf-8"))["runs"]["run 1"]
    assert "machine_ref_tps" not in run["samples"]


def test_a_machine_that_was_faster_is_not_a_regression(
    pytester: pytest.Pytester, recorded: Path
) -> None:
    """The baseline claims the machine (the reference) and the model were both 3x faster:
    relative to the reference nothing changed. Raw figures call it a regression."""
    edit(recorded, scale("decode_tps", 3.0))
    edit(recorded, scale("machine_ref_tps", 3.0))
    adjusted = pytester.runpytest(MODEL, QUIET, "--tokrate-tolerance=decode_tps=40%")
    adjusted.assert_outcomes(passed=1)
    raw = pytester.runpytest(MODEL, QUIET, "--tokrate-calibrate=off")
    raw.assert_outcomes(failed=1)
    assert "regression of decode tok/s" in text(raw)
    assert "machine-adjusted" not in text(raw)
    # the model 3x slower on the same machine: a regression, with the machine line
    edit(recorded, scale("machine_ref_tps", 1 / 3.0))
    slower = pytester.runpytest(MODEL, QUIET)
    slower.assert_outcomes(failed=1)
    assert "machine-adjusted: the machine reference" in text(slower)


def test_report_mode_only_warns(pytester: pytest.Pytester, recorded: Path) -> None:
    edit(recorded, scale("decode_tps", 1000.0))
    result = pytester.runpytest(MODEL, QUIET, "--tokrate-gate=report")
    result.assert_outcomes(passed=1, warnings=1)
    assert "regression of decode tok/s" in text(result)
    off = pytester.runpytest(MODEL, QUIET, "--tokrate-gate=off")
    off.assert_outcomes(passed=1)
    assert "regression" not in text(off)


def test_much_faster_is_a_stale_baseline(pytester: pytest.Pytester, recorded: Path) -> None:
    edit(recorded, scale("decode_tps", 0.001))
    result = pytester.runpytest(MODEL, QUIET)
    result.assert_outcomes(passed=1, warnings=1)
    assert "stale baseline for test_speed.py::test_speed[smollm2]" in text(result)
    strict = pytester.runpytest(MODEL, QUIET, "--tokrate-on-stale=fail")
    strict.assert_outcomes(failed=1)
    assert "--tokrate-update-baselines" in text(strict)


def test_marker_tolerance_and_command_line_precedence(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_speed=SPEED.replace(
            "num_thread=1)", "num_thread=1, tolerance='99.999%', gate_metrics='decode_tps')"
        )
    )
    update(pytester).assert_outcomes(passed=1)
    edit(pytester.path / FILE, scale("decode_tps", 10_000.0))  # current is -99.99%
    pytester.runpytest(MODEL, QUIET).assert_outcomes(passed=1)  # marker: within 99.999%
    cli = pytester.runpytest(MODEL, QUIET, "--tokrate-tolerance=decode_tps=20%")
    cli.assert_outcomes(failed=1)  # the command line beats the marker
    assert "-20%" in text(cli)


def test_not_comparable_names_the_change(pytester: pytest.Pytester, recorded: Path) -> None:
    edit(recorded, lambda d: d["fingerprint"]["hardware"].__setitem__("cpu_model", "Other CPU"))
    result = pytester.runpytest(MODEL, QUIET)
    result.assert_outcomes(passed=1, warnings=1)
    out = text(result)
    assert "baseline not comparable" in out and "hardware.cpu_model: 'Other CPU' ->" in out
    skip = pytester.runpytest(MODEL, QUIET, "--tokrate-on-mismatch=skip", "-rs")
    skip.assert_outcomes(skipped=1)
    assert "hardware.cpu_model" in text(skip)
    pytester.runpytest(MODEL, QUIET, "--tokrate-on-mismatch=fail").assert_outcomes(failed=1)


def test_a_changed_test_definition_is_judged_and_named(
    pytester: pytest.Pytester, recorded: Path
) -> None:
    """An option is configuration: judged (no warning), and the gate section names it;
    end-to-end latency, whose meaning the answer length sets, is shown but not judged."""
    pytester.makepyfile(test_speed=SPEED.replace("num_predict=4", "num_predict=5"))
    result = pytester.runpytest(MODEL, QUIET, "--tokrate-gate-metrics=decode_tps,e2e")
    result.assert_outcomes(passed=1)
    out = text(result)
    assert "tokrate: baselines and gate" in out and "[num_predict 4 -> 5]" in out
    assert "not judged: num_predict changed" in out
    # Slower than the baseline claims: the option change is judged, and named.
    edit(recorded, scale("decode_tps", 10.0))
    slow = pytester.runpytest(MODEL, QUIET)
    slow.assert_outcomes(failed=1)
    assert "configuration changed: num_predict 4 -> 5" in text(slow)


def test_missing_baseline_warns_or_fails_when_strict(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_speed=SPEED)
    result = pytester.runpytest(MODEL)
    result.assert_outcomes(passed=1, warnings=1)
    assert "no baseline for test_speed.py::test_speed[smollm2]" in text(result)
    strict = pytester.runpytest(MODEL, "--tokrate-missing-baseline=fail")
    strict.assert_outcomes(failed=1)
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    assert "record one with `pytest --tokrate-update-baselines`" in text(strict)


def test_pass_rate_drop_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_quality="""
        def test_quality(tokrate):
            tokrate.run("Say hi.", rounds=5, num_predict=4, min_pass_rate=0,
                        checks=[{"type": "contains", "value": "@@never@@"}])
        """
    )
    update(pytester).assert_outcomes(passed=1)
    path = pytester.path / "baselines/test_quality/test_quality[smollm2]@embedded.json"

    def used_to_pass(data: dict[str, Any]) -> None:
        data["runs"]["run 1"]["quality"].update(passed=5, total=5, pass_rate=1.0)

    edit(path, used_to_pass)
    # pass rate is judged even on a busy machine: no --tokrate-other-load=off here
    result = pytester.runpytest(MODEL, "--tokrate-gate-metrics=pass_rate")
    result.assert_outcomes(failed=1)
    out = text(result)
    assert "regression of pass rate" in out
    assert "100.0 -> 0" in out and "-100 pts" in out and "-10 pts" in out


def test_several_runs_in_one_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_two="""
        def test_two(tokrate):
            tokrate.run("Say hi.", rounds=5, num_predict=4)
            tokrate.run("Say bye.", rounds=5, num_predict=4, label="bye")
        """
    )
    update(pytester).assert_outcomes(passed=1)
    path = pytester.path / "baselines/test_two/test_two[smollm2]@embedded.json"
    assert sorted(json.loads(path.read_text(encoding="utf-8"))["runs"]) == ["bye", "run 1"]
    edit(path, scale("decode_tps", 1000.0, run="bye"))
    result = pytester.runpytest(MODEL, QUIET, "--tokrate-min-decode-tokens=1")
    result.assert_outcomes(failed=1)
    assert "test_two.py::test_two[smollm2] (bye)" in text(result)


def test_busy_machine_withholds_the_speed_verdict(pytester: pytest.Pytester) -> None:
    # one engine thread (as SPEED has), so that the burners slow it down without stalling it
    pytester.makepyfile(test_speed=SPEED)
    update(pytester).assert_outcomes(passed=1)
    edit(pytester.path / FILE, scale("decode_tps", 1000.0))
    burn = "import time\nend = time.time() + 60\nwhile time.time() < end: pass\n"
    # two busy processes per core: others take more than the cores the 1-thread engine
    # leaves free (plus --tokrate-other-load)
    cores = len(os.sched_getaffinity(0))
    burners = [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(2 * cores)]
    try:
        result = pytester.runpytest(MODEL, "--tokrate-other-load=0.25")
    finally:
        for p in burners:
            p.kill()
            p.wait()
    out = text(result)
    # The engine kept off the cores may also get the advice to use fewer threads.
    waited = "the engine waited for a CPU" in out
    result.assert_outcomes(passed=1, warnings=2 if waited else 1)
    assert "speed of test_speed.py::test_speed[smollm2] not judged" in out
    assert "of the time while it ran" in out and "regression?" in out


def test_short_answers_have_their_decode_rate_left_unjudged(pytester: pytest.Pytester) -> None:
    """4-token answers: too few decode steps to time, so by default decode tok/s is shown
    but not judged, while TTFT still is."""
    pytester.makepyfile(test_speed=SPEED.replace("min_decode_tokens=1, ", ""))
    update(pytester).assert_outcomes(passed=1)
    edit(pytester.path / FILE, scale("decode_tps", 1000.0))
    report = pytester.path / "report.json"
    pytester.runpytest(MODEL, QUIET, f"--tokrate-report-json={report}").assert_outcomes(passed=1)
    findings = json.loads(report.read_text(encoding="utf-8"))["measurements"][0]["findings"]
    note = next(f for f in findings if f["kind"] == "decode-not-gated")
    assert note["severity"] == "info" and "answers of 4 tokens" in note["message"]
    edit(pytester.path / FILE, scale("ttft", 0.001))  # TTFT 1000x longer now: judged
    result = pytester.runpytest(MODEL, QUIET)
    result.assert_outcomes(failed=1)
    out = text(result)
    assert "regression of TTFT in" in out and "regression of decode" not in out
    assert "too short" in out  # the decode row of the table
    lowered = pytester.runpytest(MODEL, QUIET, "--tokrate-min-decode-tokens=2")
    lowered.assert_outcomes(failed=1)
    assert "regression of decode tok/s, TTFT in" in text(lowered)


# -- update mode ---------------------------------------------------------------------------


def test_update_measures_more_rounds_for_a_precise_baseline(pytester: pytest.Pytester) -> None:
    """Baselines get 4x the test's rounds by default; a normal run keeps its own."""

    def rounds() -> int:
        run = json.loads((pytester.path / FILE).read_text(encoding="utf-8"))["runs"]["run 1"]
        assert len(run["samples"]["decode_tps"]) == run["rounds"]
        return int(run["rounds"])

    pytester.makepyfile(test_speed=SPEED.replace("warmup=1", "warmup=0"))
    pytester.runpytest(MODEL, "--tokrate-update-baselines").assert_outcomes(passed=1)
    assert rounds() == 20  # the marker's 5, times 4
    update(pytester, "--tokrate-baseline-rounds=7").assert_outcomes(passed=1)
    assert rounds() == 7
    update(pytester, "--tokrate-baseline-rounds=3").assert_outcomes(passed=1)
    assert rounds() == 5  # never fewer than the test's own
    pytester.makeini("[pytest]\ntokrate_baseline_rounds = 2x\n")
    pytester.runpytest(MODEL, "--tokrate-update-baselines").assert_outcomes(passed=1)
    assert rounds() == 10
    report = pytester.path / "report.json"
    pytester.runpytest(MODEL, f"--tokrate-report-json={report}").assert_outcomes(passed=1)
    measured = json.loads(report.read_text(encoding="utf-8"))["measurements"][0]
    assert len(measured["samples"]) == 5  # not writing: the test's rounds
    bad = pytester.runpytest(MODEL, "--tokrate-update-baselines", "--tokrate-baseline-rounds=0")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "--tokrate-baseline-rounds: invalid value '0'" in text(bad)


def test_update_is_refused_in_ci_unless_forced(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_speed=SPEED)
    monkeypatch.setenv("CI", "true")
    refused = pytester.runpytest(MODEL, "--tokrate-update-baselines")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    assert "refusing to write baselines because the CI environment variable is set" in text(refused)
    assert not (pytester.path / "baselines").exists()
    forced = update(pytester, "--tokrate-force-update")
    forced.assert_outcomes(passed=1)
    assert (pytester.path / FILE).is_file()


def test_unwritable_baseline_directory(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_speed=SPEED)
    (pytester.path / "baselines").write_text("not a directory", encoding="utf-8")
    result = pytester.runpytest(MODEL, "--tokrate-update-baselines")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "cannot write baselines to" in text(result) and "--tokrate-baseline-dir" in text(result)
    other = update(pytester, "--tokrate-baseline-dir=perf/base")
    other.assert_outcomes(passed=1)
    assert (pytester.path / "perf/base/test_speed/test_speed[smollm2]@embedded.json").is_file()


def test_corrupted_baseline_fails_the_test_and_is_not_overwritten(
    pytester: pytest.Pytester, recorded: Path
) -> None:
    recorded.write_text('{"schema_version": 1, "runs": ', encoding="utf-8")
    result = pytester.runpytest(MODEL)
    result.assert_outcomes(failed=1)
    assert f"baseline {recorded} is not valid JSON" in text(result)
    again = pytester.runpytest(MODEL, "--tokrate-update-baselines")
    assert again.ret == pytest.ExitCode.TESTS_FAILED  # the session says the write failed
    assert "left as it is; pass --tokrate-force-update" in text(again)
    assert recorded.read_text(encoding="utf-8") == '{"schema_version": 1, "runs": '
    update(pytester, "--tokrate-force-update").assert_outcomes(passed=1)
    assert json.loads(recorded.read_text(encoding="utf-8"))["schema_version"] == 1


def test_future_schema_is_an_error_naming_the_file(
    pytester: pytest.Pytester, recorded: Path
) -> None:
    edit(recorded, lambda d: d.__setitem__("schema_version", 99))
    result = pytester.runpytest(MODEL)
    result.assert_outcomes(failed=1)
    assert "schema_version 99, written by a newer pytest-tokrate" in text(result)


TWO = """
import pytest

@pytest.mark.tokrate(rounds=1, warmup=0, num_predict=2)
def test_a(tokrate):
    tokrate.run("A")

@pytest.mark.tokrate(rounds=1, warmup=0, num_predict=2)
def test_b(tokrate):
    tokrate.run("B")
"""


def test_only_tests_that_ran_are_written_and_unused_are_pruned_on_full_runs(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_two=TWO)
    update(pytester).assert_outcomes(passed=2)
    base = pytester.path / "baselines/test_two"
    a, b = base / "test_a[smollm2]@embedded.json", base / "test_b[smollm2]@embedded.json"
    before_b = b.read_text(encoding="utf-8")
    edit(a, lambda d: d.__setitem__("recorded_at", "old"))
    update(pytester, "-k", "test_a").assert_outcomes(passed=1)
    assert json.loads(a.read_text(encoding="utf-8"))["recorded_at"] != "old"
    assert b.read_text(encoding="utf-8") == before_b  # did not run: untouched
    # test_b renamed to test_c: its baseline is unused
    pytester.makepyfile(test_two=TWO.replace("def test_b", "def test_c"))
    partial = update(pytester, "-k", "test_a")
    assert (
        "1 other baseline(s) left as they are, their tests not run here (1 test(s) were "
        "deselected" in text(partial)
    )
    assert b.exists()
    full = update(pytester)
    full.assert_outcomes(passed=2)
    assert "removed 1 baseline(s) no test uses" in text(full)
    assert not b.exists() and (base / "test_c[smollm2]@embedded.json").exists()


def test_failed_tests_are_not_written(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_fail="""
        def test_fail(tokrate):
            tokrate.run("Hi", rounds=1, warmup=0, num_predict=2)
            assert False, "the test itself fails"
        """
    )
    result = update(pytester)
    result.assert_outcomes(failed=1)
    assert not (pytester.path / "baselines").exists() or not list(
        (pytester.path / "baselines").rglob("*.json")
    )
