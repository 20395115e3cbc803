"""Ollama's prompt cache is defeated without touching the prompt, and every round is checked.

Against the Ollama stand-in, whose engine (the real llama.cpp through llama-cpp-python)
keeps a real one-slot prefix cache: a repeated prompt really is served from it.
"""

from __future__ import annotations

from typing import Any

import pytest
from standin import OllamaStandin

from pytest_tokrate.backends.base import Request
from pytest_tokrate.backends.ollama import OllamaBackend
from pytest_tokrate.backends.ollama_cache import EVICTION_PROMPT, MAX_SLOTS
from pytest_tokrate.core.cache import cache_judge
from pytest_tokrate.core.findings import JudgeContext
from pytest_tokrate.core.result import Measurement
from pytest_tokrate.core.runner import Runner
from pytest_tokrate.core.settings import RunSettings

MODEL = "smollm2:135m"
SYSTEM = "You are a sports expert. Answer in one short sentence."
QUESTION = "Geelong is a football club. Is it an Australian or an American team?"


def run(server: OllamaStandin, cache: str, rounds: int = 5) -> Measurement:
    options = {"num_predict": 12, "num_ctx": 2048, "temperature": 0.0, "seed": 42}
    settings = RunSettings(rounds=rounds, warmup=1, options=options, cache=cache)
    backend = OllamaBackend(MODEL, host=server.url)
    try:
        return Runner(backend).run(Request(prompt=QUESTION, system=SYSTEM), settings)
    finally:
        backend.close()


def generations(server: OllamaStandin) -> list[dict[str, Any]]:
    """The bodies of /api/generate requests the stand-in received, in order."""
    return [b for b in server.bodies if "prompt" in b]


def test_every_measured_round_sends_the_exact_text_and_evaluates_it_all(
    ollama_standin: OllamaStandin,
) -> None:
    m = run(ollama_standin, "bust")
    bodies = generations(ollama_standin)
    tests = [b for b in bodies if b["prompt"] == QUESTION]
    evictions = [b for b in bodies if b["prompt"] == EVICTION_PROMPT]
    # Warm-up + 5 measured rounds, each with the user's own system and user text.
    assert len(tests) == 6
    assert all(b["system"] == SYSTEM for b in tests)
    assert not any("[run" in str(b) for b in bodies)
    # One eviction before each measured round, sent raw with the test's load options.
    assert len(evictions) == 5
    assert all(e["raw"] is True and e["options"]["num_ctx"] == 2048 for e in evictions)
    order = ["T" if b["prompt"] == QUESTION else "E" for b in bodies]
    assert "".join(order) == "T" + "ET" * 5
    # Temperature 0 and the same text: one answer.
    assert len({s.text for s in m.samples}) == 1 and m.samples[0].text
    # The server's own counter says nothing was served from the cache.
    for s in m.samples:
        assert s.prompt_tokens_cached is not None and s.prompt_tokens_cached <= 1
        assert s.prompt_tokens_processed == s.prompt_tokens - s.prompt_tokens_cached
        assert s.cache_reused is False
    record = m.extra["cache"]
    assert record == {
        "mode": "bust", "method": "evict", "exact_prompt": True, "allowance_tokens": 1,
        "verified_rounds": 5, "reused_rounds": [], "held": True,
    }  # fmt: skip
    assert m.to_dict()["samples"][0]["cache_reused"] is False


def test_with_the_cache_allowed_the_same_counter_shows_the_reuse(
    ollama_standin: OllamaStandin,
) -> None:
    """Proof the check can fail: without eviction the rounds do hit the cache."""
    m = run(ollama_standin, "allow", rounds=3)
    assert not any(b["prompt"] == EVICTION_PROMPT for b in generations(ollama_standin))
    assert all((s.prompt_tokens_cached or 0) > 10 for s in m.samples)
    assert all(s.cache_reused is None for s in m.samples)
    assert m.extra["cache"]["held"] is None and m.cache_busting == "none"


def test_a_cache_that_survives_eviction_escalates_to_a_reload_and_is_flagged(
    ollama_standin: OllamaStandin,
) -> None:
    """A server whose cache survives eviction (several slots, a host-memory prompt cache):
    the method climbs to several evictions, then a reload; rounds that still reused are
    flagged and warned about, not averaged in silently."""
    ollama_standin.faults.arm(
        "final_fields", set={"prompt_eval_cached_count": 20}, prompt_contains="Geelong"
    )
    m = run(ollama_standin, "bust", rounds=4)
    bodies = ollama_standin.bodies
    assert m.cache_busting == "reload"
    # Round 1: one eviction; round 2: one per slot; rounds 3-4: unload + load.
    evictions = [b for b in generations(ollama_standin) if b["prompt"] == EVICTION_PROMPT]
    assert len(evictions) == 1 + MAX_SLOTS
    unloads = [b for b in bodies if b.get("keep_alive") == 0 and not b.get("prompt")]
    assert len(unloads) == 2
    assert [s.cache_reused for s in m.samples] == [True] * 4
    assert m.extra["cache"]["held"] is False
    assert m.extra["cache"]["reused_rounds"] == [0, 1, 2, 3]
    findings = cache_judge(m, JudgeContext("test_x"))
    assert [f.kind for f in findings] == ["cache-reused"]
    message = findings[0].message
    assert "4 of 4 measured round(s) of test_x" in message
    assert "round 1: 20 of" in message and "--tokrate-cache=nonce" in message


def test_a_server_without_the_counter_is_recorded_as_unverified(
    standin_factory: Any,
) -> None:
    server = standin_factory("ollama", cached_counter=False)
    m = run(server, "bust", rounds=2)
    assert m.cache_busting == "evict"
    assert all(s.prompt_tokens_cached is None and s.cache_reused is None for s in m.samples)
    assert m.extra["cache"]["verified_rounds"] == 0 and m.extra["cache"]["held"] is None
    assert cache_judge(m, JudgeContext("t")) == []


@pytest.mark.parametrize("mode", ["nonce"])
def test_the_nonce_stays_an_explicit_choice(ollama_standin: OllamaStandin, mode: str) -> None:
    m = run(ollama_standin, mode, rounds=2)
    tests = [b for b in generations(ollama_standin) if b["prompt"] == QUESTION]
    assert tests[0]["system"] == SYSTEM  # the warm-up is never edited
    assert all(b["system"].startswith("[run ") for b in tests[1:])
    assert all(b["system"].endswith(SYSTEM) for b in tests[1:])
    assert m.cache_busting == "nonce-prefix" and m.extra["cache"]["exact_prompt"] is False
