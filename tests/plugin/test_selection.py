"""What selects a run's behaviour from its surroundings: the CI environment variable, a
blank command-line value (an unset ``$VAR`` in a CI script), boolean ini values, and the
hint for a misspelt marker keyword."""

from __future__ import annotations

import pytest

from pytest_tokrate.plugin.session import running_in_ci

USES_TOKRATE = """
def test_uses(tokrate):
    tokrate.run("Hi", rounds=1, warmup=0, num_predict=2)

def test_plain():
    pass
"""
PLAIN = "def test_plain():\n    pass\n"
MEASURE = ("--tokrate-option=num_thread=1", "-p", "no:cacheprovider")
CI_REFUSAL = "refusing to write baselines because the CI environment variable is set"


def output(result: pytest.RunResult) -> str:
    return result.stdout.str() + "\n" + result.stderr.str()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"CI": ""}, False),
        ({"CI": "  "}, False),
        ({"CI": "false"}, False),
        ({"CI": "False"}, False),
        ({"CI": "0"}, False),
        ({"CI": "no"}, False),
        ({"CI": "NO"}, False),
        ({"CI": "off"}, False),
        ({"CI": "true"}, True),
        ({"CI": "1"}, True),
        ({"CI": "yes"}, True),
        ({"CI": "github-actions"}, True),
    ],
)
def test_running_in_ci_needs_a_set_value_that_is_not_false(
    environ: dict[str, str], expected: bool
) -> None:
    assert running_in_ci(environ) is expected


@pytest.mark.parametrize("value", ["false", "FALSE", "0", "", "no", "No"])
def test_ci_set_to_false_skips_without_a_model(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CI", value)
    pytester.makepyfile(USES_TOKRATE)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1)
    assert "because CI is set" not in output(result)


@pytest.mark.parametrize("value", ["1", "TRUE"])
def test_ci_set_to_true_errors_without_a_model(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CI", value)
    pytester.makepyfile(USES_TOKRATE)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    assert "because CI is set" in output(result)


@pytest.mark.parametrize("value", ["false", "0", "", "off"])
def test_ci_set_to_false_allows_baseline_updates(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CI", value)
    pytester.makepyfile(PLAIN)
    result = pytester.runpytest("--tokrate-update-baselines", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK, output(result)
    assert CI_REFUSAL not in output(result)


def test_ci_set_refuses_baseline_updates_and_shows_the_value(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "yes")
    pytester.makepyfile(PLAIN)
    result = pytester.runpytest("--tokrate-update-baselines", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = output(result)
    assert f"{CI_REFUSAL} (CI='yes')" in text
    assert "--tokrate-force-update" in text


@pytest.mark.parametrize("value", ["", "   "])
def test_blank_command_line_model_leaves_the_ini_model(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.delenv("CI", raising=False)
    pytester.makeini("[pytest]\ntokrate_model = smollm2\n")
    pytester.makepyfile(USES_TOKRATE)
    result = pytester.runpytest(f"--tokrate-model={value}", *MEASURE)
    result.assert_outcomes(passed=2)
    assert "no model chosen" not in output(result)


def test_blank_command_line_model_without_ini_is_no_model(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(USES_TOKRATE)
    result = pytester.runpytest("--tokrate-model=", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1)


def test_blank_command_line_baseline_dir_leaves_the_ini_dir(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    pytester.makeini("[pytest]\ntokrate_baseline_dir = from_ini\n")
    pytester.makepyfile(PLAIN)
    result = pytester.runpytest(
        "--tokrate-baseline-dir= ", "--tokrate-update-baselines", "-p", "no:cacheprovider"
    )
    assert result.ret == pytest.ExitCode.OK, output(result)
    assert "baseline file(s) to from_ini/" in output(result)


def test_misspelt_marker_keyword_gets_a_hint(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest

@pytest.mark.tokrate(roundz=3)
def test_marked(tokrate):
    raise AssertionError("the body must not run")
"""
    )
    result = pytester.runpytest("--tokrate-model=smollm2", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    text = output(result)
    assert (
        "unknown argument(s) 'roundz' in @pytest.mark.tokrate (did you mean 'rounds'?): "
        "use rounds=" in text
    )
    assert "the body must not run" not in text


@pytest.mark.parametrize("name", ["tokrate_update_baselines", "tokrate_force_update"])
def test_bad_boolean_ini_value_names_the_setting(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.delenv("CI", raising=False)
    pytester.makeini(f"[pytest]\n{name} = maybe\n")
    pytester.makepyfile(PLAIN)
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = output(result)
    assert f"ini {name}: invalid value 'maybe'" in text
    assert "true or false (also 1/0, yes/no, on/off)" in text
    assert "invalid truth value" not in text
    assert "Traceback" not in text


@pytest.mark.parametrize(("value", "on"), [("YES", True), ("1", True), ("off", False)])
def test_boolean_ini_values_are_read(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str, on: bool
) -> None:
    # Under CI an update is refused: the refusal shows the ini switched it on.
    monkeypatch.setenv("CI", "true")
    pytester.makeini(f"[pytest]\ntokrate_update_baselines = {value}\n")
    pytester.makepyfile(PLAIN)
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert (CI_REFUSAL in output(result)) is on
    assert result.ret == (pytest.ExitCode.USAGE_ERROR if on else pytest.ExitCode.OK)
