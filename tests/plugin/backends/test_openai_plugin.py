"""The OpenAI-compatible path end to end through pytest, and the API key's secrecy."""

from __future__ import annotations

import pytest
from standin import OpenAIStandin

KEY = "sk-tokrate-e2e-0b9d4c7a11"
FAST = [
    "--tokrate-rounds=2",
    "--tokrate-warmup=1",
    "--tokrate-num-predict=8",
    "-p",
    "no:cacheprovider",
]


def everything_written(pytester: pytest.Pytester, result: pytest.RunResult) -> str:
    """All the run printed, and every file it wrote (results, reports, baselines)."""
    texts = [result.stdout.str(), result.stderr.str()]
    for path in pytester.path.rglob("*"):
        if path.is_file() and path.suffix != ".pyc":
            texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)


def test_key_never_leaves_the_request(
    pytester: pytest.Pytester, openai_standin: OpenAIStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TOKRATE_E2E_KEY", KEY)
    openai_standin.api_key = KEY
    pytester.makepyfile(
        """
        import json

        def test_answer(tokrate):
            r = tokrate.run("Write a long story about a dragon who lives in a castle.")
            assert r.samples[0].extra["token_source"] == "timings"
            assert r.model.extra["api_key_env"] == "TOKRATE_E2E_KEY"
            with open("measurement.json", "w") as fh:
                json.dump(r.to_dict(), fh, default=str)
        """
    )
    result = pytester.runpytest(
        *openai_standin.plugin_args(),
        "--tokrate-api-key-env=TOKRATE_E2E_KEY",
        "--tokrate-report-json=report.json",
        "--tokrate-report-md=report.md",
        "--tokrate-update-baselines",
        "-v",
        "-rA",
        *FAST,
    )
    result.assert_outcomes(passed=1)
    assert openai_standin.auth_headers[-1] == f"Bearer {KEY}"
    for made in ("measurement.json", "report.json", "report.md"):
        assert (pytester.path / made).is_file(), made
    assert list((pytester.path / "baselines").rglob("*.json")), "no baseline written"
    written = everything_written(pytester, result)
    assert "TOKRATE_E2E_KEY" in written  # the variable's name is recorded ...
    assert KEY not in written  # ... its value never


def test_wrong_key_is_an_error_that_hides_the_key(
    pytester: pytest.Pytester, openai_standin: OpenAIStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKRATE_E2E_KEY", KEY + "-revoked")
    openai_standin.api_key = KEY
    pytester.makepyfile("def test_a(tokrate):\n    tokrate.run('Hi')\n")
    result = pytester.runpytest(
        *openai_standin.plugin_args(), "--tokrate-api-key-env=TOKRATE_E2E_KEY", "-rA", *FAST
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*tokrate infrastructure error: the server at http://127.0.0.1:*/v1 refused the "
            "request (HTTP 401: Incorrect API key provided: [[]redacted]. *check that "
            "TOKRATE_E2E_KEY holds a valid key for this server.*"
        ]
    )
    assert KEY not in everything_written(pytester, result)
    assert "Traceback" not in result.stdout.str()


def test_unset_key_variable_names_the_variable(
    pytester: pytest.Pytester, openai_standin: OpenAIStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOKRATE_E2E_KEY", raising=False)
    pytester.makepyfile("def test_a(tokrate):\n    tokrate.run('Hi')\n")
    result = pytester.runpytest(
        *openai_standin.plugin_args(), "--tokrate-api-key-env=TOKRATE_E2E_KEY", *FAST
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*the environment variable TOKRATE_E2E_KEY is not set or empty: export "
            "TOKRATE_E2E_KEY=<your key> before running pytest.*"
        ]
    )


def test_vllm_flavour_through_pytest(
    pytester: pytest.Pytester, openai_standin: OpenAIStandin
) -> None:
    openai_standin.flavour = "vllm"
    pytester.makepyfile(
        """
        def test_answer(tokrate):
            r = tokrate.run("Write a long story about a dragon who lives in a castle.")
            assert all(s.extra["token_source"] == "usage" for s in r.samples)
            assert r.output_tokens.median == 8 and r.decode_tps.median > 0
        """
    )
    result = pytester.runpytest(*openai_standin.plugin_args(), *FAST)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*no engine timings; decode tok/s is the client-side*"])
