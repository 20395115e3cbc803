"""The gate judges what users change: a model swap, a slower server, an option.

Run as a user would, against the Ollama protocol stand-in serving two models through
the real embedded engine: ``gemma2:2b-instruct-fp16`` is SmolLM2-135M as shipped (Q4_1)
and ``gemma2:2b-instruct-q2_K`` the same weights requantised to Q2_K, which answers the
article's question wrongly (``tests/quality/test_tradeoff.py`` shows both on the engine
itself). The server is steady, as a dedicated inference box is: the stand-in's ``paced``
fault sends 20 tokens a second (14 for the server 30% slower) and times them as the
server would, so the verdicts do not hang on this shared machine's drift.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from standin.engine import EngineHost
from standin.ollama_server import OllamaStandin

pytestmark = pytest.mark.e2e

FP16 = "gemma2:2b-instruct-fp16"
Q2K = "gemma2:2b-instruct-q2_K"
ARTICLE = (Path(__file__).parents[3] / "examples" / "article.txt").read_text().strip()

SUITE = f"""
import pytest

ARTICLE = {ARTICLE!r}

@pytest.mark.tokrate(rounds=10, warmup=1, num_predict=24, num_thread=1, min_pass_rate=0)
def test_country(tokrate):
    tokrate.run(
        ARTICLE + "\\n\\nIs this article about an Australian or American team? "
        "Answer with one word.",
        checks=[
            {{"type": "icontains", "value": "australia"}},
            {{"type": "not-icontains", "value": "america"}},
        ],
    )
"""


@pytest.fixture(scope="module")
def server() -> Iterator[OllamaStandin]:
    # Started as OLLAMA_FLASH_ATTENTION=0 would start it: the answers above were read
    # without flash attention, whose kernels round differently and flip near-tied tokens.
    engine = EngineHost(
        {FP16: "smollm2", Q2K: "smollm2-q2_k"}, engine_options={"flash_attn": "off"}
    )
    server = OllamaStandin(engine).start()
    yield server
    server.stop()
    engine.close()


def run(
    pytester: pytest.Pytester,
    server: OllamaStandin,
    model: str,
    *args: str,
    slower: bool = False,
) -> Any:
    """One pytest run against the stand-in, 30% slower when ``slower``."""
    server.reset()
    # A steady server (the stand-in's "paced" fault): 20 tok/s, or 30% slower.
    server.faults.arm("paced", tokens_per_second=20.0 * (0.7 if slower else 1.0))
    return pytester.runpytest(
        "-p", "no:cacheprovider", "-rA",
        "--tokrate-backend=ollama", f"--tokrate-host={server.url}", f"--tokrate-model={model}",
        # decode and the pass rate: TTFT of a one-word answer on a shared 2-core machine
        # is judged elsewhere (tests/gate), here it would only add noise
        "--tokrate-gate-metrics=decode_tps,pass_rate", "--tokrate-min-decode-tokens=1",
        "--tokrate-baseline-rounds=2x", "--tokrate-report-json=report.json",
        # The default cache busting (an eviction request before each round) keeps the
        # prompts exact, so these models' greedy answers stay the same from round to round.
        *args,
    )  # fmt: skip


def output(result: pytest.RunResult) -> str:
    return result.stdout.str() + "\n" + result.stderr.str()


def verdicts(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    report = json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))
    return [
        f["data"]["gate"]
        for m in report["measurements"]
        for f in m["findings"]
        if f["kind"] == "gate"
    ]


@pytest.fixture
def recorded(pytester: pytest.Pytester, server: OllamaStandin) -> Path:
    pytester.makepyfile(test_suite=SUITE)
    update = run(pytester, server, FP16, "--tokrate-update-baselines")
    update.assert_outcomes(passed=1)
    (path,) = (pytester.path / "baselines").rglob("*.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert (data["model_id"], data["reference_model"]) == (FP16, FP16)
    assert data["test_key"] == "test_suite.py::test_country"
    return path


def test_a_model_that_answers_wrongly_fails_against_the_other_models_baseline(
    pytester: pytest.Pytester, server: OllamaStandin, recorded: Path
) -> None:
    result = run(pytester, server, Q2K)
    result.assert_outcomes(failed=1)
    text = output(result)
    assert "regression of pass rate" in text
    assert f"model {FP16} -> {Q2K}" in text and "Q4_1 -> Q2_K" in text
    assert "trade-off: decode tok/s" in text and "pass rate -100 pts" in text
    (verdict,) = verdicts(pytester)
    assert verdict["verdict"] == "regression"
    assert (verdict["model"], verdict["baseline_model"]) == (Q2K, FP16)
    assert verdict["tradeoff"]["verdict"] == "regression"
    # The baseline of the fp16 model is untouched, and the q2_K model got none.
    assert [p.name for p in (pytester.path / "baselines").rglob("*.json")] == [recorded.name]


def test_the_same_model_served_slower_fails_and_an_option_change_is_judged(
    pytester: pytest.Pytester, server: OllamaStandin, recorded: Path
) -> None:
    slow = run(pytester, server, FP16, slower=True)
    assert slow.ret == pytest.ExitCode.TESTS_FAILED, verdicts(pytester)
    assert "regression of decode tok/s" in output(slow)
    # An option at equal speed: judged, passes, and the verdict names it.
    ctx = run(pytester, server, FP16, "--tokrate-option", "num_ctx=4096")
    (verdict,) = verdicts(pytester)
    assert ctx.ret == pytest.ExitCode.OK, verdict
    assert verdict["verdict"] == "ok", verdict
    assert verdict["changes"] == ["num_ctx 2048 -> 4096"]
    # Unchanged: passes, compared (a verdict, not "no baseline"); -q says it in one line.
    same = run(pytester, server, FP16, "-q")
    same.assert_outcomes(passed=1)
    (verdict,) = verdicts(pytester)
    assert (verdict["verdict"], verdict["changes"]) == ("ok", [])
    assert "tokrate gate: 1 compared: 1 ok" in output(same)


def test_a_bad_tradeoff_policy_is_a_usage_error(
    pytester: pytest.Pytester, server: OllamaStandin
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = run(pytester, server, FP16, "--tokrate-accept-tradeoff=5% for speed")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = output(result)
    assert "--tokrate-accept-tradeoff: invalid value '5% for speed'" in text
    assert "'5 points for decode_tps +30%'" in text and "Traceback" not in text


def test_with_baselines_for_both_models_each_is_compared_with_its_own(
    pytester: pytest.Pytester, server: OllamaStandin
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    both = f"{FP16},{Q2K}"
    run(pytester, server, both, "--tokrate-update-baselines").assert_outcomes(passed=2)
    files = sorted((pytester.path / "baselines").rglob("*.json"))
    docs = [json.loads(p.read_text(encoding="utf-8")) for p in files]
    assert sorted(d["model_id"] for d in docs) == sorted([FP16, Q2K])
    assert {d["reference_model"] for d in docs} == {FP16}  # the first listed
    result = run(pytester, server, Q2K)
    result.assert_outcomes(passed=1)  # its own baseline: same wrong answers, no change
    (verdict,) = verdicts(pytester)
    assert (verdict["baseline_model"], verdict["changes"]) == (Q2K, [])
