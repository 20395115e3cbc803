"""The metric formulas of ``measure.derive_sample`` on hand-built stamped rounds."""

from __future__ import annotations

import math

import pytest

from pytest_tokrate.core.measure import EngineReport, RawRound, StampedChunk, derive_sample

MS = 1_000_000  # nanoseconds per millisecond


def chunks(*items: tuple[str, int]) -> tuple[StampedChunk, ...]:
    """Chunks as (text, milliseconds since t0)."""
    return tuple(StampedChunk(text, t_ms * MS) for text, t_ms in items)


def test_formulas_on_a_typical_round() -> None:
    # Request at 0 ms, five tokens at 40, 50, 60, 75, 80 ms; final report at 90 ms.
    raw = RawRound(
        t0_ns=0,
        chunks=chunks(("Hel", 40), ("lo", 50), (" wor", 60), ("ld", 75), ("!", 80)),
        t_end_ns=90 * MS,
        engine=EngineReport(
            output_tokens=5,
            prompt_tokens=12,
            decode_tokens=4,
            decode_ns=40 * MS,
            prefill_ns=30 * MS,
            load_ns=5 * MS,
            done_reason="length",
        ),
    )
    s = derive_sample(raw, index=3)
    assert s.index == 3
    assert s.text == "Hello world!"
    assert s.output_tokens == 5
    assert s.prompt_tokens == 12
    assert s.ttft == pytest.approx(0.040)
    assert s.e2e == pytest.approx(0.090)
    # TPOT excludes the first token: (90 - 40) ms over 4 gaps.
    assert s.tpot == pytest.approx(0.050 / 4)
    assert s.decode_tps_client == pytest.approx(4 / 0.050)
    # Engine rate: the tokens its decode timer covers over that timer.
    assert s.decode_tps_engine == pytest.approx(4 / 0.040)
    assert s.decode_tps == s.decode_tps_engine
    assert s.decode_agreement == pytest.approx((4 / 0.050) / (4 / 0.040))
    # Prefill: prompt tokens over prefill time (all 12 processed, none cached).
    assert s.prefill_tps == pytest.approx(12 / 0.030)
    assert s.e2e_tps == pytest.approx(5 / 0.090)
    assert s.itl == pytest.approx((0.010, 0.010, 0.015, 0.005))
    assert s.load == pytest.approx(0.005)
    assert s.chunks == 5
    assert s.words == 2
    assert s.done_reason == "length"
    assert not s.empty


def test_zero_output_tokens_gives_no_rates_and_no_division() -> None:
    raw = RawRound(
        t0_ns=0,
        chunks=(),
        t_end_ns=30 * MS,
        engine=EngineReport(
            output_tokens=0, prompt_tokens=20, prefill_ns=25 * MS, done_reason="stop"
        ),
    )
    s = derive_sample(raw)
    assert s.empty
    assert s.output_tokens == 0
    assert s.text == ""
    assert s.ttft is None and s.tpot is None
    assert s.decode_tps is None and s.decode_tps_client is None and s.decode_tps_engine is None
    assert s.decode_agreement is None
    assert s.e2e_tps == 0.0
    assert s.e2e == pytest.approx(0.030)
    assert s.prefill_tps == pytest.approx(20 / 0.025)  # the prompt was still processed
    assert s.itl == ()
    assert s.words == 0


def test_one_output_token_has_ttft_but_no_tpot() -> None:
    raw = RawRound(
        t0_ns=0,
        chunks=chunks(("Yes", 35)),
        t_end_ns=36 * MS,
        engine=EngineReport(output_tokens=1, prompt_tokens=8, decode_tokens=0, prefill_ns=30 * MS),
    )
    s = derive_sample(raw)
    assert not s.empty
    assert s.ttft == pytest.approx(0.035)
    assert s.tpot is None
    assert s.decode_tps_client is None
    assert s.decode_tps_engine is None  # no decode step was timed
    assert s.decode_tps is None
    assert s.e2e_tps == pytest.approx(1 / 0.036)
    assert s.itl == ()


def test_empty_text_chunks_do_not_count_for_ttft_or_itl() -> None:
    raw = RawRound(
        t0_ns=0,
        chunks=chunks(("", 10), ("a", 20), ("", 25), ("b", 30)),
        t_end_ns=40 * MS,
        engine=EngineReport(output_tokens=2),
    )
    s = derive_sample(raw)
    assert s.ttft == pytest.approx(0.020)
    assert s.itl == pytest.approx((0.010,))
    assert s.chunks == 2


def test_client_rate_is_the_fallback_without_engine_timers() -> None:
    raw = RawRound(
        t0_ns=0,
        chunks=chunks(("a", 10), ("b", 20), ("c", 30)),
        t_end_ns=30 * MS,
        engine=EngineReport(output_tokens=3),
    )
    s = derive_sample(raw)
    assert s.decode_tps_engine is None
    assert s.decode_tps == pytest.approx(2 / 0.020)
    assert s.decode_tps == s.decode_tps_client


def test_chunk_token_counts_are_used_when_the_engine_gives_none() -> None:
    raw = RawRound(
        t0_ns=0,
        chunks=(StampedChunk("ab", 10 * MS, 2), StampedChunk("cde", 20 * MS, 3)),
        t_end_ns=20 * MS,
        engine=EngineReport(),
    )
    assert derive_sample(raw).output_tokens == 5


def test_prefill_counts_only_the_tokens_actually_processed() -> None:
    raw = RawRound(
        t0_ns=0,
        chunks=chunks(("a", 10)),
        t_end_ns=10 * MS,
        engine=EngineReport(
            output_tokens=1,
            prompt_tokens=100,
            prompt_tokens_processed=10,
            prompt_tokens_cached=90,
            prefill_ns=5 * MS,
        ),
    )
    s = derive_sample(raw)
    assert s.prefill_tps == pytest.approx(10 / 0.005)
    assert s.prompt_tokens == 100
    assert s.prompt_tokens_cached == 90


def test_to_dict_is_plain_data() -> None:
    raw = RawRound(
        t0_ns=0,
        chunks=chunks(("a", 10), ("b", 20)),
        t_end_ns=20 * MS,
        engine=EngineReport(output_tokens=2, done_reason="stop"),
    )
    d = derive_sample(raw).to_dict()
    assert d["output_tokens"] == 2
    assert d["itl_s"] == pytest.approx([0.010])
    assert d["done_reason"] == "stop"
    assert all(not isinstance(v, float) or math.isfinite(v) for v in d.values())
