"""Secrets never leave the request; model output and server text are shown, never obeyed.

A planted API key is echoed back by the server everywhere a real server could echo it
(an error status, an error mid-stream, the model's answer, the model listing, the
system fingerprint, a sweep's failed request, a 401 for a wrong key), and the test then
searches everything the run printed and wrote: the terminal, the JSON and Markdown
reports, the GitHub job summary, JUnit XML, the DEBUG log file and the baselines.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from reliability_support import FAST, assert_clean, outcomes, output
from standin import OllamaStandin, OpenAIStandin
from standin.engine import EngineHost
from standin.httpserver import Exchange

KEY = "sk-planted-7Qz9-tokrate-a41c0e5b"
WRONG_KEY = "sk-wrong-3Fx8-tokrate-9d2e77c1"
KEY_ENV = "TOKRATE_PLANTED_KEY"
STORY = "Write a long story about a dragon who lives in a castle."


class EchoingServer(OpenAIStandin):
    """An OpenAI-compatible stand-in whose model listing echoes the caller's key."""

    def _models(self, ex: Exchange) -> None:
        auth = str(ex.headers.get("Authorization") or "")
        data = [{"id": e.name, "object": "model", "owned_by": f"team {auth}"} for e in self.engine]
        ex.send_json(200, {"object": "list", "data": data}, "application/json")


def everything(pytester: pytest.Pytester, result: pytest.RunResult) -> dict[str, str]:
    """What the run printed, and every file under the project it wrote (not our sources)."""
    texts = {"terminal": output(result)}
    for path in sorted(pytester.path.rglob("*")):
        if path.is_file() and path.suffix not in (".py", ".pyc"):
            texts[str(path.relative_to(pytester.path))] = path.read_text(errors="replace")
    return texts


def assert_secret_absent(texts: dict[str, str], secret: str) -> None:
    # The key, its Base64-free halves, and the header that would carry it.
    pieces = [secret, secret[: len(secret) // 2 + 4], secret[len(secret) // 2 - 4 :]]
    for where, text in texts.items():
        for piece in pieces:
            assert piece not in text, f"{piece!r} leaked into {where}"
        assert "Bearer sk-" not in text, f"an authorization header leaked into {where}"


ECHO_TESTS = """
STORY = {story!r}

def test_clean_run(tokrate):
    r = tokrate.run(STORY + " [fingerprint]")
    assert r.model.extra["owned_by"] == "team Bearer [redacted]"

def test_error_status_echoes_the_key(tokrate):
    tokrate.run(STORY + " [status]")

def test_error_mid_stream_echoes_the_key(tokrate):
    tokrate.run(STORY + " [midstream]")

def test_answer_echoes_the_key(tokrate):
    r = tokrate.run(STORY + " [answer]")
    assert r.samples[0].text.startswith("your key is [redacted]")

def test_sweep_error_echoes_the_key(tokrate):
    r = tokrate.sweep(STORY + " [sweep]", concurrency=[1], requests=2)
    assert len(r.errors) == 1 and "[redacted]" in r.errors[0]
"""


def test_a_planted_key_appears_in_no_output(
    pytester: pytest.Pytester, standin_engine: EngineHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = EchoingServer(standin_engine, api_key=KEY).start()
    try:
        faults = server.faults
        faults.arm(
            "final_fields",
            prompt_contains="[fingerprint]",
            set={"system_fingerprint": f"b6000-{KEY}"},
        )
        faults.arm(
            "status", prompt_contains="[status]", status=500, message=f"upstream refused key {KEY}"
        )
        faults.arm(
            "error_midstream",
            prompt_contains="[midstream]",
            after=2,
            message=f"quota exhausted for {KEY}",
        )
        faults.arm("inject_text", prompt_contains="[answer]", text=f"your key is {KEY}")
        faults.arm("error_midstream", prompt_contains="[sweep]", times=1, after=1,
                   message=f"rate limit for {KEY}")  # fmt: skip
        monkeypatch.setenv(KEY_ENV, KEY)
        summary = pytester.path / "job-summary.md"
        monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
        pytester.makepyfile(test_echo=ECHO_TESTS.format(story=STORY))
        junit = pytester.path / "junit.xml"
        result = pytester.runpytest(
            *FAST,
            *server.plugin_args(),
            f"--tokrate-api-key-env={KEY_ENV}",
            "--tokrate-report-json=report.json",
            "--tokrate-report-md=report.md",
            "--tokrate-update-baselines",
            f"--junitxml={junit}",
            "--log-file=tokrate.log",
            "--log-file-level=DEBUG",
            "-vv",
            "-rA",
        )
    finally:
        server.stop()
    # The key was really sent, and really echoed back.
    assert set(server.auth_headers) == {f"Bearer {KEY}"}
    got = outcomes(junit)
    for name in ("test_clean_run", "test_answer_echoes_the_key", "test_sweep_error_echoes_the_key"):
        assert got[name].status == "passed", got[name]
    for name in ("test_error_status_echoes_the_key", "test_error_mid_stream_echoes_the_key"):
        assert got[name].status == "error" and "[redacted]" in got[name].message, got[name]
    assert_clean(result)
    texts = everything(pytester, result)
    for written in ("report.json", "report.md", "job-summary.md", "junit.xml", "tokrate.log"):
        assert written in texts, f"{written} was not written"
    assert any(name.startswith("baselines/") for name in texts), "no baseline written"
    assert "HTTP Request: POST" in texts["tokrate.log"]  # the DEBUG log did capture traffic
    assert KEY_ENV in texts["report.json"]  # the variable's name is recorded, its value never
    assert_secret_absent(texts, KEY)


def test_a_wrong_key_echoed_in_a_401_appears_in_no_output(
    pytester: pytest.Pytester, standin_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = standin_factory("openai", api_key=KEY)
    monkeypatch.setenv(KEY_ENV, WRONG_KEY)
    pytester.makepyfile("def test_a(tokrate):\n    tokrate.run('Hi')\n")
    result = pytester.runpytest(
        *FAST,
        *server.plugin_args(),
        f"--tokrate-api-key-env={KEY_ENV}",
        "--tokrate-report-json=report.json",
        "--log-file=tokrate.log",
        "--log-file-level=DEBUG",
        "-rA",
    )
    result.assert_outcomes(errors=1)
    assert f"Bearer {WRONG_KEY}" in server.auth_headers
    assert "Incorrect API key provided: [redacted]" in output(result)
    assert f"check that {KEY_ENV} holds a valid key" in output(result)
    assert_clean(result)
    assert_secret_absent(everything(pytester, result), WRONG_KEY)


# -- model output in reports ---------------------------------------------------------------

HOSTILE = (
    "```\n</pre><script>alert('tokrate')</script> | cell | <img src=x onerror=alert(1)>\n"
    "\x1b]0;owned\x07\x1b[2J $(touch PWNED_BY_OUTPUT) {{7*7}} __import__('os')"
)


def outside_fences(markdown: str) -> str:
    """The Markdown text with every fenced code block (rendered verbatim) removed."""
    out, fence = [], None
    for line in markdown.splitlines():
        match = re.match(r"^(`{3,}|~{3,})", line)
        if fence is None and match:
            fence = match.group(1)
        elif (
            fence is not None
            and line.strip() == fence[0] * len(line.strip())
            and len(line.strip()) >= len(fence)
        ):
            fence = None
        elif fence is None:
            out.append(line)
    assert fence is None, "a fenced block was never closed"
    return "\n".join(out)


def strings(data: Any) -> list[str]:
    """Every string value inside a JSON document."""
    if isinstance(data, dict):
        return [s for v in data.values() for s in strings(v)]
    if isinstance(data, list):
        return [s for v in data for s in strings(v)]
    return [data] if isinstance(data, str) else []


def test_hostile_model_output_is_escaped_in_every_report(
    pytester: pytest.Pytester, ollama_standin: OllamaStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    ollama_standin.faults.arm("inject_text", text=HOSTILE)
    summary = pytester.path / "job-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    pytester.makepyfile(
        f"""
        def test_quality(tokrate):
            r = tokrate.run({STORY!r}, checks=[{{"type": "contains", "value": "zz-never"}}])

        def test_passes(tokrate):
            r = tokrate.run({STORY!r})
            assert r.samples[0].text.startswith("```")
        """
    )
    result = pytester.runpytest(
        *FAST,
        *ollama_standin.plugin_args(),
        "--tokrate-gate=off",
        "--tokrate-report-json=report.json",
        "--tokrate-report-md=report.md",
        "--junitxml=junit.xml",
    )
    result.assert_outcomes(passed=1, failed=1)
    # The terminal shows the escape sequences as text; it does not obey them.
    terminal = output(result)
    assert "\x1b]0;owned" not in terminal and "\x1b[2J" not in terminal
    assert "\\x1b]0;owned\\x07\\x1b[2J" in terminal
    for name in ("report.md", "job-summary.md"):
        markdown = (pytester.path / name).read_text(encoding="utf-8")
        assert "alert('tokrate')" in markdown  # the answer is shown ...
        plain = outside_fences(markdown)
        for raw in ("<script", "<img", "</pre>", "\x1b"):
            assert raw not in plain, f"{raw!r} outside a code block in {name}"
    # JSON keeps the answer exactly (it is data, escaped by the encoder).
    report = json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))
    assert any(HOSTILE in text for text in strings(report))
    # Nothing in the answer was executed along the way.
    assert not list(pytester.path.rglob("PWNED*"))


# -- YAML and baselines are data ----------------------------------------------------------

YAML_ATTACKS = {
    "python_object": "!!python/object/apply:os.system ['touch PWNED_BY_YAML']\n",
    "python_name": "cases:\n  - name: a\n    prompt: !!python/name:os.system\n",
    "python_module": "cases: !!python/module:os\n",
}


@pytest.mark.parametrize("attack", sorted(YAML_ATTACKS))
def test_yaml_suites_are_loaded_safely(pytester: pytest.Pytester, attack: str) -> None:
    pytester.path.joinpath("tokrate_attack.yaml").write_text(YAML_ATTACKS[attack])
    result = pytester.runpytest("-p", "no:cacheprovider", "--tokrate-model=smollm2")
    assert result.ret == pytest.ExitCode.INTERRUPTED  # a collection error, nothing ran
    text = output(result)
    assert "tokrate suite is invalid" in text and "tokrate_attack.yaml:" in text
    assert "could not determine a constructor" in text
    assert "Traceback" not in text
    assert not list(pytester.path.rglob("PWNED*"))


def test_baseline_content_is_never_executed(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """Code-looking strings everywhere in a baseline: compared and listed, never run."""
    pytester.makepyfile("def test_speed(tokrate):\n    tokrate.run('Say hi.', num_predict=4)\n")
    args = ("-p", "no:cacheprovider", "--tokrate-model=smollm2", "--tokrate-option=num_thread=1")
    pytester.runpytest(*args, "--tokrate-update-baselines").assert_outcomes(passed=1)
    (path,) = (pytester.path / "baselines").rglob("*.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    payload = "__import__('os').system('touch PWNED_BY_BASELINE') $(touch PWNED_SHELL) {{7*7}}"
    data["recorded_at"] = payload
    data["fingerprint"]["hardware"]["cpu_model"] = payload
    data["fingerprint"]["engine"]["engine_version"] = payload
    run = data["runs"]["run 1"]
    run["definition"]["options"]["stop"] = [payload]
    path.write_text(json.dumps(data), encoding="utf-8")
    result = pytester.runpytest(*args, "-rA")
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), output(result)
    assert "Traceback" not in output(result)
    from pytest_tokrate import cli

    for command in (["baselines", "list"], ["baselines", "show", "test_speed"]):
        shown = io.StringIO()
        code = cli.main([*command, "--root", str(pytester.path)], out=shown, err=shown)
        assert code == 0, shown.getvalue()
        assert "PWNED_BY_BASELINE" in shown.getvalue()  # shown as the text it is
    assert not list(pytester.path.rglob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))
