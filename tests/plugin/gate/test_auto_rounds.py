"""``--tokrate-rounds=auto``: measure until the gate's verdict is settled, as a user runs it
against the Ollama protocol stand-in (the real SmolLM2 engine behind it; the 30% slower
server is the stand-in's ``paced`` fault at 14 instead of 20 tok/s, see
tests/plugin/gate/test_config_changes.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from standin.engine import EngineHost
from standin.ollama_server import OllamaStandin

pytestmark = pytest.mark.e2e

SUITE = """
import pytest

@pytest.mark.tokrate(warmup=1, num_predict=32, num_thread=1)
def test_story(tokrate):
    tokrate.run("Tell a short story about a lighthouse keeper.")
"""


@pytest.fixture(scope="module")
def server() -> Iterator[OllamaStandin]:
    engine = EngineHost()
    server = OllamaStandin(engine).start()
    yield server
    server.stop()
    engine.close()


def run(
    pytester: pytest.Pytester,
    server: OllamaStandin,
    *args: str,
    rate: float = 1.0,
    spread: float = 0.0,
) -> Any:
    """One pytest run against a steady server (the stand-in's ``paced`` fault): 20 tok/s
    times ``rate``, each request within +-``spread`` of it."""
    server.reset()
    server.faults.arm("paced", tokens_per_second=20.0 * rate, spread=spread)
    return pytester.runpytest(
        "-p", "no:cacheprovider", *server.plugin_args(),
        "--tokrate-cache=allow", "--tokrate-gate-metrics=decode_tps",
        "--tokrate-report-json=report.json", *args,
    )  # fmt: skip


def measured(pytester: pytest.Pytester) -> tuple[int, dict[str, Any]]:
    report = json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))
    (m,) = report["measurements"]
    (verdict,) = [f["data"]["gate"] for f in m["findings"] if f["kind"] == "gate"]
    return m["rounds"], verdict


@pytest.fixture
def recorded(pytester: pytest.Pytester, server: OllamaStandin) -> None:
    pytester.makepyfile(test_story=SUITE)
    update = run(
        pytester, server, "--tokrate-update-baselines", "--tokrate-rounds=10",
        "--tokrate-baseline-rounds=3x",
    )  # fmt: skip
    update.assert_outcomes(passed=1)


def test_auto_passes_an_unchanged_server_and_fails_a_slower_one_early(
    pytester: pytest.Pytester, server: OllamaStandin, recorded: None
) -> None:
    auto = ("--tokrate-rounds=auto", "--tokrate-max-rounds=20")
    same = run(pytester, server, *auto)
    rounds, verdict = measured(pytester)
    assert same.ret == pytest.ExitCode.OK, verdict
    assert verdict["verdict"] == "ok" and 3 <= rounds < 20, (rounds, verdict)
    assert verdict["rounds"] == {"used": rounds, "auto": True, "max": 20}
    assert f"rounds=auto: {rounds} of at most 20" in same.stdout.str()
    slow = run(pytester, server, *auto, rate=0.7)
    rounds, verdict = measured(pytester)
    assert slow.ret == pytest.ExitCode.TESTS_FAILED, verdict
    assert verdict["verdict"] == "regression" and 3 <= rounds < 20, (rounds, verdict)


def test_a_verdict_left_open_at_the_maximum_warns_or_fails_when_asked(
    pytester: pytest.Pytester, server: OllamaStandin, recorded: None
) -> None:
    """A server whose speed varies by +-10% from request to request, judged against a 1%
    tolerance: 4 rounds show it neither beyond nor within."""
    args = ("--tokrate-rounds=auto", "--tokrate-min-rounds=3", "--tokrate-max-rounds=4",
            "--tokrate-tolerance=decode_tps=1%")  # fmt: skip
    result = run(pytester, server, *args, spread=0.1)
    rounds, verdict = measured(pytester)
    assert result.ret == pytest.ExitCode.OK and rounds == 4
    assert verdict["verdict"] == "not settled", verdict
    assert "was not settled in 4 rounds" in result.stdout.str()
    strict = run(pytester, server, *args, "--tokrate-on-unsettled=fail", spread=0.1)
    assert strict.ret == pytest.ExitCode.TESTS_FAILED


def test_bad_bounds_are_usage_errors(pytester: pytest.Pytester, server: OllamaStandin) -> None:
    pytester.makepyfile(test_story=SUITE)
    result = run(
        pytester, server, "--tokrate-rounds=auto", "--tokrate-min-rounds=9",
        "--tokrate-max-rounds=4",
    )  # fmt: skip
    assert result.ret != pytest.ExitCode.OK
    text = result.stdout.str() + result.stderr.str()
    assert "the minimum, 9 rounds (command line), is above the maximum, 4" in text
    assert "Traceback" not in text
    bad = run(pytester, server, "--tokrate-rounds=sometimes")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "a whole number of rounds >= 1, or auto" in bad.stdout.str() + bad.stderr.str()


YAML = """
cases:
  - name: story
    prompt: Tell a short story about a lighthouse keeper.
    rounds: auto
    warmup: 1
    options:
      num_predict: 32
      num_thread: 1
"""


def test_a_yaml_case_takes_rounds_auto(pytester: pytest.Pytester, server: OllamaStandin) -> None:
    """Without a baseline auto measures until the median is known within 2%, bounded."""
    pytester.makefile(".yaml", tokrate_story=YAML)
    result = run(pytester, server, "--tokrate-max-rounds=6")
    result.assert_outcomes(passed=1)
    rounds, verdict = measured(pytester)
    assert 3 <= rounds <= 6 and verdict["verdict"] == "no baseline"
    assert verdict["rounds"] == {"used": rounds, "auto": True, "max": 6}


def test_recording_with_auto_stops_when_the_medians_are_precise(
    pytester: pytest.Pytester, server: OllamaStandin
) -> None:
    """``--tokrate-update-baselines`` with auto: the precision target, bounded by the
    maximum times the baseline multiple (here 5 x 2 = 10)."""
    pytester.makepyfile(test_story=SUITE)
    update = run(
        pytester, server, "--tokrate-update-baselines", "--tokrate-rounds=auto",
        "--tokrate-max-rounds=5", "--tokrate-baseline-rounds=2x",
    )  # fmt: skip
    update.assert_outcomes(passed=1)
    (path,) = (pytester.path / "baselines").rglob("*.json")
    (record,) = json.loads(path.read_text(encoding="utf-8"))["runs"].values()
    # A steady server's medians are known within 2% after the minimum of 3 rounds.
    assert 3 <= record["rounds"] < 10, record["rounds"]
