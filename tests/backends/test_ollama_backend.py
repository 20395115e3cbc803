"""The Ollama backend against the stand-in: real tokens and timings, over the wire."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from standin import OllamaStandin

from pytest_tokrate.backends.base import Message, Request
from pytest_tokrate.backends.http import backoff_delays
from pytest_tokrate.backends.llamacpp import LlamaCppBackend
from pytest_tokrate.backends.models import resolve_model
from pytest_tokrate.backends.ollama import OllamaBackend
from pytest_tokrate.backends.ollama_facts import canonical_name
from pytest_tokrate.core.runner import Runner
from pytest_tokrate.core.settings import RunSettings
from pytest_tokrate.errors import (
    BackendUnavailable,
    ModelNotOnServer,
    RequestTimeout,
    ServerError,
)

MODEL = "smollm2:135m"
STORY = "Write a long story about a dragon who lives in a castle."  # never stops early
# A system prompt long enough (~120 tokens) that prefill time is measurable.
LONG_SYSTEM = (
    "You are a careful assistant for a hardware shop. You answer questions about cables, "
    "screws, hinges, brackets, shelves, paint, brushes, rollers, ladders and tools. You "
    "always answer in one short sentence, you never invent prices, you mention safety "
    "when a tool can hurt someone, and you suggest asking a member of staff when unsure. "
    "Opening hours are eight to six on weekdays and nine to one on Saturdays."
)


def settings(**kw: Any) -> RunSettings:
    options = {"num_predict": 8, "num_ctx": 2048, "temperature": 0.0, "seed": 42}
    options.update(kw.pop("options", {}))
    return RunSettings(
        rounds=kw.pop("rounds", 2), warmup=kw.pop("warmup", 1), options=options, **kw
    )


def backend(server: OllamaStandin, **kw: Any) -> OllamaBackend:
    return OllamaBackend(MODEL, host=server.url, **kw)


def test_server_metrics_and_client_timings_in_one_round(ollama_standin: OllamaStandin) -> None:
    b = backend(ollama_standin)
    m = Runner(b).run(
        Request(prompt=STORY),
        settings(rounds=3, options={"num_predict": 24}),
    )
    for s in m.samples:
        assert s.output_tokens == 24 and s.done_reason == "length"
        assert s.decode_tps_engine is not None and s.decode_tps_engine > 0
        assert s.prefill_tps is not None and s.prefill_tps > 0
        assert s.ttft is not None and 0 < s.ttft < s.e2e
        assert s.chunks >= 20 and len(s.itl) == s.chunks - 1
        metrics = s.extra["server_metrics"]
        assert metrics["eval_count"] == 24
        assert s.decode_tps_engine == pytest.approx(24 / (metrics["eval_duration"] / 1e9))
    # On a local server the client's (n-1)/(t_end - t_first) tracks eval_count/eval_duration.
    agreement = m.decode_agreement.median
    assert 0.5 < agreement < 1.3, agreement
    assert m.cache_busting == "evict"


def test_busting_makes_prefill_honest(ollama_standin: OllamaStandin) -> None:
    """Ollama counts cached prompt tokens in prompt_eval_count but times only the ones it
    processed: with the cache allowed, a repeated prompt is answered from the cache."""
    b = backend(ollama_standin)
    request = Request(prompt="Do you sell ladders?", system=LONG_SYSTEM)
    allowed = Runner(b).run(request, settings(rounds=2, cache="allow"))  # warm-up primes it
    busted = Runner(b).run(request, settings(rounds=2, warmup=0, cache="bust"))
    assert allowed.cache_busting == "none" and busted.cache_busting == "evict"
    # Same prompt (the exact text both times) ...
    assert busted.prompt_tokens.median == allowed.prompt_tokens.median
    # ... but the allowed rounds evaluated one token of it: prompt_eval_cached_count says
    # so, and the prefill rate counts only the tokens evaluated (not inflated) ...
    assert all(s.prompt_tokens_processed == 1 for s in allowed.samples)
    assert all((s.prompt_tokens_cached or 0) <= 1 for s in busted.samples)
    # ... while the first token came much sooner, from the cache.
    assert busted.ttft.median / allowed.ttft.median > 2
    # The busted rate is the engine's real prefill rate: compare with the embedded engine
    # clearing its KV cache (kv-reset) on the same prompt.
    embedded = LlamaCppBackend(resolve_model("smollm2"))
    try:
        own = Runner(embedded).run(
            request, settings(rounds=2, cache="bust", options={"num_thread": 1})
        )
    finally:
        embedded.close()
    ratio = busted.prefill_tps.median / own.prefill_tps.median
    assert 0.33 < ratio < 3, ratio


def test_generation_options_pass_through(ollama_standin: OllamaStandin) -> None:
    b = backend(ollama_standin)
    base = {"num_predict": 40, "num_ctx": 1024, "num_thread": 1, "seed": 7, "temperature": 0.0}
    free = Runner(b).one_round(Request(prompt=STORY, options=base))
    free_text = "".join(c.text for c in free.chunks)
    # The answer's second word: the prefix cache makes the next run numerically a little
    # different (greedy decoding may drift later on), but not that early.
    stop = " " + free_text.split()[1]
    options = {**base, "stop": [stop], "keep_alive": "10m"}
    raw = Runner(b).one_round(Request(prompt=STORY, options=options))
    body = ollama_standin.bodies[-1]
    assert body["keep_alive"] == "10m"
    assert body["options"] == {k: v for k, v in options.items() if k != "keep_alive"}
    assert body["stream"] is True and body["prompt"] == STORY
    # The stop sequence really stopped the engine.
    text = "".join(c.text for c in raw.chunks)
    assert raw.engine.done_reason == "stop"
    assert stop not in text and len(text) < len(free_text)
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    raw = Runner(b).one_round(
        Request(
            prompt="Is the sky blue? Answer in JSON.",
            format=schema,
            options={"num_predict": 16, "temperature": 0.0},
        )
    )
    assert ollama_standin.bodies[-1]["format"] == schema
    assert "".join(c.text for c in raw.chunks).lstrip().startswith("{")


def test_chat_and_raw_requests(ollama_standin: OllamaStandin) -> None:
    b = backend(ollama_standin)
    msgs = (Message("system", "Be brief."), Message("user", "Hi"))
    Runner(b).one_round(
        Request(messages=msgs, options={"num_predict": 3}, bust_cache=True, cache_nonce="n0nce")
    )
    body = ollama_standin.bodies[-1]
    assert body["messages"][0] == {"role": "system", "content": "[run n0nce]\nBe brief."}
    assert body["messages"][1] == {"role": "user", "content": "Hi"}
    Runner(b).one_round(
        Request(
            prompt="abc", raw=True, options={"num_predict": 2}, bust_cache=True, cache_nonce="r4w"
        )
    )
    body = ollama_standin.bodies[-1]
    assert body["raw"] is True and body["prompt"] == "[run r4w]\nabc" and "system" not in body


def test_metadata_from_show_ps_tags_version(
    standin_factory: Callable[..., Any], ollama_standin: OllamaStandin
) -> None:
    server = standin_factory("ollama", gpu_fraction=1.0, version="0.13.0")
    b = OllamaBackend(
        MODEL, host=server.url, server_settings={"kv_cache_type": "q8_0", "num_parallel": 2}
    )
    m = Runner(b).run(Request(prompt="Hi"), settings(rounds=1, warmup=0))
    info = m.model
    embedded = LlamaCppBackend(resolve_model("smollm2"))
    try:
        truth = embedded.model_info()  # the same GGUF, read by llama.cpp in-process
    finally:
        embedded.close()
    assert info.backend == "ollama" and info.name == MODEL
    assert info.architecture == truth.architecture == "llama"
    assert info.parameter_count == truth.parameter_count
    assert info.quantization == truth.quantization
    assert info.context_length == truth.context_length
    assert info.embedding_length == truth.embedding_length
    assert info.family == "llama" and info.format == "gguf"
    assert info.digest == (truth.digest or "").removeprefix("sha256:")
    assert info.size_bytes == truth.size_bytes
    assert info.server_version == "0.13.0" and m.versions["server"] == "0.13.0"
    assert info.size_vram_bytes == info.extra["loaded_size_bytes"]
    assert info.extra["gpu_fraction"] == 1.0 and info.extra["loaded"] is True
    assert info.extra["server_settings"] == {"kv_cache_type": "q8_0", "num_parallel": 2}
    assert m.to_dict()["model"]["extra"]["server_settings"]["kv_cache_type"] == "q8_0"


def test_many_threads_share_one_backend(ollama_standin: OllamaStandin) -> None:
    b = backend(ollama_standin)
    runner = Runner(b)
    results: dict[int, Any] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            request = Request(prompt=f"Say the number {i}.", options={"num_predict": 4},
                              bust_cache=True, cache_nonce=f"t{i}")  # fmt: skip
            results[i] = runner.one_round(request)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(results) == list(range(6))
    assert all(r.engine.output_tokens == 4 and r.chunks for r in results.values())


def test_busy_server_is_retried_with_backoff(ollama_standin: OllamaStandin) -> None:
    waits: list[float] = []
    b = backend(ollama_standin, busy_retries=3, backoff_s=0.25, sleep=waits.append)
    ollama_standin.faults.arm("busy", times=2)
    raw = Runner(b).one_round(Request(prompt="Hi", options={"num_predict": 2}))
    assert waits == [0.25, 0.5]
    assert raw.engine.extra["busy_retries"] == 2 and raw.engine.output_tokens == 2
    ollama_standin.faults.arm("busy")
    with pytest.raises(ServerError) as info:
        Runner(b).one_round(Request(prompt="Hi", options={"num_predict": 2}))
    assert "stayed busy (503: server busy, please try again." in str(info.value)
    assert "after 3 retries over 1.8 s" in str(info.value)
    assert "--tokrate-busy-retries" in str(info.value)
    assert backoff_delays(8, 1.0)[-1] == 8.0  # capped


@pytest.mark.parametrize(
    ("fault", "kwargs", "error", "words"),
    [
        ("error_midstream", {"after": 2, "message": "runner died"}, ServerError,
         ["error in the middle of the stream after 2 chunks", "'runner died'",
          "partial round (2 chunks) was discarded"]),
        ("drop", {"after": 3}, ServerError,
         ["dropped after 3 chunks", "partial round (3 chunks) was discarded", "still running"]),
        ("malformed", {"after": 1}, ServerError,
         ["not JSON after 1 chunks", "partial round (1 chunks) was discarded"]),
        ("wrong_type", {"field": "eval_count", "value": "many"}, ServerError,
         ["cannot read", "eval_count", "'many'"]),
        ("final_fields", {"set": {"eval_duration": -5}}, ServerError,
         ["eval_duration=-5, a negative value"]),
        ("truncate", {"after": 2}, ServerError,
         ["without the final done:true chunk", "partial round was discarded"]),
        ("status", {"status": 500, "message": "model runner has unexpectedly stopped"},
         ServerError, ["HTTP 500", "unexpectedly stopped", "server log"]),
        ("slow_first_token", {"delay_s": 2.5}, RequestTimeout,
         ["within the 1 s request timeout", "--tokrate-timeout"]),
        ("stall", {"after": 2, "delay_s": 3.0}, RequestTimeout,
         ["after 2 chunks", "partial round (2 chunks) was discarded"]),
    ],
)  # fmt: skip
def test_faults_become_infrastructure_errors_with_the_fix(
    ollama_standin: OllamaStandin, fault: str, kwargs: dict[str, Any], error: type, words: list[str]
) -> None:
    b = backend(ollama_standin)
    ollama_standin.faults.arm(fault, **kwargs)
    # Generous timeouts: a loaded machine must not turn a fault into a different error.
    timeout = {"slow_first_token": 1.0, "stall": 1.5}.get(fault, 30.0)
    request = Request(prompt=STORY, options={"num_predict": 12}, timeout_s=timeout)
    with pytest.raises(error) as info:
        Runner(b).one_round(request)
    message = str(info.value)
    for word in words:
        assert word in message, message
    assert ollama_standin.url in message or "request timeout" in message


def test_model_not_on_server(ollama_standin: OllamaStandin) -> None:
    b = OllamaBackend("gemma2:2b-instruct-q2_K", host=ollama_standin.url)
    with pytest.raises(ModelNotOnServer) as info:
        Runner(b).one_round(Request(prompt="Hi"))
    assert "run `ollama pull gemma2:2b-instruct-q2_K`" in str(info.value)
    with pytest.raises(ModelNotOnServer, match="ollama pull"):
        b.model_info()


def test_unreachable_and_not_ollama(standin_factory: Callable[..., Any]) -> None:
    server = standin_factory("ollama")
    url = server.url
    server.stop()
    with pytest.raises(BackendUnavailable) as info:
        OllamaBackend(MODEL, host=url)
    message = str(info.value)
    assert f"Ollama is not reachable at {url}" in message
    assert "start it with `ollama serve`, or set --tokrate-host" in message
    other = standin_factory("openai")
    with pytest.raises(
        BackendUnavailable, match=r"not like Ollama \(GET /api/version gave HTTP 404"
    ):
        OllamaBackend(MODEL, host=other.url)


def test_host_from_ollama_host(
    ollama_standin: OllamaStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{ollama_standin.port}")
    b = OllamaBackend(MODEL)
    assert (b.url, b.host_source) == (ollama_standin.url, "OLLAMA_HOST")


def test_canonical_names() -> None:
    assert canonical_name("Llama3.2") == "llama3.2:latest"
    assert canonical_name("registry.ollama.ai/library/gemma2:2b") == "gemma2:2b"
    assert canonical_name("me/model:q4") == "me/model:q4"
