"""Machine-adjusted comparisons: a slower machine is not a slower model.

The figures are real rounds recorded on this machine (``benchmarks/data``, each round with
the machine reference timed just before it); the slowdowns are applied to them.
"""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from pytest_tokrate.gate import judge as gate
from pytest_tokrate.gate import rule as compare
from pytest_tokrate.gate.rule import GateSettings, compare_runs
from pytest_tokrate.machine import calibration

Recorded = dict[str, dict[str, list[float]]]


@pytest.fixture
def quiet(recorded: Recorded) -> dict[str, list[float]]:
    """Ten rounds of an undisturbed recording, with their machine reference."""
    return {k: v[:10] for k, v in recorded["q1"].items()}


def record(decode: list[float], ref: list[float | None] | None, ttft: list[float] | None = None):
    samples: dict[str, Any] = {"decode_tps": decode}
    if ttft is not None:
        samples["ttft"] = ttft
    if ref is not None:
        samples[calibration.REFERENCE] = ref
    return {"samples": samples, "quality": None, "rounds": len(decode)}


def scaled(values: list[float], factor: float) -> list[float]:
    return [v * factor for v in values]


def test_a_slower_machine_is_not_a_regression(quiet: dict[str, list[float]]) -> None:
    """The machine 30% slower: test and reference slow alike. Raw figures call it a
    regression; relative to the reference it is unchanged."""
    decode, ref = quiet["decode_tps"], quiet["machine_ref_tps"]
    base = record(decode, ref)
    slow_machine = record(scaled(decode, 0.7), scaled(ref, 0.7))
    settings = GateSettings(metrics=("decode_tps",))
    raw = compare.compare_speed("decode_tps", decode, scaled(decode, 0.7), 0.10)
    assert raw.verdict == "regression"
    (adjusted,) = compare_runs(base, slow_machine, settings)
    assert adjusted.verdict == "ok"
    assert adjusted.change == pytest.approx(0.0, abs=1e-9)
    assert adjusted.machine_ref is not None
    assert adjusted.machine_ref[1] == pytest.approx(0.7 * adjusted.machine_ref[0])
    # the medians shown stay the raw ones
    assert adjusted.current == pytest.approx(0.7 * statistics.median(decode))


def test_a_slower_model_on_the_same_machine_is_a_regression(
    quiet: dict[str, list[float]],
) -> None:
    decode, ref = quiet["decode_tps"], quiet["machine_ref_tps"]
    (c,) = compare_runs(
        record(decode, ref),
        record(scaled(decode, 0.7), ref),
        GateSettings(metrics=("decode_tps",)),
    )
    assert c.verdict == "regression"
    assert c.change == pytest.approx(-0.3, abs=0.02)
    assert c.ci[0] <= c.change <= c.ci[1]


def test_durations_are_multiplied_by_the_reference(quiet: dict[str, list[float]]) -> None:
    """TTFT on a machine 30% slower takes 1/0.7 as long: relative to it, unchanged; a TTFT
    twice as long on the same machine is a regression."""
    ttft, ref = quiet["ttft"], quiet["machine_ref_tps"]
    settings = GateSettings(metrics=("ttft",))
    base = record(quiet["decode_tps"], ref, ttft)
    slow_machine = record(quiet["decode_tps"], scaled(ref, 0.7), scaled(ttft, 1 / 0.7))
    assert compare_runs(base, slow_machine, settings)[0].verdict == "ok"
    slow_prefill = record(quiet["decode_tps"], ref, scaled(ttft, 2.0))
    assert compare_runs(base, slow_prefill, settings)[0].verdict == "regression"


def test_raw_comparison_without_a_reference_on_either_side(
    quiet: dict[str, list[float]],
) -> None:
    """A baseline recorded before the reference existed, or with --tokrate-calibrate=off:
    raw figures, no machine line."""
    decode, ref = quiet["decode_tps"], quiet["machine_ref_tps"]
    settings = GateSettings(metrics=("decode_tps",))
    for base, cur in (
        (record(decode, None), record(scaled(decode, 0.7), scaled(ref, 0.7))),
        (record(decode, ref), record(scaled(decode, 0.7), None)),
    ):
        (c,) = compare_runs(base, cur, settings)
        assert c.machine_ref is None and c.verdict == "regression"
        assert not any("machine" in line for line in gate.table([c]))


def test_rounds_missing_their_reference_are_left_out(quiet: dict[str, list[float]]) -> None:
    decode, ref = quiet["decode_tps"], list(quiet["machine_ref_tps"])
    holes: list[float | None] = [None, None, *ref[2:]]
    (c,) = compare_runs(
        record(decode, ref), record(decode, holes), GateSettings(metrics=("decode_tps",))
    )
    assert (c.n_baseline, c.n_current) == (10, 8)
    assert c.machine_ref is not None
    # lists of different lengths cannot be paired round by round: raw figures
    assert calibration.adjusted(decode, ref[:5], True) is None


def test_the_table_says_the_figures_were_machine_adjusted(
    quiet: dict[str, list[float]],
) -> None:
    decode, ref = quiet["decode_tps"], quiet["machine_ref_tps"]
    (c,) = compare_runs(
        record(decode, ref),
        record(scaled(decode, 0.6), scaled(ref, 0.8)),
        GateSettings(metrics=("decode_tps",)),
    )
    *_, note, words = gate.table([c])
    assert "machine-adjusted" in note and "(-20.0%)" in note
    assert "--tokrate-calibrate=off" in note
    # Beyond 3%, said in words too: the raw and the adjusted change differ for that reason.
    assert words.strip() == (
        "The machine itself ran 20% slower than when the baseline was recorded: "
        "the verdicts read the machine-adjusted change, not the raw one."
    )


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "fast"])
def test_unusable_reference_values_are_ignored(bad: object) -> None:
    assert calibration.reference_rates({"samples": {calibration.REFERENCE: [bad, bad]}}) is None
    assert calibration.reference_rates({"samples": {calibration.REFERENCE: [bad, 5.0]}}) == [
        None,
        5.0,
    ]


def test_each_round_gets_the_mean_of_the_probes_around_it() -> None:
    from pytest_tokrate.core.measure import Sample
    from pytest_tokrate.core.runner import with_machine_reference

    def sample(i: int) -> Sample:
        return Sample(
            index=i, text="", output_tokens=1, prompt_tokens=1, ttft=0.1, tpot=None, e2e=0.1,
            itl=(), decode_tps=None, decode_tps_client=None, decode_tps_engine=None,
            prefill_tps=None, e2e_tps=None, load=None, chunks=1, words=0, done_reason="stop",
        )  # fmt: skip

    rounds = [sample(i) for i in range(3)]
    out = with_machine_reference(rounds, [100.0, 120.0, None, 90.0])
    assert [s.extra.get(calibration.REFERENCE) for s in out] == [110.0, 120.0, 90.0]
    # probes that do not line up with the rounds are not guessed at
    assert all(calibration.REFERENCE not in s.extra for s in with_machine_reference(rounds, [1.0]))
