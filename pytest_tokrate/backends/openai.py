"""OpenAI-compatible servers: llama.cpp ``llama-server``, vLLM, LM Studio, hosted APIs.

Requests go to ``POST {base}/chat/completions`` (``/completions`` for ``raw=True``) with
``stream: true`` and ``stream_options: {"include_usage": true}``, over httpx. Token counts
and timings are taken from the best source the server offers, recorded in
``EngineReport.extra["token_source"]``:

``timings``            llama.cpp's ``timings`` object (``prompt_n``, ``prompt_ms``,
                       ``predicted_n``, ``predicted_ms``, ``cache_n``): exact engine counts
                       and timers, like Ollama's.
``usage``              ``usage.completion_tokens`` / ``prompt_tokens`` (vLLM, hosted APIs):
                       exact counts, no engine timers (decode tok/s is the client's).
``tiktoken-estimate``  nothing reported: the answer is re-counted with tiktoken's
                       cl100k_base and flagged ``token_count_estimated``.

The API key is read from the environment variable named by ``--tokrate-api-key-env``. It
is sent as ``Authorization: Bearer ...`` and never stored: it does not appear in results,
reports, baselines or error messages (server messages that echo it are redacted).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..errors import (
    BackendUnavailable,
    InfrastructureError,
    ModelNotOnServer,
    RequestTimeout,
    ServerError,
    UsageError,
)
from ..hosts import resolve_openai_base
from ..measure import EngineReport, TextChunk
from .base import Event, ModelInfo, Request
from .ollama import DEFAULT_BACKOFF_S, DEFAULT_BUSY_RETRIES, MAX_PARALLEL, backoff_delays

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
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
_RETRY_STATUSES = (429, 503)
#: Numeric fields of the final events, checked before any figure is taken from them.
_METRIC_KEYS = {
    "usage": ("completion_tokens", "prompt_tokens", "total_tokens"),
    "timings": ("prompt_n", "prompt_ms", "predicted_n", "predicted_ms", "cache_n"),
}
_PROBE_TIMEOUT_S = 10.0


def _import_httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:
        raise BackendUnavailable(
            f"the OpenAI-compatible backend needs httpx ({exc}): install it with "
            '`pip install "pytest-tokrate[openai]"`.'
        ) from None
    return httpx


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


class OpenAIBackend:
    """Streams chat completions from an OpenAI-compatible server; thread-safe."""

    name = "openai"
    max_parallel = MAX_PARALLEL
    cache_busting = "nonce-prefix"

    def __init__(
        self,
        model: str,
        host: str | None = None,
        api_key_env: str | None = None,
        *,
        server_settings: Mapping[str, object] | None = None,
        busy_retries: int = DEFAULT_BUSY_RETRIES,
        backoff_s: float = DEFAULT_BACKOFF_S,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not model or not model.strip():
            raise UsageError("model name is empty: pass --tokrate-model=NAME.")
        self.model = model
        self.base, self.base_source = resolve_openai_base(host, environ)
        self.url = self.base.url
        self.api_key_env = api_key_env.strip() if api_key_env else None
        key = read_api_key(api_key_env, environ)
        self._redact_values = [key] if key else []
        self.server_settings = dict(sorted((server_settings or {}).items()))
        self.busy_retries = busy_retries
        self.backoff_s = backoff_s
        self._sleep = sleep
        httpx = self._httpx = _import_httpx()
        headers = {"Accept": "text/event-stream, application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(120.0, connect=_PROBE_TIMEOUT_S),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=MAX_PARALLEL),
            follow_redirects=True,
        )
        self._lock = threading.Lock()
        self._fingerprint: str | None = None
        self._listing = self._probe()
        # Load the tiktoken yardstick now: a server that reports no counts makes us count
        # the answer before yielding the final event, which the runner then stamps. (Without
        # tiktoken, the warning waits until an estimate is actually needed.)
        import importlib.util

        if importlib.util.find_spec("tiktoken") is not None:
            from ..tokens import encoding

            encoding()

    # -- plumbing ---------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        for value in self._redact_values:
            text = text.replace(value, "[redacted]")
        return text

    def _unreachable(self, exc: BaseException) -> BackendUnavailable:
        where = "" if self.base_source == "--tokrate-host" else f", address from {self.base_source}"
        return BackendUnavailable(
            f"the OpenAI-compatible server at {self.url} is not reachable "
            f"({self._redact(_reason(exc))}{where}): start it (e.g. `llama-server -m model.gguf`) "
            "or set --tokrate-host to its base URL."
        )

    def _auth_error(self, status: int, message: str) -> BackendUnavailable:
        if self.api_key_env:
            fix = f"check that {self.api_key_env} holds a valid key for this server"
        else:
            fix = "pass --tokrate-api-key-env=NAME, the environment variable holding the key"
        return BackendUnavailable(
            f"the server at {self.url} refused the request (HTTP {status}: {message}): {fix}."
        )

    def _probe(self) -> dict[str, Any] | None:
        """GET {base}/models: reachability, the API key, and the model's entry if listed."""
        httpx = self._httpx
        try:
            response = self._http.get("/models", timeout=_PROBE_TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status_code in (401, 403):
            raise self._auth_error(response.status_code, self._body_message(response))
        if response.status_code != 200:
            return None  # some servers do not list models; the first request will tell
        with contextlib.suppress(ValueError, AttributeError, TypeError, RecursionError):
            for entry in response.json().get("data") or []:
                if isinstance(entry, dict) and entry.get("id") == self.model:
                    return entry
        return None

    def _body_message(self, response: Any) -> str:
        text = ""
        with contextlib.suppress(Exception):
            text = response.read().decode("utf-8", "replace")
        message = text
        with contextlib.suppress(ValueError, AttributeError, TypeError, RecursionError):
            body = json.loads(text)
            err = body.get("error", body) if isinstance(body, dict) else body
            message = err.get("message", text) if isinstance(err, dict) else str(err)
        message = " ".join(message.split())
        if len(message) > 300:
            message = message[:300] + "..."
        return self._redact(message)

    def _body(self, request: Request) -> tuple[str, dict[str, Any], list[str]]:
        options = dict(request.options)
        body: dict[str, Any] = {"model": self.model, "stream": True}
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

    # -- streaming --------------------------------------------------------------------

    def stream(self, request: Request) -> Iterator[Event]:
        httpx = self._httpx
        path, body, ignored = self._body(request)
        timeout = httpx.Timeout(request.timeout_s, connect=min(request.timeout_s, _PROBE_TIMEOUT_S))
        received = 0
        retries = 0
        delays = backoff_delays(self.busy_retries, self.backoff_s)
        try:
            while True:
                with self._http.stream("POST", path, json=body, timeout=timeout) as response:
                    status = response.status_code
                    if status in _RETRY_STATUSES and retries < len(delays):
                        response.read()
                        self._sleep(delays[retries])
                        retries += 1
                        continue
                    if status != 200:
                        raise self._status_error(status, self._body_message(response), retries)
                    state = _StreamState()
                    chunk = TextChunk
                    redact = bool(self._redact_values)
                    # httpx's timeout is per read: a server that keeps the connection busy
                    # with lines that carry no text would otherwise hold the test for ever.
                    deadline = time.monotonic() + request.timeout_s
                    for line in response.iter_lines():
                        # Blank separators, "event:" and ": keep-alive" lines carry nothing.
                        if line.startswith("data:"):
                            payload = line[5:].strip()
                            if payload == "[DONE]":
                                state.done = True
                                break
                            text = state.feed(json.loads(payload))
                            if text:
                                received += 1
                                # A server that echoes the key into the answer must not
                                # put it in results and reports.
                                yield chunk(self._redact(text) if redact else text)
                                continue
                        if time.monotonic() > deadline:
                            raise self._idle_timeout(request.timeout_s, received)
                    if not state.done and state.finish_reason is None:
                        raise ServerError(
                            f"the stream from {self.url} ended after {received} chunks without a "
                            "finish_reason or [DONE] (connection closed early?): the partial "
                            "round was discarded."
                        )
                    yield self._report(state, ignored, retries)
                    return
        except InfrastructureError:
            raise
        except _StreamError as exc:
            raise ServerError(
                f"the server at {self.url} reported an error in the middle of the stream after "
                f"{received} chunks: {self._redact(str(exc))!r}: "
                + _discarded(received)
                + ". Check the server log."
            ) from None
        except Exception as exc:
            error = self._map_error(exc, received, request.timeout_s)
            if error is None:
                raise
            raise error from None

    def _idle_timeout(self, timeout_s: float, received: int) -> RequestTimeout:
        return RequestTimeout(
            f"no text from {self.url} within the {timeout_s:g} s request timeout (the server "
            f"kept sending lines without text, after {received} chunks): "
            f"{_discarded(received)}. Raise --tokrate-timeout, lower num_predict, or check the "
            "server's load."
        )

    def _status_error(self, status: int, message: str, retries: int) -> InfrastructureError:
        if status in (401, 403):
            return self._auth_error(status, message)
        if status == 404:
            return ModelNotOnServer(
                f"model {self.model!r} is not served at {self.url} (404: {message}): load it "
                f"on the server, or pick one listed by GET {self.url}/models."
            )
        if status in _RETRY_STATUSES:
            waited = sum(backoff_delays(retries, self.backoff_s))
            return ServerError(
                f"the server at {self.url} stayed busy (HTTP {status}: {message}) after "
                f"{retries} retries over {waited:.1f} s: the round was discarded. Send fewer "
                "concurrent requests or raise --tokrate-busy-retries."
            )
        return ServerError(
            f"the server at {self.url} answered HTTP {status}: {message!r}: the round was "
            "discarded. "
            + (
                "Check the model name and the generation options."
                if status in (400, 422)
                else "Check the server log."
            )
        )

    def _map_error(
        self, exc: Exception, received: int, timeout_s: float
    ) -> InfrastructureError | None:
        httpx = self._httpx
        discarded = _discarded(received)
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            return self._unreachable(exc)
        if isinstance(exc, httpx.TimeoutException):
            return RequestTimeout(
                f"no answer from {self.url} within the {timeout_s:g} s request timeout "
                f"({_reason(exc)}, after {received} chunks): {discarded}. Raise "
                "--tokrate-timeout, lower num_predict, or check the server's load."
            )
        if isinstance(exc, httpx.TransportError):
            return ServerError(
                f"the connection to {self.url} dropped after {received} chunks "
                f"({self._redact(_reason(exc))}): {discarded}. Check that the server is still "
                "running."
            )
        # RecursionError: a line nested 10^5 deep; OverflowError: a number too big to use.
        unreadable = (ValueError, TypeError, AttributeError, KeyError, IndexError)
        if isinstance(exc, (*unreadable, RecursionError, OverflowError)):
            what = exc.msg if isinstance(exc, json.JSONDecodeError) else _reason(exc)
            return ServerError(
                f"the server at {self.url} sent an event that is not a valid chat completion "
                f"chunk after {received} chunks ({self._redact(what)}): {discarded}. Is the "
                "address an OpenAI-compatible server?"
            )
        return None

    def _report(self, state: _StreamState, ignored: list[str], retries: int) -> EngineReport:
        usage, timings = state.usage or {}, state.timings or {}
        self._check_metrics(usage, timings)
        extra: dict[str, Any] = {}
        if ignored:
            extra["ignored_options"] = ignored
        if retries:
            extra["busy_retries"] = retries
        if state.fingerprint:
            with self._lock:
                self._fingerprint = self._redact(state.fingerprint)
        estimated = False
        prompt_cached = _count(_dig(usage, "prompt_tokens_details", "cached_tokens"))
        if timings and _count(timings.get("predicted_n")) is not None:
            source = "timings"
            output = _count(usage.get("completion_tokens"))
            decode_tokens = _count(timings.get("predicted_n"))
            processed = _count(timings.get("prompt_n"))
            cached = _count(timings.get("cache_n"))
            prompt = _count(usage.get("prompt_tokens"))
            if prompt is None and processed is not None:
                prompt = processed + (cached or 0)
            output = output if output is not None else decode_tokens
            decode_ns = _ns(timings.get("predicted_ms"))
            prefill_ns = _ns(timings.get("prompt_ms"))
            prompt_cached = cached if cached is not None else prompt_cached
        elif usage and _count(usage.get("completion_tokens")) is not None:
            source = "usage"
            output = decode_tokens = _count(usage.get("completion_tokens"))
            prompt = _count(usage.get("prompt_tokens"))
            processed = (
                prompt - prompt_cached if prompt is not None and prompt_cached is not None else None
            )
            decode_ns = prefill_ns = None
        else:
            from ..tokens import count_tokens

            output = decode_tokens = count_tokens(state.text())
            source = "tiktoken-estimate" if output is not None else "none"
            estimated = output is not None
            prompt = processed = decode_ns = prefill_ns = None
        extra["token_source"] = source
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
            extra=extra,
        )

    def _check_metrics(self, usage: Any, timings: Any) -> None:
        """Refuse counts and timers that cannot be true (wrong type, negative, not finite),
        instead of dropping them and silently measuring from another source."""
        for section, values in (("usage", usage), ("timings", timings)):
            if not isinstance(values, dict):
                raise self._bad_metric(f"{section}={values!r}", "not a JSON object")
            for key in _METRIC_KEYS[section]:
                value = values.get(key)
                if value is None:
                    continue
                shown = f"{section}.{key}={value!r}"
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise self._bad_metric(shown, "not a number")
                if not math.isfinite(value) or value < 0:
                    raise self._bad_metric(shown, "not a finite number >= 0")
        predicted_n = _count(timings.get("predicted_n"))
        if predicted_n is not None and predicted_n >= 2 and not _ns(timings.get("predicted_ms")):
            raise self._bad_metric(
                f"timings.predicted_n={predicted_n} with timings.predicted_ms="
                f"{timings.get('predicted_ms')!r}",
                "generated tokens take time, so the decode rate cannot be computed",
            )

    def _bad_metric(self, shown: str, why: str) -> ServerError:
        return ServerError(
            f"the server at {self.url} reported {self._redact(shown)}: {why}. The round was "
            "discarded, its figures cannot be trusted. Check the server's version and log; a "
            "proxy between pytest and the server may also rewrite the stream."
        )

    # -- metadata ---------------------------------------------------------------------

    def model_info(self) -> ModelInfo:
        entry = self._listing or {}
        raw_meta = entry.get("meta")
        meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        with self._lock:
            fingerprint = self._fingerprint
        return ModelInfo(
            name=self.model,
            backend=self.name,
            parameter_count=_count(meta.get("n_params")),
            context_length=_count(meta.get("n_ctx_train")),
            embedding_length=_count(meta.get("n_embd")),
            size_bytes=_count(meta.get("size")),
            server_version=fingerprint,
            engine_version=fingerprint,
            extra={
                "host": self.url,
                "owned_by": _redacted_str(self._redact, entry.get("owned_by")),
                "server_settings": dict(self.server_settings),
                "api_key_env": self.api_key_env,
            },
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._http.close()


class _StreamError(Exception):
    """An ``{"error": ...}`` event inside the stream."""


class _StreamState:
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
            raise _StreamError(err.get("message", err) if isinstance(err, dict) else err)
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

    def text(self) -> str:
        return "".join(self.parts)


def _dig(mapping: Mapping[str, Any], *keys: str) -> Any:
    value: Any = mapping
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return None
    return int(value) if math.isfinite(value) else None


def _ns(ms: object) -> int | None:
    if isinstance(ms, bool) or not isinstance(ms, (int, float)) or ms <= 0:
        return None
    return int(ms * 1e6) if math.isfinite(ms) else None


def _redacted_str(redact: Callable[[str], str], value: object) -> str | None:
    """A server-supplied label as text, with any secret taken out."""
    return None if value is None else redact(str(value))


def _discarded(received: int) -> str:
    if received:
        return f"the partial round ({received} chunks) was discarded"
    return "the round was discarded"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


__all__ = ["OpenAIBackend", "read_api_key"]
