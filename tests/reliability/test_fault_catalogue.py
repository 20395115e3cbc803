"""The fault-injection suite: every server and engine fault, through pytest, end to end.

Each case arms one fault on the protocol-exact stand-in (``tests/standin/``, the real
engine behind it) for the requests of one inner test, or drives the embedded engine into
the fault itself. One inner pytest run per protocol holds every case plus control tests,
so each run also proves that the other tests and the session go on. For every case:

- the affected test ends as documented: an ERROR for infrastructure (the model did not
  regress), a FAILURE for what the test itself asked for (a prompt longer than the
  context, a model that answers nothing), or a pass when the fault is absorbed (a short
  503 burst retried; a sweep, which discards and counts failed requests);
- its message holds the cause and the remedy (the ``words`` of the case);
- it takes no longer than its timeout allows (inner runs are subprocesses with a hard
  limit, so a hang fails this suite instead of stalling CI);
- nothing the user sees is a traceback or a line of our source.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from reliability_support import FAST, Outcome, assert_clean, outcomes, output
from standin import OllamaStandin, OpenAIStandin

STORY = "Write a long story about a dragon who lives in a castle."
#: A stop string that matches the first character of any answer: the real engine then
#: returns no text at all (its first token is cut), on every backend.
EVERY_CHARACTER = list(string.printable)
#: Per-request timeout of the timeout cases, and the slack a test may take beyond it on
#: this shared machine (start-up of the test, the warm engine answering the rest).
TIMEOUT_S = 1.0
SLACK_S = 6.0
#: Ceiling for any other faulted test: nothing here should wait on anything.
MAX_TEST_S = 30.0
#: Hard limit of one inner run: a hang fails the suite instead of stalling CI.
RUN_LIMIT_S = 240.0


@dataclass(frozen=True)
class Arm:
    """A fault armed for one case on one protocol, and what its message must say."""

    fault: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    words: tuple[str, ...] = ()


@dataclass(frozen=True)
class Case:
    id: str
    expect: str  # "error", "failed" or "passed"
    words: tuple[str, ...]  # in the message whatever the protocol: cause and remedy
    ollama: Arm | None = None
    openai: Arm | None = None
    body: str = "tokrate.run(PROMPT)"
    timeout: float | None = None  # per-request timeout of this case, when it is the point

    def arm(self, protocol: str) -> Arm | None:
        arm: Arm | None = getattr(self, protocol)
        return arm


def both(fault: str | None, words: tuple[str, ...] = (), **kwargs: Any) -> dict[str, Arm]:
    arm = Arm(fault, kwargs, words)
    return {"ollama": arm, "openai": arm}


NOT_JSON = {"ollama": ("sent a line that is not JSON",), "openai": ("not a valid chat completion",)}
NO_END = {
    "ollama": ("without the final done:true chunk",),
    "openai": ("without a finish_reason or [DONE]",),
}
METRICS_REMEDY = ("round was discarded", "check its version")

CASES: list[Case] = [
    Case("connection_dropped", "error",
         ("dropped after 2 chunks", "partial round (2 chunks) was discarded",
          "Check that the server is still running"),
         **both("drop", after=2)),
    Case("first_token_never_arrives", "error",
         ("within the 1 s request timeout", "after 0 chunks", "Raise --tokrate-timeout"),
         **both("slow_first_token", delay_s=5.0), body="tokrate.run(PROMPT, timeout=1)",
         timeout=TIMEOUT_S),
    Case("chunks_without_text_for_ever", "error",
         ("no text from", "within the 1 s request timeout", "Raise --tokrate-timeout"),
         **both("idle_chunks", after=1, duration_s=6.0), body="tokrate.run(PROMPT, timeout=1)",
         timeout=TIMEOUT_S),
    Case("stalls_mid_stream", "error",
         ("within the 1 s request timeout", "after 2 chunks", "Raise --tokrate-timeout"),
         **both("stall", after=2, delay_s=3.0), body="tokrate.run(PROMPT, timeout=1)",
         timeout=TIMEOUT_S),
    Case("busy_storm", "error",
         ("stayed busy", "503", "after 1 retries", "raise --tokrate-busy-retries"),
         **both("busy")),
    Case("busy_burst_is_retried", "passed", (), **both("busy", times=1)),
    Case("status_500", "error",
         ("answered HTTP 500", "model runner has unexpectedly stopped", "server log"),
         **both("status", status=500)),
    Case("error_line_mid_stream", "error",
         ("error in the middle of the stream after 2 chunks", "runner died",
          "partial round (2 chunks) was discarded", "server log"),
         **both("error_midstream", after=2, message="runner died")),
    Case("malformed_line", "error", ("discarded",),
         ollama=Arm("malformed", {"after": 1}, NOT_JSON["ollama"]),
         openai=Arm("malformed", {"after": 1}, NOT_JSON["openai"])),
    Case("truncated_line", "error", ("discarded",),
         ollama=Arm("cut_line", {"after": 2}, NOT_JSON["ollama"]),
         openai=Arm("cut_line", {"after": 2}, NOT_JSON["openai"])),
    Case("truncated_stream", "error", ("discarded",),
         ollama=Arm("truncate", {"after": 2}, NO_END["ollama"]),
         openai=Arm("truncate", {"after": 2}, NO_END["openai"])),
    Case("line_nested_too_deep", "error", ("RecursionError", "discarded"),
         **both("malformed", after=1, line="[" * 100_000)),
    Case("wrong_field_type", "error", ("discarded",),
         ollama=Arm("wrong_type", {"field": "eval_count", "value": "many"},
                    ("cannot read", "eval_count: Input should be a valid integer")),
         openai=Arm("final_fields", {"set": {"usage.completion_tokens": "many"}},
                    ("usage.completion_tokens='many'", "not a number"))),
    Case("negative_duration", "error", ("round was discarded",),
         ollama=Arm("final_fields", {"set": {"eval_duration": -5}},
                    ("eval_duration=-5", "negative", "check its version")),
         openai=Arm("final_fields", {"set": {"timings.predicted_ms": -5}},
                    ("timings.predicted_ms=-5", "Check the server's version"))),
    Case("zero_eval_duration", "error", ("round was discarded",),
         ollama=Arm("final_fields", {"drop": ["eval_duration"]},
                    ("with no eval_duration", "check its version")),
         openai=Arm("final_fields", {"set": {"timings.predicted_ms": 0}},
                    ("timings.predicted_ms=0", "Check the server's version"))),
    Case("eval_count_zero_with_text", "error",
         ("=0 (no token generated) while it streamed", "round was discarded",
          "Check the server's version"),
         ollama=Arm("final_fields", {"drop": ["eval_count"]}, ("eval_count",)),
         openai=Arm("final_fields", {"set": {"usage.completion_tokens": 0}},
                    ("completion_tokens",))),
    Case("huge_count", "error",
         ("=1000000000000, more tokens than any model's context holds",
          "Check the server's version"),
         ollama=Arm("final_fields", {"set": {"eval_count": 10**12}}),
         openai=Arm("final_fields", {"set": {"usage.completion_tokens": 10**12,
                                             "timings.predicted_n": 10**12}})),
    Case("count_beyond_num_predict", "error",
         ("=500 for a request limited to num_predict=8", "Check the server's version"),
         ollama=Arm("final_fields", {"set": {"eval_count": 500}}),
         openai=Arm("final_fields", {"set": {"usage.completion_tokens": 500,
                                             "timings.predicted_n": 500}})),
    Case("duration_longer_than_the_request", "error",
         ("while the whole request took", "on the client's clock", "round was discarded"),
         ollama=Arm("final_fields", {"set": {"eval_duration": 10**18}}),
         openai=Arm("final_fields", {"set": {"timings.predicted_ms": 1e15}})),
    Case("duration_not_finite", "error", ("discarded",),
         ollama=Arm("final_fields", {"set": {"eval_duration": 1e400}},
                    ("eval_duration: Input should be a finite number",)),
         openai=Arm("final_fields", {"set": {"timings.predicted_ms": 1e400}},
                    ("timings.predicted_ms=inf", "not a finite number"))),
    Case("model_answers_nothing", "failed",
         ("answered nothing in all 1 measured round(s)", "done_reason stop",
          "check the prompt and the stop sequences"),
         **both(None), body=f"tokrate.run(PROMPT, stop={EVERY_CHARACTER!r})"),
    Case("prompt_longer_than_context", "error",
         ("the prompt has", "but num_ctx is", "raise num_ctx"),
         **both(None), body="tokrate.run('word ' * 2100, num_ctx=2048)"),
    Case("sweep_discards_and_counts", "passed", (),
         **both("drop", after=1, times=1),
         body="r = tokrate.sweep(PROMPT, concurrency=[1, 2], requests=2)\n"
              "    assert len(r.errors) == 1 and 'dropped after 1 chunks' in r.errors[0]\n"
              "    assert sum(lv.completed for lv in r.levels) == 3"),
]  # fmt: skip

#: The embedded engine has no wire to corrupt; these are the faults it can meet.
EMBEDDED_CASES: list[Case] = [
    Case("prompt_longer_than_context", "failed",
         ("the prompt has", "tokens but num_ctx is 256", "raise num_ctx", "shorten the prompt"),
         body="tokrate.run('word ' * 400, num_ctx=256)"),
    Case("model_answers_nothing", "failed",
         ("answered nothing in all 1 measured round(s)", "check the prompt and the stop"),
         body=f"tokrate.run(PROMPT, stop={EVERY_CHARACTER!r})"),
    # llama.cpp cannot be interrupted in prefill: the timeout is enforced when the first
    # event (a token, or the end) comes out, so the wait is bounded by the prefill.
    Case("prefill_longer_than_the_timeout", "error",
         ("ran past its timeout of 0.01 s", "raise --tokrate-timeout", "round was discarded"),
         body="tokrate.run('word ' * 120 + PROMPT, timeout=0.01)", timeout=0.01),
]  # fmt: skip

CONTROL = """
def test_zz_control_after_the_faults(tokrate):
    r = tokrate.run("Say hi.")
    assert r.rounds == 1 and r.samples[0].output_tokens > 0
"""


def inner_tests(cases: Iterable[Case]) -> str:
    lines = [f"PROMPT_BASE = {STORY!r}"]
    for case in cases:
        lines += [
            "",
            f"def test_{case.id}(tokrate):",
            f"    PROMPT = PROMPT_BASE + ' [case-{case.id}]'",
            f"    {case.body}",
        ]
    return "\n".join(lines) + "\n" + CONTROL


def check_case(case: Case, got: Outcome, extra_words: tuple[str, ...]) -> None:
    where = f"{case.id}: {got.status} in {got.seconds:.1f} s: {got.message}"
    assert got.status == case.expect, where
    for word in (*case.words, *extra_words):
        assert word in got.message, f"{word!r} missing from {where}"
    limit = MAX_TEST_S if case.timeout is None else case.timeout + SLACK_S
    assert got.seconds <= limit, f"took longer than {limit} s: {where}"


def run_catalogue(
    pytester: pytest.Pytester, cases: list[Case], args: Iterable[str], protocol: str
) -> tuple[pytest.RunResult, dict[str, Outcome]]:
    pytester.makepyfile(test_faults=inner_tests(cases))
    junit = pytester.path / f"junit-{protocol}.xml"
    result = pytester.runpytest_subprocess(
        *FAST, *args, "--tokrate-gate=off", "-rA", f"--junitxml={junit}", timeout=RUN_LIMIT_S
    )
    assert_clean(result)
    got = outcomes(junit)
    assert got["test_zz_control_after_the_faults"].status == "passed", output(result)
    # The session went on to its end: the speed table lists the control test.
    result.stdout.fnmatch_lines(
        ["*tokrate: speed per test and model*", "*test_zz_control_after_the_faults*"]
    )
    return result, got


@pytest.mark.parametrize("protocol", ["ollama", "openai"])
def test_server_fault_catalogue(
    pytester: pytest.Pytester,
    protocol: str,
    ollama_standin: OllamaStandin,
    openai_standin: OpenAIStandin,
) -> None:
    server: OllamaStandin | OpenAIStandin = (
        ollama_standin if protocol == "ollama" else openai_standin
    )
    cases = [c for c in CASES if c.arm(protocol) is not None]
    for case in cases:
        arm = case.arm(protocol)
        assert arm is not None
        if arm.fault is not None:
            server.faults.arm(arm.fault, prompt_contains=f"[case-{case.id}]", **arm.kwargs)
    result, got = run_catalogue(
        pytester, cases, [*server.plugin_args(), "--tokrate-busy-retries=1"], protocol
    )
    for case in cases:
        arm = case.arm(protocol)
        assert arm is not None
        check_case(case, got[f"test_{case.id}"], arm.words)
    errors = sum(c.expect == "error" for c in cases)
    failed = sum(c.expect == "failed" for c in cases)
    result.assert_outcomes(passed=len(cases) + 1 - errors - failed, failed=failed, errors=errors)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    # The sweep's discarded request is counted and said, not raised.
    assert "1 of 4 requests failed in the sweep" in output(result)


def test_embedded_engine_fault_catalogue(pytester: pytest.Pytester) -> None:
    _, got = run_catalogue(pytester, EMBEDDED_CASES, ["--tokrate-model=smollm2"], "embedded")
    for case in EMBEDDED_CASES:
        check_case(case, got[f"test_{case.id}"], ())


DEATH = """
PROMPT = {story!r}

def test_1_before(tokrate):
    tokrate.run(PROMPT)

def test_2_server_dies_mid_stream(tokrate):
    tokrate.run(PROMPT + " [die]")

def test_3_after_the_death(tokrate):
    tokrate.run(PROMPT)
"""


@pytest.mark.parametrize("protocol", ["ollama", "openai"])
def test_server_dies_mid_run_and_is_down_at_start(
    pytester: pytest.Pytester, standin_factory: Callable[..., Any], protocol: str
) -> None:
    """The server dies in the middle of a stream: that test errors, the next one finds
    nothing listening, and the test that ran before keeps its result. A second run
    against the dead address (down at start) errors every test the same clean way."""
    server = standin_factory(protocol)
    server.faults.arm("die", after=2, prompt_contains="[die]")
    pytester.makepyfile(test_death=DEATH.format(story=STORY))
    junit = pytester.path / "junit.xml"
    args = [*FAST, *server.plugin_args(), "--tokrate-gate=off", f"--junitxml={junit}"]
    result = pytester.runpytest_subprocess(*args, timeout=RUN_LIMIT_S)
    assert_clean(result)
    got = outcomes(junit)
    assert got["test_1_before"].status == "passed"
    died, after = got["test_2_server_dies_mid_stream"], got["test_3_after_the_death"]
    assert died.status == after.status == "error", (died, after)
    assert "dropped after 2 chunks" in died.message and "still running" in died.message
    assert "not reachable" in after.message and "start it" in after.message
    result.stdout.fnmatch_lines(["*tokrate: speed per test and model*", "*test_1_before*"])

    down = pytester.runpytest_subprocess(*args, timeout=RUN_LIMIT_S)
    assert_clean(down)
    down.assert_outcomes(errors=3)
    remedy = "`ollama serve`" if protocol == "ollama" else "`llama-server -m model.gguf`"
    for outcome in outcomes(junit).values():
        assert "not reachable" in outcome.message and remedy in outcome.message, outcome
        assert outcome.seconds < MAX_TEST_S


def catalogue_size() -> dict[str, int]:
    """The figures of this suite (for the closing note of the reliability issue)."""
    server = sum((c.ollama is not None) + (c.openai is not None) for c in CASES)
    return {
        "server cases (ollama + openai)": server,
        "embedded cases": len(EMBEDDED_CASES),
        "death and down-at-start cases": 2 * 2,
        "total fault cases": server + len(EMBEDDED_CASES) + 4,
    }
