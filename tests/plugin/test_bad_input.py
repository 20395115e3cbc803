"""Bad input is a usage error (exit code 4) that names the value and the fix, with no
traceback; bad per-test input (marker, ``tokrate.run()`` arguments) errors or fails that
test with a clean message."""

from __future__ import annotations

from pathlib import Path

import pytest

USES_TOKRATE = """
def test_uses(tokrate):
    tokrate.run("Hi", rounds=1, warmup=0, num_predict=2)
"""


def output(result: pytest.RunResult) -> str:
    return result.stdout.str() + "\n" + result.stderr.str()


def assert_clean_usage_error(result: pytest.RunResult, *fragments: str) -> None:
    text = output(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, text
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in:\n{text}"
    assert "Traceback" not in text
    assert "pytest_tokrate" not in text  # no frame of our code
    assert "argument --tokrate-rounds: --tokrate-rounds" not in text  # name said once


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--tokrate-rounds=0"], ["argument --tokrate-rounds: invalid value '0'", ">= 1"]),
        (["--tokrate-rounds=many"], ["--tokrate-rounds: invalid value 'many'", "or auto"]),
        (["--tokrate-warmup=-1"], ["argument --tokrate-warmup: invalid value '-1'", ">= 0"]),
        (["--tokrate-timeout=0"], ["argument --tokrate-timeout: invalid value '0'"]),
        (["--tokrate-num-predict=0"], ["option 'num_predict': invalid value 0"]),
        (["--tokrate-num-ctx=big"], ["option 'num_ctx': invalid value 'big'"]),
        (["--tokrate-cache=never"], ["invalid value 'never'", "one of bust, nonce, allow"]),
        (["--tokrate-backend=vllm"], ["invalid value 'vllm'", "auto, embedded, ollama, openai"]),
        (["--tokrate-option=num_thread"], ["invalid value 'num_thread'", "expected KEY=VALUE"]),
        (["--tokrate-option=tempurature=1"], ["'tempurature'", "Did you mean 'temperature'?"]),
        (["--tokrate-option=num_predict=abc"], ["option 'num_predict': invalid value 'abc'"]),
        (["--tokrate-option=stop=[1]"], ["option 'stop'", "a string or a list of strings"]),
        (["--tokrate-missing-model=maybe"], ["invalid value 'maybe'", "auto, skip, error"]),
    ],
)
def test_bad_command_line_values(
    pytester: pytest.Pytester, args: list[str], fragments: list[str]
) -> None:
    pytester.makepyfile(USES_TOKRATE)
    assert_clean_usage_error(pytester.runpytest(*args), *fragments)


@pytest.mark.parametrize(
    ("ini", "fragments"),
    [
        (
            "tokrate_rounds = 0",
            ["ini rounds: invalid value '0': expected a whole number of rounds >= 1, or auto."],
        ),
        ("tokrate_warmup = -2", ["ini warmup: invalid value '-2': expected an integer >= 0."]),
        ("tokrate_timeout = soon", ["ini timeout: invalid value 'soon'"]),
        ("tokrate_cache = off", ["ini cache: invalid value 'off'"]),
        ("tokrate_backend = vllm", ["ini tokrate_backend: invalid value 'vllm'"]),
        ("tokrate_num_predict = -5", ["option 'num_predict': invalid value -5"]),
        ("tokrate_options =\n    num_thread", ["ini tokrate_options", "expected KEY=VALUE"]),
        ("tokrate_options =\n    bogus = 1", ["unknown generation option 'bogus'"]),
        ("tokrate_missing_model = never", ["tokrate_missing_model: invalid value 'never'"]),
    ],
)
def test_bad_ini_values(pytester: pytest.Pytester, ini: str, fragments: list[str]) -> None:
    pytester.makeini("[pytest]\n" + ini + "\n")
    pytester.makepyfile(USES_TOKRATE)
    assert_clean_usage_error(pytester.runpytest(), *fragments)


def test_unknown_model_alias(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USES_TOKRATE)
    result = pytester.runpytest("--tokrate-model=smollm2-q3_k")
    assert_clean_usage_error(result, "unknown model alias 'smollm2-q3_k'", "smollm2-q2_k")


def test_unknown_embedded_model(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USES_TOKRATE)
    result = pytester.runpytest("--tokrate-backend=embedded", "--tokrate-model=llama3")
    assert_clean_usage_error(result, "unknown embedded model 'llama3'", "a path to a .gguf file")


def test_invalid_server_model_name(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USES_TOKRATE)
    result = pytester.runpytest("--tokrate-model=not a model!")
    assert_clean_usage_error(result, "'not a model!' is not a valid Ollama model name")


def test_missing_gguf(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USES_TOKRATE)
    result = pytester.runpytest("--tokrate-model=models/absent.gguf")
    assert_clean_usage_error(result, "GGUF file 'models/absent.gguf' does not exist")


def test_missing_gguf_from_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntokrate_model = absent.gguf\n")
    pytester.makepyfile(USES_TOKRATE)
    assert_clean_usage_error(pytester.runpytest(), "GGUF file 'absent.gguf' does not exist")


def test_file_that_is_not_a_gguf(pytester: pytest.Pytester) -> None:
    pytester.path.joinpath("weights.gguf").write_text("<html>404 Not Found</html>")
    pytester.makepyfile(USES_TOKRATE)
    result = pytester.runpytest("--tokrate-model=weights.gguf")
    assert_clean_usage_error(result, "'weights.gguf' is not a GGUF model", "b'<htm'")


def test_unreadable_gguf(pytester: pytest.Pytester, unreadable_gguf: Path) -> None:
    path = unreadable_gguf
    pytester.makepyfile(USES_TOKRATE)
    result = pytester.runpytest(f"--tokrate-model={path}")
    assert_clean_usage_error(result, f"GGUF file {str(path)!r} cannot be read")


def test_model_listed_twice(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USES_TOKRATE)
    result = pytester.runpytest("--tokrate-model=smollm2,smollm2")
    assert_clean_usage_error(result, "a model is listed twice in 'smollm2,smollm2'")


def test_embedded_extra_not_installed(pytester: pytest.Pytester) -> None:
    # llama-cpp-python is installed here; a None entry in sys.modules is how Python marks a
    # module unimportable, which is what an install without the [embedded] extra looks
    # like. Run in a subprocess so this process keeps its engine.
    pytester.makeconftest("import sys\nsys.modules['llama_cpp'] = None\n")
    pytester.makepyfile(USES_TOKRATE)
    result = pytester.runpytest_subprocess("--tokrate-model=smollm2")
    assert_clean_usage_error(
        result,
        "llama-cpp-python is not installed",
        'pip install "pytest-tokrate[embedded]"',
    )


@pytest.mark.parametrize(
    ("marker", "fragment"),
    [
        (
            "rounds=0",
            "@pytest.mark.tokrate rounds: invalid value 0: expected a whole number of rounds "
            ">= 1, or auto.",
        ),
        ("warmup=-1", "@pytest.mark.tokrate warmup: invalid value -1"),
        ("num_predict='lots'", "option 'num_predict': invalid value 'lots'"),
        ("options=['num_predict']", "@pytest.mark.tokrate(options=...) must be a dict"),
        ("rounds=2, colour='red'", "unknown argument(s) 'colour' in @pytest.mark.tokrate"),
        ("3", "@pytest.mark.tokrate takes keyword arguments only, got (3,)"),
    ],
)
def test_bad_marker_errors_the_test_before_it_runs(
    pytester: pytest.Pytester, marker: str, fragment: str
) -> None:
    pytester.makepyfile(
        f"""
import pytest

@pytest.mark.tokrate({marker})
def test_marked(tokrate):
    raise AssertionError("the body must not run")
"""
    )
    result = pytester.runpytest("--tokrate-model=smollm2")
    result.assert_outcomes(errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = output(result)
    assert fragment in text
    assert "the body must not run" not in text
    assert "Traceback" not in text


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        ("tokrate.run()", "tokrate.run() needs exactly one of prompt='...' or messages=[...]"),
        ("tokrate.run('Hi', messages=[{'role': 'user', 'content': 'Hi'}])", "exactly one of"),
        ("tokrate.run(messages=[{'content': 'Hi'}])", "each message needs 'role' and 'content'"),
        ("tokrate.run('Hi', rounds=0)", "tokrate.run() rounds: invalid value 0"),
        ("tokrate.run('Hi', temprature=0)", "unknown generation option 'temprature'"),
    ],
)
def test_bad_run_arguments_fail_the_test_cleanly(
    pytester: pytest.Pytester, call: str, fragment: str
) -> None:
    pytester.makepyfile(f"def test_call(tokrate):\n    {call}\n")
    result = pytester.runpytest("--tokrate-model=smollm2")
    result.assert_outcomes(failed=1)
    text = output(result)
    assert fragment in text
    assert "test_bad_run_arguments_fail_the_test_cleanly.py:2" in text  # where, in user code
    assert "Traceback" not in text
    assert "pytest_tokrate" not in text
