"""Adaptive rounds (gate.sequential) on samples recorded on this machine by
benchmarks/bench_gate.py: settled when every gated metric is decided, open otherwise."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_tokrate.gate.rule import GateSettings
from pytest_tokrate.gate.sequential import (
    MIN_ROUNDS,
    Look,
    look_alpha,
    looks,
    pass_rate_look,
    precise,
    settle,
)

Recorded = dict[str, dict[str, list[float]]]
SPEED = GateSettings(metrics=("decode_tps", "ttft"))


def run(session: dict[str, list[float]], n: int, factor: float = 1.0) -> dict[str, Any]:
    """The first ``n`` rounds of a recorded session as a run record, decode tok/s times
    ``factor`` (the machine reference as recorded: the model, not the machine, changed)."""
    return {
        "rounds": n,
        "samples": {
            "decode_tps": [v * factor for v in session["decode_tps"][:n]],
            "ttft": session["ttft"][:n],
            "machine_ref_tps": session["machine_ref_tps"][:n],
        },
        "quality": None,
    }


def first_settled(recorded: Recorded, base: str, cur: str, factor: float) -> tuple[int, Look]:
    """Feed ``cur``'s rounds in order against 40 rounds of ``base``; stop when settled."""
    baseline = run(recorded[base], 40)
    for n in range(MIN_ROUNDS, 21):
        look = settle(baseline, run(recorded[cur], n, factor), SPEED, MIN_ROUNDS, 20)
        if look.settled:
            return n, look
    return 20, look


def test_an_unchanged_pair_settles_ok_early(recorded: Recorded) -> None:
    n, look = first_settled(recorded, "q2", "q3", 1.0)
    assert look.settled and n < 20
    assert look.verdicts == {"decode_tps": "ok", "ttft": "ok"}
    assert look.reason.startswith(f"settled after {n} rounds")


def test_unchanged_quiet_sessions_never_change(recorded: Recorded) -> None:
    quiet = [k for k in recorded if k.startswith("q")]
    for base in quiet:
        for cur in quiet:
            if base != cur:
                _, look = first_settled(recorded, base, cur, 1.0)
                assert set(look.verdicts.values()) <= {"ok", "open"}, (base, cur, look)


def test_a_30_percent_slower_model_settles_as_a_regression(recorded: Recorded) -> None:
    n, look = first_settled(recorded, "q2", "q3", 0.70)
    assert look.settled and n <= 10
    assert look.verdicts["decode_tps"] == "regression"


def test_a_change_at_the_tolerance_stays_open(recorded: Recorded) -> None:
    n, look = first_settled(recorded, "q2", "q3", 0.90)
    assert n == 20 and not look.settled
    assert look.verdicts["decode_tps"] == "open"
    assert "not settled in 20 rounds (the maximum): decode tok/s still open" in look.reason


def test_fewer_than_the_minimum_never_settle(recorded: Recorded) -> None:
    baseline = run(recorded["q2"], 40)
    for n in range(MIN_ROUNDS):
        look = settle(baseline, run(recorded["q3"], n, 0.5), SPEED, MIN_ROUNDS, 20)
        assert not look.settled and look.verdicts == {}
        assert look.reason == f"{n} of at least 3 rounds measured"


def test_the_per_look_level_is_alpha_over_the_looks() -> None:
    assert looks(3, 20) == 18
    assert look_alpha(0.01, 3, 20) == pytest.approx(0.01 / 18)
    assert look_alpha(0.05, 5, 5) == 0.05
    with pytest.raises(ValueError, match=r"minimum 5 and maximum 4: expected 2 <= minimum"):
        looks(5, 4)
    with pytest.raises(ValueError, match="invalid alpha 0"):
        look_alpha(0, 3, 20)


def test_pass_rate_regression_open_and_ok() -> None:
    alpha = look_alpha(0.05, 3, 20)
    assert pass_rate_look((40, 40), (0, 10), 0.10, alpha) == "regression"
    assert pass_rate_look((40, 40), (2, 3), 0.10, alpha) == "open"  # a drop, not shown yet
    assert pass_rate_look((40, 40), (10, 10), 0.10, alpha) == "ok"
    assert pass_rate_look((15, 40), (12, 12), 0.10, alpha) == "improvement"


def test_a_pass_rate_drop_keeps_the_run_measuring(recorded: Recorded) -> None:
    baseline = {**run(recorded["q2"], 40), "quality": {"passed": 40, "total": 40}}
    current = {**run(recorded["q3"], 5), "quality": {"passed": 4, "total": 5}}
    settings = GateSettings(metrics=("decode_tps", "ttft", "pass_rate"))
    look = settle(baseline, current, settings, MIN_ROUNDS, 20)
    assert not look.settled and look.verdicts["pass_rate"] == "open"


def test_precise_on_real_samples(recorded: Recorded) -> None:
    metrics = ("decode_tps", "ttft", "pass_rate")
    # c2 (decode CV 4%): the median's interval is within +-2% after 10 rounds;
    # v1 (bursty neighbours, CV 32%) is not even after 40; nothing before the minimum.
    assert precise(run(recorded["c2"], 10), metrics)
    assert not precise(run(recorded["v1"], 40), metrics)
    assert not precise(run(recorded["c2"], 2), metrics)
    assert precise(run(recorded["v1"], 40), metrics, target=0.5)
