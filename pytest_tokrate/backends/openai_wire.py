"""The OpenAI wire format, without any I/O: the request body we send, the streamed events
we read back, and the round's token counts and timers taken from them.

Counts and timers come from the best source the server offers, recorded in
``EngineReport.extra["token_source"]``:

``timings``            llama.cpp's ``timings`` object (``prompt_n``, ``prompt_ms``,
                       ``predicted_n``, ``predicted_ms``, ``cache_n``): exact engine counts
                       and timers, like Ollama's.
``usage``              ``usage.completion_tokens`` / ``prompt_tokens`` (vLLM, hosted APIs):
                       exact counts, no engine timers (decode tok/s is the client's).
``tiktoken-estimate``  nothing reported: the answer is re-counted with tiktoken's
                       cl100k_base and flagged ``token_count_estimated``.

The prompt tokens served from a cache are ``timings.cache_n`` (llama.cpp's ``n_past``), else
``usage.prompt_tokens_details.cached_tokens`` (llama.cpp fills it with the same number;
vLLM with ``--enable-prompt-tokens-details``; OpenAI always); those evaluated are
``timings.prompt_n``, else the prompt's tokens less the cached ones (and the other way round
for llama.cpp builds before ``cache_n``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any

from pytest_tokrate.backends.base import Request
from pytest_tokrate.core.measure import EngineReport
from pytest_tokrate.errors import UsageError

#: Our option names -> OpenAI request fields (sent whenever set).
STANDARD_OPTIONS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "stop": "stop",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}
#: Sampling options llama.cpp and vLLM accept beyond the OpenAI set (sent only when set).
EXTENDED_OPTIONS = ("top_k", "min_p", "typical_p", "repeat_penalty", "repeat_last_n")
#: Numeric fields of the final events, checked before any figure is taken from them.
METRIC_KEYS = {
    "usage": ("completion_tokens", "prompt_tokens", "total_tokens"),
    "timings": ("prompt_n", "prompt_ms", "predicted_n", "predicted_ms", "cache_n"),
}

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def read_api_key(env_name: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The key held by the named environment variable (``None`` when no name is given)."""
    if env_name is None or not env_name.strip():
        return None
    name = env_name.strip()
    if not _ENV_NAME.match(name):
        raise UsageError(
            "--tokrate-api-key-env: the value is not an environment variable name (it is not "
            "shown, in case it is the key itself): pass the variable's *name*, e.g. "
            "OPENAI_API_KEY, never the key."
        )
    value = (os.environ if environ is None else environ).get(name, "")
    if not value.strip():
        raise UsageError(
            f"--tokrate-api-key-env={name}: the environment variable {name} is not set or "
            f"empty: export {name}=<your key> before running pytest."
        )
    return value.strip()


def request_body(model: str, request: Request) -> tuple[str, dict[str, Any], list[str]]:
    """The path and JSON body of a streamed completion, and the options no field took."""
    options = dict(request.options)
    body: dict[str, Any] = {"model": model, "stream": True}
    body["stream_options"] = {"include_usage": True}
    if request.raw:
        nonce = request.system_with_nonce(apply_nonce=True)
        prompt = request.prompt or ""
        body["prompt"] = f"{nonce}\n{prompt}" if nonce else prompt
        path = "/completions"
    else:
        body["messages"] = request.chat_messages(apply_nonce=True)
        path = "/chat/completions"
    num_predict = options.pop("num_predict", None)
    if isinstance(num_predict, int) and num_predict > 0:
        body["max_tokens"] = num_predict
    for key, field in STANDARD_OPTIONS.items():
        if key in options:
            body[field] = options.pop(key)
    for key in EXTENDED_OPTIONS:
        if key in options:
            body[key] = options.pop(key)
    if request.format == "json":
        body["response_format"] = {"type": "json_object"}
    elif isinstance(request.format, dict):
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": request.format, "strict": True},
        }
    return path, body, sorted(options)


class StreamError(Exception):
    """An ``{"error": ...}`` event inside the stream."""


class StreamState:
    """What the events of one stream said, beyond the text."""

    __slots__ = ("done", "fingerprint", "finish_reason", "parts", "timings", "usage")

    def __init__(self) -> None:
        self.done = False
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.timings: dict[str, Any] | None = None
        self.fingerprint: str | None = None
        self.parts: list[str] = []

    def feed(self, event: dict[str, Any]) -> str | None:
        """Take one decoded event; returns its text, if any."""
        if "error" in event:
            err = event["error"]
            raise StreamError(err.get("message", err) if isinstance(err, dict) else err)
        if event.get("usage"):
            self.usage = event["usage"]
        if event.get("timings"):
            self.timings = event["timings"]
        if self.fingerprint is None and event.get("system_fingerprint"):
            self.fingerprint = str(event["system_fingerprint"])
        choices = event["choices"]
        if not choices:
            return None
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        delta = choice.get("delta")
        text = delta.get("content") if delta is not None else choice.get("text")
        if text:
            self.parts.append(text)
            return str(text)
        return None

    @property
    def received(self) -> int:
        """How many chunks of text the stream has carried so far."""
        return len(self.parts)

    def text(self) -> str:
        return "".join(self.parts)


def metric_problem(usage: Any, timings: Any) -> tuple[str, str] | None:
    """The first count or timer that cannot be true (wrong type, negative, not finite), as
    (what the server sent, why it cannot be); ``None`` when all can be.

    Such figures are refused rather than dropped, so that a round is never silently
    measured from another source than the one the server offers.
    """
    for section, values in (("usage", usage), ("timings", timings)):
        if not isinstance(values, dict):
            return f"{section}={values!r}", "not a JSON object"
        for key in METRIC_KEYS[section]:
            value = values.get(key)
            if value is None:
                continue
            shown = f"{section}.{key}={value!r}"
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return shown, "not a number"
            if not math.isfinite(value) or value < 0:
                return shown, "not a finite number >= 0"
    predicted_n = count(timings.get("predicted_n"))
    if predicted_n is not None and predicted_n >= 2 and not ms_to_ns(timings.get("predicted_ms")):
        return (
            f"timings.predicted_n={predicted_n} with timings.predicted_ms="
            f"{timings.get('predicted_ms')!r}",
            "generated tokens take time, so the decode rate cannot be computed",
        )
    return None


def engine_report(state: StreamState, extra: Mapping[str, Any]) -> EngineReport:
    """The round's engine figures from the best source the stream offered; ``extra`` is
    extended with ``token_source``. The figures must have passed :func:`metric_problem`."""
    usage, timings = state.usage or {}, state.timings or {}
    estimated = False
    prompt_cached = count(dig(usage, "prompt_tokens_details", "cached_tokens"))
    if timings and count(timings.get("predicted_n")) is not None:
        source = "timings"
        output = count(usage.get("completion_tokens"))
        decode_tokens = count(timings.get("predicted_n"))
        processed = count(timings.get("prompt_n"))
        cached = count(timings.get("cache_n"))
        prompt = reported = count(usage.get("prompt_tokens"))
        if prompt is None and processed is not None:
            prompt = processed + (cached or 0)
        output = output if output is not None else decode_tokens
        decode_ns = ms_to_ns(timings.get("predicted_ms"))
        prefill_ns = ms_to_ns(timings.get("prompt_ms"))
        prompt_cached = cached if cached is not None else prompt_cached
        if prompt_cached is None and reported is not None and processed is not None:
            # Builds before cache_n: the prompt less what was evaluated was served cached.
            prompt_cached = max(reported - processed, 0)
    elif usage and count(usage.get("completion_tokens")) is not None:
        source = "usage"
        output = decode_tokens = count(usage.get("completion_tokens"))
        prompt = count(usage.get("prompt_tokens"))
        processed = (
            prompt - prompt_cached if prompt is not None and prompt_cached is not None else None
        )
        decode_ns = prefill_ns = None
    else:
        from pytest_tokrate.core.tokens import count_tokens

        output = decode_tokens = count_tokens(state.text())
        source = "tiktoken-estimate" if output is not None else "none"
        estimated = output is not None
        prompt = processed = decode_ns = prefill_ns = None
    return EngineReport(
        output_tokens=output,
        prompt_tokens=prompt,
        prompt_tokens_processed=processed,
        prompt_tokens_cached=prompt_cached,
        decode_tokens=decode_tokens,
        decode_ns=decode_ns,
        prefill_ns=prefill_ns,
        done_reason=state.finish_reason,
        token_count_estimated=estimated,
        extra={**extra, "token_source": source},
    )


def dig(mapping: Mapping[str, Any], *keys: str) -> Any:
    """``mapping[k1][k2]...``, or ``None`` where a level is missing or not a mapping."""
    value: Any = mapping
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def count(value: object) -> int | None:
    """A server's count as an int; ``None`` unless a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return None
    return int(value) if math.isfinite(value) else None


def ms_to_ns(ms: object) -> int | None:
    """A server's milliseconds as nanoseconds; ``None`` unless a finite number > 0."""
    if isinstance(ms, bool) or not isinstance(ms, (int, float)) or ms <= 0:
        return None
    return int(ms * 1e6) if math.isfinite(ms) else None


__all__ = [
    "EXTENDED_OPTIONS",
    "METRIC_KEYS",
    "STANDARD_OPTIONS",
    "StreamError",
    "StreamState",
    "count",
    "dig",
    "engine_report",
    "metric_problem",
    "ms_to_ns",
    "read_api_key",
    "request_body",
]
