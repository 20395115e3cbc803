"""The Ollama path end to end: pytest + the plugin + the official client + the stand-in.

Every infrastructure fault must end as a test ERROR (not a failure) whose message names
the fix, with no traceback, and results already measured must still be reported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from standin import OllamaStandin

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

FAST = [
    "--tokrate-rounds=2",
    "--tokrate-warmup=1",
    "--tokrate-num-predict=8",
    "-p",
    "no:cacheprovider",
]
STORY = "Write a long story about a dragon who lives in a castle."


def run(
    pytester: pytest.Pytester, server: OllamaStandin, *args: str, model: str = "smollm2:135m"
) -> pytest.RunResult:
    return pytester.runpytest(*server.plugin_args(model), *FAST, "-rA", *args)


def assert_clean(result: pytest.RunResult) -> None:
    """No traceback and no source lines of ours in what the user sees."""
    out = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in out
    assert "pytest_tokrate/" not in out and "pytest_tokrate\\" not in out
    assert "\nE   " not in out  # pytest's exception lines


def test_measures_a_test_through_ollama(
    pytester: pytest.Pytester, ollama_standin: OllamaStandin
) -> None:
    pytester.makepyfile(
        f"""
        def test_story(tokrate):
            r = tokrate.run({STORY!r})
            assert r.rounds == 2 and r.cache_busting == "evict"
            s = r.samples[0]
            assert s.output_tokens == 8 and s.decode_tps_engine > 0 and s.ttft > 0
            assert s.extra["server_metrics"]["eval_count"] == 8
            assert r.model.backend == "ollama" and r.model.quantization == "Q4_1"
            assert r.model.server_version == "0.12.3"
            assert r.model.extra["server_settings"] == {{
                "kv_cache_type": "q8_0", "flash_attention": "on", "num_parallel": 2}}
        """
    )
    result = run(
        pytester,
        ollama_standin,
        "--tokrate-server-setting=OLLAMA_KV_CACHE_TYPE=q8_0",
        "--tokrate-server-setting=flash_attention=1",
        "--tokrate-server-setting=num_parallel=2",
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*tokrate: speed per test and model*", "*test_story*smollm2:135m*"]
    )
    assert_clean(result)


CASES = {
    # prompt marker: (fault, arguments, words the error must contain)
    "case-busy": ("busy", {}, ["stayed busy (503", "--tokrate-busy-retries"]),
    "case-midstream": ("error_midstream", {"after": 2, "message": "runner died"},
                       ["error in the middle of the stream", "runner died", "discarded"]),
    "case-malformed": ("malformed", {"after": 1}, ["not JSON", "discarded"]),
    "case-timeout": ("slow_first_token", {"delay_s": 2.5},
                     ["within the 1 s request timeout", "--tokrate-timeout", "discarded"]),
    "case-drop": ("drop", {"after": 2}, ["dropped after 2 chunks", "discarded"]),
    "case-types": ("wrong_type", {"field": "eval_duration", "value": "slow"},
                   ["cannot read", "eval_duration", "discarded"]),
    "case-truncated": ("truncate", {"after": 1}, ["without the final done:true", "discarded"]),
}  # fmt: skip


def test_each_server_fault_is_a_test_error_with_the_fix(
    pytester: pytest.Pytester, ollama_standin: OllamaStandin
) -> None:
    for marker, (fault, kwargs, _) in CASES.items():
        ollama_standin.faults.arm(fault, prompt_contains=marker, **kwargs)
    tests = "\n".join(
        f"def test_{marker.replace('-', '_')}(tokrate):\n"
        f"    tokrate.run('{STORY} {marker}', timeout=1 if '{marker}' == 'case-timeout' else 60)\n"
        for marker in CASES
    )
    pytester.makepyfile(tests + "\ndef test_fine(tokrate):\n    tokrate.run('Say hi.')\n")
    result = run(pytester, ollama_standin, "--tokrate-busy-retries=1")
    result.assert_outcomes(passed=1, errors=len(CASES))
    assert result.ret == 1
    out = result.stdout.str()
    for marker, (_, _, words) in CASES.items():
        name = f"test_{marker.replace('-', '_')}[smollm2:135m]"
        assert f"ERROR test_each_server_fault_is_a_test_error_with_the_fix.py::{name}" in out
        section = out.split(f"_ ERROR at call of {name} _")[1].lstrip("_\n").split("\n_")[0]
        assert section.strip().startswith("tokrate infrastructure error: "), section
        for word in words:
            assert word in section, (marker, word, section)
    # The passing test's measurement is still reported.
    result.stdout.fnmatch_lines(["*test_fine*smollm2:135m*"])
    assert_clean(result)


def test_model_not_pulled(pytester: pytest.Pytester, ollama_standin: OllamaStandin) -> None:
    pytester.makepyfile("def test_a(tokrate):\n    tokrate.run('Hi')\n")
    result = run(pytester, ollama_standin, model="gemma2:2b-instruct-q2_K")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*tokrate infrastructure error: model 'gemma2:2b-instruct-q2_K' is not on the Ollama "
            "server at http://127.0.0.1:*(404: model 'gemma2:2b-instruct-q2_K' not found): run "
            "`ollama pull gemma2:2b-instruct-q2_K` there*"
        ]
    )
    assert_clean(result)


def test_server_not_running(pytester: pytest.Pytester, standin_factory: Callable[..., Any]) -> None:
    server = standin_factory("ollama")
    server.stop()  # the address now refuses connections
    pytester.makepyfile(
        "def test_a(tokrate):\n    tokrate.run('Hi')\n\n"
        "def test_b(tokrate):\n    tokrate.run('Hi')\n"
    )
    result = run(pytester, server)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*tokrate infrastructure error: Ollama is not reachable at http://127.0.0.1:* "
            "start it with `ollama serve`, or set --tokrate-host (or OLLAMA_HOST)*"
        ]
    )
    assert_clean(result)


def test_server_dies_mid_run_keeps_finished_results(
    pytester: pytest.Pytester, standin_factory: Callable[..., Any]
) -> None:
    server = standin_factory("ollama")
    server.faults.arm("die", prompt_contains="kill-switch")
    pytester.makepyfile(
        """
        def test_1_before(tokrate):
            tokrate.run("Say hi.")

        def test_2_dies(tokrate):
            tokrate.run("kill-switch")

        def test_3_after(tokrate):
            tokrate.run("Say hi.")
        """
    )
    result = run(pytester, server)
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at call of test_2_dies*",
            "tokrate infrastructure error: the connection to Ollama at*dropped after 0 chunks*",
            "*_ ERROR at call of test_3_after*",
            "tokrate infrastructure error: Ollama is not reachable at*",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*tokrate: speed per test and model*", "*test_1_before*smollm2:135m*"]
    )
    assert "test_3_after  " not in result.stdout.str().split("speed per test and model")[1]
    assert_clean(result)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--tokrate-model=bad name!"], {}, "'bad name!' is not a valid Ollama model name"),
        (["--tokrate-model=,"], {}, "empty model name"),
        (["--tokrate-model=x:1", "--tokrate-backend=llama"], {}, "invalid value 'llama'"),
        (["--tokrate-model=x:1", "--tokrate-host=box:port"], {}, "the host 'box:port'"),
        (["--tokrate-model=x:1"], {"OLLAMA_HOST": "ftp://box"},
         "OLLAMA_HOST: cannot parse the host 'ftp://box': the scheme 'ftp'"),
        (["--tokrate-model=x:1", "--tokrate-server-setting=kv_cache_type=q3"], {},
         "invalid value 'q3' for server setting 'kv_cache_type'"),
        (["--tokrate-model=x:1", "--tokrate-busy-retries=-1"], {}, "an integer >= 0"),
    ],
)  # fmt: skip
def test_bad_input_is_a_usage_error_naming_the_value(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    pytester.makepyfile("def test_a(tokrate):\n    pass\n")
    result = pytester.runpytest("--tokrate-backend=ollama", *args, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert "Traceback" not in result.stderr.str()


def test_host_from_ini_and_ollama_host(
    pytester: pytest.Pytester, ollama_standin: OllamaStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        "def test_a(tokrate):\n    r = tokrate.run('Say hi.')\n"
        f"    assert r.model.extra['host'] == 'http://127.0.0.1:{ollama_standin.port}'\n"
    )
    monkeypatch.setenv("OLLAMA_HOST", f":{ollama_standin.port}")
    args = ["--tokrate-backend=ollama", "--tokrate-model=smollm2:135m", *FAST]
    pytester.runpytest(*args).assert_outcomes(passed=1)
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:1")  # the ini wins over the environment
    pytester.makeini(f"[pytest]\ntokrate_host = http://127.0.0.1:{ollama_standin.port}\n")
    pytester.runpytest(*args).assert_outcomes(passed=1)


def test_an_option_only_the_server_start_sets_is_refused_with_the_way(
    pytester: pytest.Pytester, ollama_standin: OllamaStandin
) -> None:
    """flash_attn, KV cache types and num_ubatch are fixed when a server starts: sent in
    a request they would be ignored yet recorded as the test's configuration."""
    pytester.makepyfile(f"def test_story(tokrate):\n    tokrate.run({STORY!r})\n")
    result = run(pytester, ollama_standin, "--tokrate-option", "flash_attn=on")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "option flash_attn='on' cannot be set per request on the ollama backend" in out
    assert "OLLAMA_FLASH_ATTENTION=1" in out and "flash_attention=on" in out
    assert not [b for b in ollama_standin.bodies if "prompt" in b]  # refused before a round
    assert_clean(result)
