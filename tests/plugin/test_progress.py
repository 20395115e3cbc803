"""Progress while rounds are measured: a line per round with -v, a status line for long
tests at the default verbosity, nothing with -q; an update says what it will measure."""

from __future__ import annotations

import re

import pytest

from pytest_tokrate.core.measure import EngineReport, RawRound
from pytest_tokrate.plugin.progress import EVERY_S, QUIET_S, Progress, update_header

ARGS = ("--tokrate-model=smollm2", "--tokrate-option=num_thread=1", "-p", "no:cacheprovider")
TEST = """
def test_one(tokrate):
    tokrate.run("Say hi.", rounds=3, num_predict=4, label="hi")
"""


def raw(tokens: int) -> RawRound:
    engine = EngineReport(output_tokens=tokens, decode_tokens=tokens, decode_ns=100_000_000)
    return RawRound(t0_ns=0, chunks=(), t_end_ns=250_000_000, engine=engine)


def test_verbose_runs_show_each_round_under_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_p=TEST)
    result = pytester.runpytest(*ARGS, "-v")
    result.assert_outcomes(passed=1)
    lines = [line for line in result.stdout.lines if "test_one[smollm2] (hi) on smollm2" in line]
    assert [re.sub(r": \d.*", "", line.strip()) for line in lines] == [
        f"test_one[smollm2] (hi) on smollm2: round {i}/3" for i in (1, 2, 3)
    ]
    assert all(re.search(r": 4 tokens, [\d.]+ tok/s decode, [\d.]+ s$", line) for line in lines)
    quiet = pytester.runpytest(*ARGS, "-q")
    assert "round 1/3" not in quiet.stdout.str()


def test_a_long_test_gets_a_status_line_every_so_often() -> None:
    now = [0.0]
    lines: list[str] = []
    progress = Progress(lines.append, 0, "test_x on m", 40, clock=lambda: now[0])
    for i, t in enumerate([1.0, QUIET_S - 1, QUIET_S + 1, QUIET_S + 5, QUIET_S + EVERY_S + 2]):
        now[0] = t
        progress.round_done(i, raw(4))
    assert lines == [
        "tokrate: test_x on m: round 3 of at most 40, 11 s so far",
        "tokrate: test_x on m: round 5 of at most 40, 32 s so far",
    ]
    verbose: list[str] = []
    Progress(verbose.append, 1, "t", 2).round_done(0, raw(4))
    assert verbose == ["    t: round 1/2: 4 tokens, 40.0 tok/s decode, 0.25 s"]


def test_an_update_says_how_many_rounds_it_measures(pytester: pytest.Pytester) -> None:
    assert update_header(None) is None
    assert "at least 40 rounds" in (update_header(("n", 40)) or "")
    pytester.makepyfile(test_p=TEST)
    result = pytester.runpytest(*ARGS, "--tokrate-update-baselines", "--collect-only")
    assert "tokrate: updating baselines: each test measures 4x its rounds" in result.stdout.str()
