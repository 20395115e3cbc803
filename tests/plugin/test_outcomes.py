"""Test outcomes and exit codes: no model, the terminal table, engine failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

USES_TOKRATE = """
def test_uses(tokrate):
    tokrate.run("Hi", rounds=1, warmup=0, num_predict=2)

def test_plain():
    pass
"""
NO_MODEL = "no model chosen for tokrate tests: pass --tokrate-model=smollm2"


def text(result: pytest.RunResult) -> str:
    return result.stdout.str() + "\n" + result.stderr.str()


def test_no_model_skips_locally_with_one_message(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(USES_TOKRATE)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == pytest.ExitCode.OK
    out = text(result)
    assert NO_MODEL in out
    assert "tokrate: 1 test(s) skipped: no model chosen" in out
    assert "Traceback" not in out


def test_no_model_is_an_error_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(USES_TOKRATE)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = text(result)
    assert NO_MODEL in out
    assert "this is an error because CI is set" in out
    assert "Traceback" not in out


@pytest.mark.parametrize(
    ("ci", "mode", "outcome"),
    [
        (None, "error", {"errors": 1}),
        ("1", "skip", {"skipped": 1}),
        ("1", "auto", {"errors": 1}),
        (None, "auto", {"skipped": 1}),
    ],
)
def test_missing_model_mode(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    ci: str | None,
    mode: str,
    outcome: dict[str, int],
) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    pytester.makepyfile("def test_uses(tokrate):\n    pass\n")
    pytester.runpytest(f"--tokrate-missing-model={mode}").assert_outcomes(**outcome)


def test_plugin_unused_stays_silent(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest("--tokrate-model=smollm2")
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert "tokrate: speed per test and model" not in out
    assert "skipped: no model chosen" not in out


TABLE_TESTS = """
import pytest

@pytest.mark.tokrate(rounds=3, warmup=1, num_predict=6)
def test_speed(tokrate):
    tokrate.run("Name a colour.")

def test_two_runs(tokrate):
    tokrate.run("Hi", rounds=2, warmup=0, num_predict=3)
    tokrate.run("Bye", rounds=2, warmup=0, num_predict=3, label="bye")
"""


def test_terminal_table_per_test_and_model(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(TABLE_TESTS)
    result = pytester.runpytest("--tokrate-model=smollm2")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*tokrate: speed per test and model*",
            "test * model * decode tok/s * prefill tok/s * TTFT ms * TPOT ms * E2E ms * "
            "out tok * rounds",
            "*test_speed*smollm2 * ±* 3",
            "*test_two_runs*smollm2 * 2",
            "*test_two_runs*(bye)*smollm2 * 2",
            "values: median ±stdev over the measured rounds (warm-up excluded)",
        ]
    )
    assert "no engine timings" not in out  # the embedded engine reports its own timers


def test_terminal_table_with_two_models(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TOKRATE_CACHE_DIR", str(tmp_path))  # smollm2-q2_k is made there
    pytester.makepyfile(
        "def test_m(tokrate):\n    tokrate.run('Hi', rounds=1, warmup=0, num_predict=2)\n"
    )
    result = pytester.runpytest("--tokrate-model=smollm2,smollm2-q2_k")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["*test_m?smollm2?*smollm2 *", "*test_m?smollm2-q2_k?*smollm2-q2_k *"]
    )


def test_broken_gguf_is_an_error_not_a_failure(pytester: pytest.Pytester) -> None:
    # Starts like a GGUF file, so it passes the cheap check at start-up; llama.cpp then
    # fails to load it when the test first runs a prompt.
    pytester.path.joinpath("broken.gguf").write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + bytes(64))
    test_file = pytester.makepyfile(USES_TOKRATE)
    result = pytester.runpytest("--tokrate-model=broken.gguf")
    result.assert_outcomes(passed=1, errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = text(result)
    assert "tokrate infrastructure error: llama.cpp could not load broken.gguf" in out
    assert "check that the file is a complete GGUF model" in out
    call_line = (
        test_file.read_text()
        .splitlines()
        .index('    tokrate.run("Hi", rounds=1, warmup=0, num_predict=2)')
        + 1
    )
    assert f"(at {test_file.name}:{call_line})" in out  # points at the user's call
    assert "Traceback" not in out
    assert "pytest_tokrate" not in out


def test_request_timeout_is_an_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USES_TOKRATE)
    result = pytester.runpytest("--tokrate-model=smollm2", "--tokrate-timeout=0.001")
    result.assert_outcomes(passed=1, errors=1)
    out = text(result)
    assert "tokrate infrastructure error: the request ran past its timeout of 0.001 s" in out
    assert "raise --tokrate-timeout" in out
    assert "Traceback" not in out


YAML_CASE = "cases:\n  - name: hello\n    prompt: Say hi.\n"


@pytest.mark.parametrize(("ci", "outcome"), [("true", {"errors": 2}), (None, {"skipped": 2})])
def test_python_tests_and_yaml_cases_without_a_model_end_alike(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str | None, outcome: Any
) -> None:
    """An error under CI and a skip elsewhere, for both kinds; the skip points at the test
    itself (the Python test, the case's line in the YAML file), not at plugin code."""
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    pytester.makepyfile(test_one="def test_one(tokrate):\n    tokrate.run('Hi')\n")
    pytester.makefile(".yaml", tokrate_one=YAML_CASE)
    result = pytester.runpytest("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(**outcome)
    out = text(result)
    assert "Traceback" not in out and "pytest_tokrate" not in out
    if ci is None:
        assert "SKIPPED [1] test_one.py:1: no model chosen" in out
        assert "SKIPPED [1] tokrate_one.yaml:2: no model chosen" in out


def test_the_no_model_advice_fits_the_backend(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(test_one="def test_one(tokrate):\n    tokrate.run('Hi')\n")
    result = pytester.runpytest("-rs", "--tokrate-backend=openai", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1)
    assert "the model id the server lists at GET /v1/models" in text(result)
