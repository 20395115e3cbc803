"""The per-round cache record: what counts as a reused round, and the run's summary."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pytest_tokrate.core import cache
from pytest_tokrate.core.measure import Sample


def sample(index: int, cached: int | None) -> Sample:
    return Sample(
        index=index, text="ok", output_tokens=4, prompt_tokens=40, ttft=0.1, tpot=0.01,
        e2e=0.2, itl=(), decode_tps=100.0, decode_tps_client=100.0, decode_tps_engine=100.0,
        prefill_tps=1000.0, e2e_tps=20.0, load=None, chunks=4, words=1, done_reason="stop",
        prompt_tokens_cached=cached,
    )  # fmt: skip


class Backend:
    cache_busting = "evict"
    cache_allowance = 1


def test_a_round_counts_as_reused_only_beyond_the_methods_allowance() -> None:
    samples = [sample(0, 0), sample(1, 1), sample(2, 2), sample(3, None)]
    marked = cache.mark_reuse(samples, busting=True, allowed=1)
    assert [s.cache_reused for s in marked] == [False, False, True, None]
    record = cache.summary(marked, "bust", "evict", 1)
    assert record["reused_rounds"] == [2] and record["held"] is False
    assert record["verified_rounds"] == 3


def test_held_needs_every_round_verified_and_clean() -> None:
    clean = cache.mark_reuse([sample(0, 0), sample(1, 0)], busting=True, allowed=0)
    assert cache.summary(clean, "bust", "kv-reset", 0)["held"] is True
    partly = cache.mark_reuse([sample(0, 0), sample(1, None)], busting=True, allowed=0)
    assert cache.summary(partly, "bust", "kv-reset", 0)["held"] is None
    allowed = cache.mark_reuse([sample(0, 30)], busting=False, allowed=0)
    assert allowed[0].cache_reused is None
    assert cache.summary(allowed, "allow", "none", 0)["held"] is None


def test_the_method_and_allowance_follow_the_mode() -> None:
    backend: Any = Backend()
    assert cache.method(backend, "bust") == "evict"
    assert cache.method(backend, "nonce") == "nonce-prefix"
    assert cache.method(backend, "allow") == "none"
    assert cache.allowance(backend) == 1
    assert cache.allowance(backend, "nonce") == cache.NONCE_ALLOWANCE
    assert cache.allowance(object()) == 0
    record = cache.summary([], "nonce", "nonce-prefix", 16)
    assert record["exact_prompt"] is False and record["held"] is None


def test_marking_keeps_unchanged_samples() -> None:
    s = replace(sample(0, 0), cache_reused=False)
    assert cache.mark_reuse([s], busting=True, allowed=0)[0] is s
