"""The OpenAI-compatible backend against the stand-in (llama.cpp, vLLM and bare flavours)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from standin import OpenAIStandin

from pytest_tokrate.backends.base import Request
from pytest_tokrate.backends.openai import OpenAIBackend, read_api_key
from pytest_tokrate.core.runner import Runner
from pytest_tokrate.core.settings import RunSettings
from pytest_tokrate.core.tokens import count_tokens
from pytest_tokrate.errors import (
    BackendUnavailable,
    ModelNotOnServer,
    RequestTimeout,
    ServerError,
    UsageError,
)

MODEL = "smollm2:135m"
STORY = "Write a long story about a dragon who lives in a castle."
KEY = "sk-tokrate-test-7f3a9c21e5"


def settings(**kw: Any) -> RunSettings:
    options = {"num_predict": 12, "num_ctx": 2048, "temperature": 0.0, "seed": 42}
    options.update(kw.pop("options", {}))
    return RunSettings(
        rounds=kw.pop("rounds", 2), warmup=kw.pop("warmup", 1), options=options, **kw
    )


def test_llamacpp_timings_are_used(openai_standin: OpenAIStandin) -> None:
    b = OpenAIBackend(MODEL, host=openai_standin.url)
    m = Runner(b).run(Request(prompt=STORY), settings())
    body = openai_standin.bodies[-1]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 12 and body["seed"] == 42 and body["temperature"] == 0.0
    # The exact prompt; llama.cpp's own switch keeps the round out of its prompt cache.
    assert body["messages"] == [{"role": "user", "content": STORY}]
    assert body["cache_prompt"] is False and b.cache_busting == "cache_prompt=false"
    for s in m.samples:
        assert s.extra["token_source"] == "timings"
        assert s.extra["ignored_options"] == ["num_ctx"]
        assert s.output_tokens == 12 and s.done_reason == "length"
        assert s.decode_tps_engine and s.prefill_tps and not s.token_count_estimated
        assert s.prompt_tokens_cached == 0 and s.prompt_tokens_processed == s.prompt_tokens
    assert 0.5 < m.decode_agreement.median < 1.3
    assert m.model.parameter_count and m.model.context_length == 8192
    assert m.model.server_version == "b6000-tokrate-standin"


def test_usage_only_server(openai_standin: OpenAIStandin) -> None:
    openai_standin.flavour = "vllm"
    b = OpenAIBackend(MODEL, host=openai_standin.url)
    m = Runner(b).run(Request(prompt=STORY), settings())
    for s in m.samples:
        assert s.extra["token_source"] == "usage"
        assert s.output_tokens == 12 and not s.token_count_estimated
        assert s.decode_tps_engine is None and s.decode_tps == s.decode_tps_client
        assert s.prompt_tokens and s.prompt_tokens > 10


def test_server_reporting_nothing_gives_a_flagged_estimate(openai_standin: OpenAIStandin) -> None:
    openai_standin.flavour = "bare"
    b = OpenAIBackend(MODEL, host=openai_standin.url)
    m = Runner(b).run(Request(prompt=STORY), settings(rounds=1))
    (s,) = m.samples
    assert s.extra["token_source"] == "tiktoken-estimate" and s.token_count_estimated
    assert s.output_tokens == count_tokens(s.text)
    assert s.prompt_tokens is None and s.decode_tps_engine is None


def test_options_and_formats_map_to_openai_fields(openai_standin: OpenAIStandin) -> None:
    b = OpenAIBackend(MODEL, host=openai_standin.url)
    options = {"num_predict": 4, "temperature": 0.0, "top_k": 5, "stop": ["\n\n"], "num_thread": 2}
    raw = Runner(b).one_round(Request(prompt="Hi", options=options, format="json"))
    body = openai_standin.bodies[-1]
    assert body["top_k"] == 5 and body["stop"] == ["\n\n"]
    assert body["response_format"] == {"type": "json_object"}
    assert raw.engine.extra["ignored_options"] == ["num_thread"]
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    Runner(b).one_round(Request(prompt="Hi", options={"num_predict": 4}, format=schema))
    assert openai_standin.bodies[-1]["response_format"]["json_schema"]["schema"] == schema
    Runner(b).one_round(Request(prompt="abc", raw=True, options={"num_predict": 2}))
    assert openai_standin.bodies[-1]["prompt"] == "abc"


@pytest.mark.parametrize(
    ("fault", "kwargs", "error", "words"),
    [
        ("error_midstream", {"after": 2, "message": "slot crashed"}, ServerError,
         ["error in the middle of the stream after 2 chunks", "slot crashed", "discarded"]),
        ("drop", {"after": 2}, ServerError, ["dropped after 2 chunks", "discarded"]),
        ("malformed", {"after": 1, "line": "{oops"}, ServerError,
         ["not a valid chat completion chunk after 1 chunks", "discarded"]),
        ("truncate", {"after": 2}, ServerError, ["without a finish_reason or [DONE]"]),
        ("busy", {}, ServerError, ["stayed busy (HTTP 503", "--tokrate-busy-retries"]),
        ("slow_first_token", {"delay_s": 2.5}, RequestTimeout, ["1 s request timeout"]),
    ],
)  # fmt: skip
def test_faults_are_infrastructure_errors(
    openai_standin: OpenAIStandin, fault: str, kwargs: dict[str, Any], error: type, words: list[str]
) -> None:
    b = OpenAIBackend(MODEL, host=openai_standin.url, busy_retries=1, sleep=lambda s: None)
    openai_standin.faults.arm(fault, **kwargs)
    timeout = 1.0 if error is RequestTimeout else 30.0
    with pytest.raises(error) as info:
        Runner(b).one_round(Request(prompt=STORY, options={"num_predict": 12}, timeout_s=timeout))
    for word in words:
        assert word in str(info.value), str(info.value)


def test_unknown_model_and_unreachable(
    openai_standin: OpenAIStandin, standin_factory: Callable[..., Any]
) -> None:
    b = OpenAIBackend("gpt-9", host=openai_standin.url)
    with pytest.raises(ModelNotOnServer, match=r"model 'gpt-9' is not served at .*/v1 \(404"):
        Runner(b).one_round(Request(prompt="Hi"))
    server = standin_factory("openai")
    server.stop()
    with pytest.raises(BackendUnavailable, match=r"is not reachable .* start it"):
        OpenAIBackend(MODEL, host=server.url)


def test_api_key_is_sent_and_never_shown(
    openai_standin: OpenAIStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    openai_standin.api_key = KEY
    monkeypatch.setenv("TOKRATE_TEST_KEY", KEY)
    b = OpenAIBackend(MODEL, host=openai_standin.url, api_key_env="TOKRATE_TEST_KEY")
    m = Runner(b).run(Request(prompt="Hi"), settings(rounds=1, warmup=0))
    assert openai_standin.auth_headers[-1] == f"Bearer {KEY}"
    assert KEY not in json.dumps(m.to_dict()) and KEY not in repr(m)
    assert m.model.extra["api_key_env"] == "TOKRATE_TEST_KEY"
    # A wrong key: the server echoes what it got; the message must not.
    monkeypatch.setenv("TOKRATE_TEST_KEY", KEY + "-wrong")
    with pytest.raises(BackendUnavailable) as info:
        OpenAIBackend(MODEL, host=openai_standin.url, api_key_env="TOKRATE_TEST_KEY")
    message = str(info.value)
    assert "HTTP 401: Incorrect API key provided: [redacted]" in message
    assert KEY not in message and "check that TOKRATE_TEST_KEY holds a valid key" in message
    # No key at all.
    with pytest.raises(BackendUnavailable, match="pass --tokrate-api-key-env=NAME"):
        OpenAIBackend(MODEL, host=openai_standin.url)


def test_api_key_variable_problems_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="the environment variable NOPE is not set or empty"):
        read_api_key("NOPE", {})
    with pytest.raises(UsageError, match="not an environment variable name") as info:
        read_api_key("sk-live-abc", {})
    assert "sk-live-abc" not in str(info.value)  # it may be the key itself
    assert read_api_key(None, {}) is None and read_api_key("K", {"K": " v "}) == "v"
