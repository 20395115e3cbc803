"""Sweeps on the real embedded engine (SmolLM2-135M through llama.cpp), driven directly.

The engine serves one request at a time, so a concurrency sweep must show queueing
(TTFT grows) and must not show more throughput than one request alone can produce.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_tokrate.backends.base import Event, ModelInfo, Request
from pytest_tokrate.backends.llamacpp import LlamaCppBackend
from pytest_tokrate.backends.models import resolve_model
from pytest_tokrate.core.levels import Levels
from pytest_tokrate.core.runner import Runner
from pytest_tokrate.core.settings import Layer, RunSettings, resolve
from pytest_tokrate.core.sweep import TTFT_NOTE, run_sweep
from pytest_tokrate.core.tokens import count_tokens
from pytest_tokrate.errors import UsageError

pytestmark = pytest.mark.e2e

PROMPT = "Name a colour."


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaCppBackend]:
    backend = LlamaCppBackend(resolve_model("smollm2"))
    yield backend
    backend.close()


class InFlight:
    """The real engine, with a count of streams open at once (instrumentation only)."""

    def __init__(self, inner: LlamaCppBackend) -> None:
        self.inner = inner
        self.name = inner.name
        self.max_parallel = inner.max_parallel
        self.cache_busting = inner.cache_busting
        self.now = 0
        self.peak = 0
        self.started = 0
        self._lock = threading.Lock()

    def model_info(self) -> ModelInfo:
        return self.inner.model_info()

    def stream(self, request: Request) -> Iterator[Event]:
        with self._lock:
            self.now += 1
            self.started += 1
            self.peak = max(self.peak, self.now)
        try:
            yield from self.inner.stream(request)
        finally:
            with self._lock:
                self.now -= 1

    def close(self) -> None:
        pass


def settings(**options: Any) -> RunSettings:
    return resolve([Layer("test", rounds=2, warmup=1, options={"num_thread": 1, **options})])


def test_closed_loop_keeps_n_requests_in_flight(engine: LlamaCppBackend) -> None:
    counted = InFlight(engine)
    result = run_sweep(
        Runner(counted), Request(prompt=PROMPT), settings(num_predict=4), Levels((4,), requests=8)
    )
    (level,) = result.levels
    assert counted.peak == 4  # four slots, each waiting on the engine's lock
    assert counted.started == 1 + 8  # warm-up, then the level's requests
    assert level.completed == 8 and level.failed == 0 and level.requests == 8


def test_serialising_engine_has_a_flat_throughput_curve(engine: LlamaCppBackend) -> None:
    result = run_sweep(
        Runner(engine), Request(prompt=PROMPT), settings(num_predict=8), Levels((1, 3))
    )
    one, three = result.level(concurrency=1), result.level(concurrency=3)
    assert result.serialised and result.max_parallel == 1
    assert any("serves one request at a time" in n for n in result.notes)
    assert TTFT_NOTE in result.notes
    assert (one.completed, three.completed) == (2, 6)  # max(rounds, 2 * concurrency)
    # queueing: at 3 in flight a request waits for up to two others before its first token
    assert three.ttft.p50 > one.ttft.p50 + 0.5 * one.e2e.p50
    # no pretend batching: generation spans never overlap on this engine, so the level's
    # aggregate rate cannot beat the fastest single request's own generation rate
    for level in (one, three):
        spans = [(s.output_tokens, s.tpot * (s.output_tokens - 1)) for s in level.samples if s.tpot]
        fastest = max(n / span for n, span in spans)
        assert level.throughput is not None
        assert level.throughput <= fastest * 1.02
        assert level.throughput == pytest.approx(level.output_tokens_total / level.wall_s)


def test_generation_and_prompt_length_levels(engine: LlamaCppBackend) -> None:
    result = run_sweep(
        Runner(engine),
        Request(prompt="Write a long story about a lighthouse keeper."),
        resolve([Layer("test", rounds=1, warmup=0, options={"num_thread": 1})]),
        Levels(gen_lengths=(4, 16), prompt_lengths=(48, 160)),
    )
    assert [lv.name for lv in result.levels] == [
        "c=1 n=4 p=48",
        "c=1 n=16 p=48",
        "c=1 n=4 p=160",
        "c=1 n=16 p=160",
    ]
    assert result.varied == ("gen_length", "prompt_length")
    for lv in result.levels:
        assert lv.num_predict is not None
        assert all(0 < (s.output_tokens or 0) <= lv.num_predict for s in lv.samples)
        assert lv.measurement.request["options"]["num_predict"] == lv.num_predict
    short = result.level(gen_length=16, prompt_length=48)
    long = result.level(gen_length=16, prompt_length=160)
    # A cell is named with sweep()'s own words; num_predict= is the same value.
    assert result.level(num_predict=16, prompt_length=48) is short and short.gen_length == 16
    with pytest.raises(UsageError, match=r"matches 2 levels.*n: gen_length"):
        result.level(gen_length=16)
    with pytest.raises(UsageError, match="both name the generation length"):
        result.level(gen_length=16, num_predict=4)
    # the padded prompt reaches the engine: its own token count grows by about the padding
    assert long.prompt_tokens.median - short.prompt_tokens.median > 80
    prompt = long.measurement.request["prompt"]
    assert abs((count_tokens(prompt) or 0) - 160) <= 2
    assert long.ttft.median > short.ttft.median  # more prefill work
    assert (
        short.output_tokens_total
        > result.level(num_predict=4, prompt_length=48).output_tokens_total
    )


def test_normalized_counts_fill_every_level(engine: LlamaCppBackend) -> None:
    result = run_sweep(
        Runner(engine), Request(prompt=PROMPT), settings(num_predict=8), Levels((1,))
    )
    (level,) = result.levels
    for s in level.samples:
        assert s.normalized_tokens == count_tokens(s.text)
    assert level.normalized_tokens_total == sum(count_tokens(s.text) or 0 for s in level.samples)
    data = result.to_dict()
    assert data["levels"][0]["normalized_throughput_tps"] == pytest.approx(
        level.normalized_tokens_total / level.wall_s
    )


def test_usage_errors_stop_the_sweep_instead_of_being_recorded(engine: LlamaCppBackend) -> None:
    with pytest.raises(UsageError, match="num_ctx"):
        run_sweep(
            Runner(engine),
            Request(prompt=PROMPT),
            resolve([Layer("t", rounds=1, warmup=0, options={"num_ctx": 64, "num_thread": 1})]),
            Levels((1,), prompt_lengths=(200,)),
        )
    with pytest.raises(UsageError, match="messages"):
        run_sweep(
            Runner(engine),
            Request(messages=()),
            settings(),
            Levels(prompt_lengths=(100,)),
        )
    result = run_sweep(
        Runner(engine), Request(prompt=PROMPT), settings(num_predict=2), Levels((1,))
    )
    with pytest.raises(UsageError, match="matches 0 levels; the levels are c=1 n=2"):
        result.level(concurrency=8)
