"""Concurrency sweeps over the wire: the Ollama backend against the protocol-exact stand-in
server (tests/standin/) running the real SmolLM2 engine.

The stand-in queues at most ``max_queue`` requests and answers the rest with Ollama's own
503 "server busy", as a real Ollama does beyond OLLAMA_MAX_QUEUE. With busy retries off,
a level above that limit fails part-way: it must report what it measured and the errors
it saw, and the next level and the next test must still run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

SUITE = """
import pytest

@pytest.mark.tokrate(concurrency=[1, 6, 2], num_predict=6, warmup=1, rounds=2)
def test_overload(tokrate):
    s = tokrate.sweep("Name a colour.")
    one, six, two = s.levels
    assert (one.completed, one.failed) == (2, 0)
    assert six.completed >= 1 and six.failed >= 1
    assert six.completed + six.failed == six.requests == 12
    assert two.completed >= 1
    assert six.throughput == six.output_tokens_total / six.wall_s

def test_after(tokrate):
    assert tokrate.run("Say hi.", rounds=1, warmup=0, num_predict=4).rounds == 1
"""


def test_level_failing_part_way_reports_and_the_run_goes_on(
    pytester: pytest.Pytester, standin_factory: Callable[..., Any]
) -> None:
    server = standin_factory("ollama", max_queue=3)
    pytester.makepyfile(test_overload=SUITE)
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--tokrate-model=smollm2:135m",
        "--tokrate-backend=ollama",
        f"--tokrate-host={server.url}",
        "--tokrate-busy-retries=0",
        "--tokrate-gate=off",
        "--tokrate-report-json=report.json",
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*SweepWarning*requests failed in the sweep on smollm2:135m*",
            "*tokrate: sweeps*",
            "*c=6 n=6*",
            "*errors at c=6 n=6: * x ServerError:*busy*",
        ]
    )
    report = json.loads((pytester.path / "report.json").read_text())
    (sweep,) = report["sweeps"]
    assert sweep["backend"] == "ollama" and sweep["serialised"] is False
    one, six, two = sweep["levels"]
    assert one["failed"] == 0
    assert six["failed"] >= 1 and six["completed"] >= 1
    assert sum(e["count"] for e in six["errors"]) == six["failed"]
    assert all("503" in e["message"] or "busy" in e["message"] for e in six["errors"])
    assert len(six["samples"]) == six["completed"]
    assert two["completed"] >= 1
    assert report["summary"]["sweep_errors"] == six["failed"] + two["failed"]


def test_closed_loop_over_http_keeps_n_in_flight(
    pytester: pytest.Pytester, standin_factory: Callable[..., Any]
) -> None:
    """With room in the queue every request of a level succeeds; TTFT shows the queueing
    inside the one-thread engine behind the server."""
    server = standin_factory("ollama")
    pytester.makepyfile(
        """
        def test_sweep(tokrate):
            s = tokrate.sweep("Hi", concurrency=[1, 3], num_predict=4, rounds=2)
            one, three = s.levels
            assert (one.completed, three.completed) == (2, 6)
            assert not s.errors
            assert three.ttft.p50 > one.ttft.p50
        """
    )
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--tokrate-model=smollm2:135m",
        "--tokrate-backend=ollama",
        f"--tokrate-host={server.url}",
        "--tokrate-gate=off",
    )
    result.assert_outcomes(passed=1)
    assert server.requests >= 1 + 2 + 6
