"""The prompt cache on OpenAI-compatible servers: each server's own switch, the exact text
in every measured round, and the server's counters saying whether the cache was reused.

Against the stand-in, whose engine has a real one-slot prefix cache (llama.cpp, vLLM and
bare flavours), and the pure parts of :mod:`pytest_tokrate.backends.openai_cache`.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from standin import EngineHost, OpenAIStandin
from standin.httpserver import Exchange

from pytest_tokrate.backends.base import Request
from pytest_tokrate.backends.openai import OpenAIBackend
from pytest_tokrate.backends.openai_cache import (
    CACHE_PROMPT_OFF,
    CACHE_SALT,
    NO_METHOD,
    cache_fields,
    cache_method,
    refused_salt,
    release,
)
from pytest_tokrate.backends.openai_facts import LLAMACPP, VLLM
from pytest_tokrate.backends.openai_wire import StreamState, engine_report
from pytest_tokrate.core.result import Measurement
from pytest_tokrate.core.runner import Runner
from pytest_tokrate.core.settings import RunSettings

MODEL = "smollm2:135m"
SYSTEM = "You are a helpful assistant. Answer in one short sentence."
USER = "Which animal is known as the king of the jungle?"
EXACT = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]


def run(
    server: OpenAIStandin, cache: str, rounds: int = 3, refused: int = 0
) -> tuple[Measurement, list[Any]]:
    """``rounds`` measured rounds after one warm-up; the measurement and the bodies of the
    measured rounds as the server received them (``refused`` more, sent again)."""
    backend = OpenAIBackend(MODEL, host=server.url)
    before = len(server.bodies)
    options = {"num_predict": 12, "num_ctx": 2048, "temperature": 0.0, "seed": 42}
    settings = RunSettings(rounds=rounds, warmup=1, options=options, cache=cache)
    m = Runner(backend).run(Request(system=SYSTEM, prompt=USER), settings)
    backend.close()
    bodies = server.bodies[before:]
    assert len(bodies) == 1 + rounds + refused
    assert "cache_prompt" not in bodies[0] and "cache_salt" not in bodies[0]  # the warm-up
    return m, bodies[1:]


# -- llama.cpp ------------------------------------------------------------------------


def test_llamacpp_rounds_send_the_exact_text_and_skip_the_cache(
    openai_standin: OpenAIStandin,
) -> None:
    m, bodies = run(openai_standin, "bust", rounds=5)
    for body in bodies:
        assert body["messages"] == EXACT and body["cache_prompt"] is False
        assert "[run" not in str(body)
    assert len({s.text for s in m.samples}) == 1 and m.samples[0].text.strip()
    for s in m.samples:
        assert s.prompt_tokens_cached == 0 and s.cache_reused is False
        assert s.prompt_tokens and s.prompt_tokens_processed == s.prompt_tokens
    assert m.cache_busting == CACHE_PROMPT_OFF
    record = m.extra["cache"]
    assert record["method"] == CACHE_PROMPT_OFF and record["exact_prompt"] is True
    assert record["held"] is True and record["verified_rounds"] == 5
    assert record["reused_rounds"] == []


def test_llamacpp_rounds_reuse_the_cache_when_allowed(openai_standin: OpenAIStandin) -> None:
    m, bodies = run(openai_standin, "allow")
    assert all(b["messages"] == EXACT and "cache_prompt" not in b for b in bodies)
    prompt = m.samples[0].prompt_tokens
    assert prompt is not None
    for s in m.samples:  # the warm-up left the whole prompt in the slot
        assert s.prompt_tokens_cached == prompt - 1  # llama.cpp evaluates at least one
        assert s.prompt_tokens_processed == 1 and s.cache_reused is None
    assert m.extra["cache"]["held"] is None and m.extra["cache"]["method"] == NO_METHOD


def test_nonce_mode_keeps_the_old_line(openai_standin: OpenAIStandin) -> None:
    m, bodies = run(openai_standin, "nonce")
    systems = [b["messages"][0]["content"] for b in bodies]
    assert all(s.startswith("[run ") and s.endswith("\n" + SYSTEM) for s in systems)
    assert len(set(systems)) == len(systems)  # a new nonce each round
    assert all("cache_prompt" not in b for b in bodies)
    assert m.cache_busting == "nonce-prefix"
    assert m.extra["cache"]["method"] == "nonce-prefix"
    assert m.extra["cache"]["exact_prompt"] is False


class UnlistedServer(OpenAIStandin):
    """A llama.cpp server behind a proxy that does not pass ``/v1/models`` on: only the
    ``timings`` of its streams say what it is."""

    def route(self, ex: Exchange) -> None:
        if ex.path == "/v1/models":
            self.proto.send_error(ex, 404, "File Not Found")
            return
        super().route(ex)


def test_llamacpp_is_recognised_by_its_timings(standin_engine: EngineHost) -> None:
    with UnlistedServer(standin_engine) as server:
        backend = OpenAIBackend(MODEL, host=server.url)
        assert backend.cache_busting == NO_METHOD  # nothing known yet
        backend.close()
        m, bodies = run(server, "bust")
    assert all(b["cache_prompt"] is False for b in bodies)  # learnt from the warm-up
    assert m.cache_busting == CACHE_PROMPT_OFF and m.extra["cache"]["held"] is True


# -- vLLM ---------------------------------------------------------------------------


def test_vllm_rounds_get_a_fresh_salt(openai_standin: OpenAIStandin) -> None:
    openai_standin.flavour = "vllm"
    m, bodies = run(openai_standin, "bust")
    salts = [b["cache_salt"] for b in bodies]
    assert len(set(salts)) == len(salts) and all(len(s) >= 32 for s in salts)
    assert all(b["messages"] == EXACT and "cache_prompt" not in b for b in bodies)
    assert all(s.prompt_tokens_cached == 0 for s in m.samples)
    assert m.cache_busting == CACHE_SALT and m.extra["cache"]["held"] is True
    assert m.model.extra["prompt_cache_note"] is None
    assert len({s.text for s in m.samples}) == 1


def test_the_vllm_standin_keeps_prefixes_apart_by_salt(openai_standin: OpenAIStandin) -> None:
    """What the backend relies on, read from the server's own counter: a salt reuses
    only what was cached under it."""
    openai_standin.flavour = "vllm"

    def cached(salt: str | None) -> int:
        body: dict[str, Any] = {"model": MODEL, "messages": EXACT, "max_tokens": 2}
        if salt is not None:
            body["cache_salt"] = salt
        url = f"{openai_standin.url}/v1/chat/completions"
        answer = httpx.post(url, json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        return int(answer.json()["usage"]["prompt_tokens_details"]["cached_tokens"])

    cached("a" * 32)
    assert cached("a" * 32) > 0  # the same salt: reused
    assert cached("b" * 32) == 0  # another salt
    assert cached(None) == 0  # no salt is a salt of its own
    assert cached(None) > 0


def test_an_older_vllm_gets_no_salt_and_the_counters_tell(openai_standin: OpenAIStandin) -> None:
    openai_standin.flavour = "vllm"
    openai_standin.vllm_version = "0.8.5"
    m, bodies = run(openai_standin, "bust")
    assert all(b["messages"] == EXACT and "cache_salt" not in b for b in bodies)
    assert m.cache_busting == NO_METHOD
    assert "vllm 0.8.5 predates cache_salt (0.9.0)" in m.model.extra["prompt_cache_note"]
    # Prefix caching applied; the per-round counters flag it rather than hide it.
    assert all(s.prompt_tokens_cached and s.cache_reused for s in m.samples)
    assert m.extra["cache"]["held"] is False
    assert m.extra["cache"]["reused_rounds"] == [0, 1, 2]


def test_a_vllm_that_refuses_the_salt_is_sent_none(openai_standin: OpenAIStandin) -> None:
    openai_standin.flavour = "vllm"
    openai_standin.vllm_v0 = True
    m, bodies = run(openai_standin, "bust", rounds=2, refused=1)
    assert "cache_salt" in bodies[0] and "cache_salt" not in bodies[1]
    assert m.cache_busting == NO_METHOD and len(m.samples) == 2
    note = m.model.extra["prompt_cache_note"]
    assert "the server refused cache_salt (invalid request: Parameter 'cache_salt'" in note


# -- servers without a switch ---------------------------------------------------------


def test_a_bare_server_gets_the_exact_text_and_no_method(openai_standin: OpenAIStandin) -> None:
    openai_standin.flavour = "bare"
    m, bodies = run(openai_standin, "bust")
    for body in bodies:
        assert body["messages"] == EXACT
        assert "cache_prompt" not in body and "cache_salt" not in body
    assert m.cache_busting == NO_METHOD and m.extra["cache"]["method"] == NO_METHOD
    assert m.extra["cache"]["held"] is None  # it reports no counters to verify with
    assert "no per-request switch" in m.model.extra["prompt_cache_note"]


# -- pure parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "version", "method"),
    [
        (LLAMACPP, None, CACHE_PROMPT_OFF),
        (VLLM, "vllm 0.10.1+tokrate.standin", CACHE_SALT),
        (VLLM, "vllm 0.9.0", CACHE_SALT),
        (VLLM, "vllm 0.8.5.post1", NO_METHOD),
        (VLLM, None, NO_METHOD),
        (None, "1.2.3", NO_METHOD),
    ],
)
def test_cache_method(server: str | None, version: str | None, method: str) -> None:
    got, note = cache_method(server, version)
    assert got == method and (note is None) == (method != NO_METHOD)


def test_release_numbers() -> None:
    assert release("vllm 0.10.1+cu128") == (0, 10, 1) and release("1.2") == (1, 2, 0)
    assert release("dev") is None and release(None) is None


def test_fields_only_for_measured_rounds_without_a_nonce() -> None:
    measured = Request(prompt="x", bust_cache=True)
    assert cache_fields(CACHE_PROMPT_OFF, measured) == {"cache_prompt": False}
    assert cache_fields(NO_METHOD, measured) == {}
    salts = {cache_fields(CACHE_SALT, measured)["cache_salt"] for _ in range(3)}
    assert len(salts) == 3
    nonce = Request(prompt="x", bust_cache=True, cache_nonce="abcd1234")
    warmup = Request(prompt="x")
    for method in (CACHE_PROMPT_OFF, CACHE_SALT):
        assert cache_fields(method, nonce) == cache_fields(method, warmup) == {}


def test_refused_salt() -> None:
    body = {"cache_salt": "s", "model": "m"}
    assert refused_salt(body, "unknown model") is None and "cache_salt" in body
    note = refused_salt(body, "Parameter 'cache_salt' is not supported")
    assert note is not None and body == {"model": "m"}
    assert refused_salt({"model": "m"}, "cache_salt ...") is None


def report(usage: dict[str, Any] | None, timings: dict[str, Any] | None) -> tuple[Any, ...]:
    state = StreamState()
    state.usage, state.timings = usage, timings
    r = engine_report(state, {})
    return r.prompt_tokens, r.prompt_tokens_cached, r.prompt_tokens_processed


def test_cached_and_processed_counts_from_each_source() -> None:
    timings = {"prompt_n": 5, "prompt_ms": 2.0, "predicted_n": 4, "predicted_ms": 8.0}
    usage = {"completion_tokens": 4, "prompt_tokens": 30}
    details = {**usage, "prompt_tokens_details": {"cached_tokens": 25}}
    assert report(usage, {**timings, "cache_n": 25}) == (30, 25, 5)
    assert report(details, timings) == (30, 25, 5)  # llama.cpp fills both alike
    assert report(usage, timings) == (30, 25, 5)  # builds before cache_n: 30 less 5
    assert report(None, timings) == (5, None, 5)  # nothing says what was cached
    assert report(details, None) == (30, 25, 5)  # vLLM, hosted APIs
    assert report(usage, None) == (30, None, None)  # vLLM without prompt token details
