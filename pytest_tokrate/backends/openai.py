"""OpenAI-compatible servers: llama.cpp ``llama-server``, vLLM, LM Studio, hosted APIs.

Requests go to ``POST {base}/chat/completions`` (``/completions`` for ``raw=True``) with
``stream: true`` and ``stream_options: {"include_usage": true}``, over httpx. Token counts
and timings are taken from the best source the server offers (:mod:`.openai_wire`).

Measured rounds send the exact text and defeat the prompt cache the server's own way where
it has one (``cache_busting`` says which, :mod:`.openai_cache` how and why).

The API key is read from the environment variable named by ``--tokrate-api-key-env``. It
is sent as ``Authorization: Bearer ...`` and never stored: it does not appear in results,
reports, baselines or error messages (server messages that echo it are redacted).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pytest_tokrate.backends.base import Event, ModelInfo, Request
from pytest_tokrate.backends.hosts import resolve_openai_base
from pytest_tokrate.backends.http import (
    PROBE_TIMEOUT_S,
    BusyRetry,
    ServerBackend,
    ServerOptions,
    connection_limits,
    discarded,
    import_client,
    reason,
    request_timeout,
)
from pytest_tokrate.backends.openai_cache import (
    NO_METHOD,
    cache_fields,
    cache_method,
    refused_salt,
)
from pytest_tokrate.backends.openai_facts import (
    FACTS_PATHS,
    LLAMACPP,
    VLLM,
    ServerFacts,
    listed_model,
    model_info,
    server_facts,
    server_kind,
)
from pytest_tokrate.backends.openai_wire import (
    StreamError,
    StreamState,
    engine_report,
    metric_problem,
    read_api_key,
    request_body,
)
from pytest_tokrate.core.measure import EngineReport, TextChunk
from pytest_tokrate.errors import (
    BackendUnavailable,
    InfrastructureError,
    ModelNotOnServer,
    RequestTimeout,
    ServerError,
    UsageError,
)

if TYPE_CHECKING:
    from typing import Unpack  # Python 3.11+; annotations are never evaluated at run time

_RETRY_STATUSES = (429, 503)
_VERSION_SEGMENT = re.compile(r"/v\d+$")


class OpenAIBackend(ServerBackend):
    """Streams chat completions from an OpenAI-compatible server; thread-safe."""

    name = "openai"

    def __init__(
        self,
        model: str,
        host: str | None = None,
        api_key_env: str | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        **options: Unpack[ServerOptions],
    ) -> None:
        if not model or not model.strip():
            raise UsageError("model name is empty: pass --tokrate-model=NAME.")
        self.base, self.base_source = resolve_openai_base(host, environ)
        super().__init__(model, (self.base, self.base_source), **options)
        self.api_key_env = api_key_env.strip() if api_key_env else None
        key = read_api_key(api_key_env, environ)
        self._redact_values = [key] if key else []
        (httpx,) = import_client(
            "httpx", backend="OpenAI-compatible backend", package="httpx", extra="openai"
        )
        self._httpx = httpx
        headers = {"Accept": "text/event-stream, application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=request_timeout(httpx, 120.0),
            limits=connection_limits(httpx),
            follow_redirects=True,
        )
        self._lock = threading.Lock()
        self._fingerprint: str | None = None
        self._facts_lock = threading.Lock()  # not self._lock: streams must not wait on it
        self._facts: ServerFacts | None = None
        self._check = f"curl {self.url}/models"  # shows whether the server answers
        self._listing = self._probe()
        self._kind = server_kind(self._listing)
        version = self._server_facts().server_version if self._kind == VLLM else None
        # Decided now (the sweep reads it before its rounds); see _report for the rest.
        self.cache_busting, self._cache_note = cache_method(self._kind, version)
        # Load the tiktoken yardstick now: a server that reports no counts makes us count
        # the answer before the final event, which the runner stamps. (Without tiktoken,
        # the warning waits until an estimate is actually needed.)
        if importlib.util.find_spec("tiktoken") is not None:
            from pytest_tokrate.core.tokens import encoding

            encoding()

    # -- plumbing ---------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        for value in self._redact_values:
            text = text.replace(value, "[redacted]")
        return text

    def _unreachable(self, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(
            f"the OpenAI-compatible server at {self.url} is not reachable "
            f"({self._redact(reason(exc))}{self._address_note()}): start it (e.g. "
            "`llama-server -m model.gguf`) or set --tokrate-host to its base URL."
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
            response = self._http.get(
                "/models", timeout=request_timeout(httpx, self.probe_timeout_s)
            )
        except httpx.HTTPError as exc:
            raise (self._silence(httpx, exc, self._check) or self._unreachable(exc)) from None
        if response.status_code in (401, 403):
            raise self._auth_error(response.status_code, self._body_message(response))
        if response.status_code != 200:
            return None  # some servers do not list models; the first request will tell
        with contextlib.suppress(ValueError, RecursionError):
            return listed_model(response.json(), self.model)
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

    # -- streaming --------------------------------------------------------------------

    def stream(self, request: Request) -> Iterator[Event]:
        path, body, ignored = request_body(self.model, request)
        body.update(cache_fields(self.cache_busting, request))
        timeout = request_timeout(self._httpx, request.timeout_s)
        # Retries happen only before the first event is read, so one state serves them all.
        state = StreamState()
        retry = self._busy_retry()
        try:
            while True:
                with self._http.stream("POST", path, json=body, timeout=timeout) as response:
                    status = response.status_code
                    if status in _RETRY_STATUSES and retry.left():
                        response.read()
                        retry.wait()
                        continue
                    if status != 200:
                        message = self._body_message(response)
                        note = refused_salt(body, message) if status in (400, 422) else None
                        if note:  # vLLM 0.9 on its V0 engine: send the rounds unsalted
                            self.cache_busting, self._cache_note = NO_METHOD, note
                            continue
                        raise self._status_error(status, message, retry)
                    yield from self._chunks(response, state, request.timeout_s)
                    if not state.done and state.finish_reason is None:
                        raise ServerError(
                            f"the stream from {self.url} ended after {state.received} chunks "
                            "without a finish_reason or [DONE] (connection closed early?): the "
                            "partial round was discarded."
                        )
                    yield self._report(state, ignored, retry.count)
                    return
        except InfrastructureError:
            raise
        except StreamError as exc:
            raise ServerError(
                f"the server at {self.url} reported an error in the middle of the stream after "
                f"{state.received} chunks: {self._redact(str(exc))!r}: "
                + discarded(state.received)
                + ". Check the server log."
            ) from None
        except Exception as exc:
            error = self._map_error(exc, state.received, request.timeout_s)
            if error is None:
                raise
            raise error from None

    def _chunks(self, response: Any, state: StreamState, timeout_s: float) -> Iterator[TextChunk]:
        """The text of the events on ``response``, until ``[DONE]`` or the stream's end."""
        chunk = TextChunk
        redact = bool(self._redact_values)
        # httpx's timeout is per read: a server that keeps the connection busy with lines
        # that carry no text would otherwise hold the test for ever.
        deadline = time.monotonic() + timeout_s
        for line in response.iter_lines():
            # Blank separators, "event:" and ": keep-alive" lines carry nothing.
            if line.startswith("data:"):
                payload = line[5:].strip()
                if payload == "[DONE]":
                    state.done = True
                    return
                text = state.feed(json.loads(payload))
                if text:
                    # A server that echoes the key into the answer must not put it in
                    # results and reports.
                    yield chunk(self._redact(text) if redact else text)
                    continue
            if time.monotonic() > deadline:
                raise self._idle_timeout(timeout_s, state.received)

    def _idle_timeout(self, timeout_s: float, received: int) -> RequestTimeout:
        return RequestTimeout(
            f"no text from {self.url} within the {timeout_s:g} s request timeout (the server "
            f"kept sending lines without text, after {received} chunks): "
            f"{discarded(received)}. Raise --tokrate-timeout, lower num_predict, or check the "
            "server's load."
        )

    def _status_error(self, status: int, message: str, retry: BusyRetry) -> InfrastructureError:
        if status in (401, 403):
            return self._auth_error(status, message)
        if status == 404:
            return ModelNotOnServer(
                f"model {self.model!r} is not served at {self.url} (404: {message}): load it "
                f"on the server, or pick one listed by GET {self.url}/models."
            )
        if status in _RETRY_STATUSES:
            return ServerError(
                f"the server at {self.url} stayed busy (HTTP {status}: {message}) "
                f"{retry.spent()}: the round was discarded. Send fewer concurrent requests or "
                "raise --tokrate-busy-retries."
            )
        fix = "the model name and the generation options" if status in (400, 422) else None
        return ServerError(
            f"the server at {self.url} answered HTTP {status}: {message!r}: the round was "
            f"discarded. Check {fix or 'the server log'}."
        )

    def _map_error(
        self, exc: Exception, received: int, timeout_s: float
    ) -> InfrastructureError | None:
        httpx = self._httpx
        lost = discarded(received)
        if isinstance(exc, httpx.ConnectError):
            return self._unreachable(exc)
        if isinstance(exc, httpx.ConnectTimeout):
            return self._silence(httpx, exc, self._check, (timeout_s, "--tokrate-timeout"))
        if isinstance(exc, httpx.TimeoutException):
            return RequestTimeout(
                f"no answer from {self.url} within the {timeout_s:g} s request timeout "
                f"({reason(exc)}, after {received} chunks): {lost}. Raise --tokrate-timeout, "
                f"lower num_predict, or check that the server is not frozen (`{self._check}`)."
            )
        if isinstance(exc, httpx.TransportError):
            return ServerError(
                f"the connection to {self.url} dropped after {received} chunks "
                f"({self._redact(reason(exc))}): {lost}. Check that the server is still "
                "running."
            )
        # RecursionError: a line nested 10^5 deep; OverflowError: a number too big to use.
        unreadable = (ValueError, TypeError, AttributeError, KeyError, IndexError)
        if isinstance(exc, (*unreadable, RecursionError, OverflowError)):
            what = exc.msg if isinstance(exc, json.JSONDecodeError) else reason(exc)
            return ServerError(
                f"the server at {self.url} sent an event that is not a valid chat completion "
                f"chunk after {received} chunks ({self._redact(what)}): {lost}. Is the "
                "address an OpenAI-compatible server?"
            )
        return None

    def _report(self, state: StreamState, ignored: list[str], retries: int) -> EngineReport:
        problem = metric_problem(state.usage or {}, state.timings or {})
        if problem is not None:
            raise self._bad_metric(*problem)
        extra: dict[str, Any] = {}
        if ignored:
            extra["ignored_options"] = ignored
        if retries:
            extra["busy_retries"] = retries
        if state.fingerprint:
            with self._lock:
                self._fingerprint = self._redact(state.fingerprint)
        if state.timings and self._kind is None:  # only llama.cpp streams timings
            self._kind = LLAMACPP
            self.cache_busting, self._cache_note = cache_method(LLAMACPP, None)
        return engine_report(state, extra)

    def _bad_metric(self, shown: str, why: str) -> ServerError:
        return ServerError(
            f"the server at {self.url} reported {self._redact(shown)}: {why}. The round was "
            "discarded, its figures cannot be trusted. Check the server's version and log; a "
            "proxy between pytest and the server may also rewrite the stream."
        )

    # -- metadata ---------------------------------------------------------------------

    def _server_facts(self) -> ServerFacts:
        """The model's facts, read once: the listing's entry and the one request its server
        kind answers with more (``/props``, ``/version``); none for other servers."""
        with self._facts_lock:
            if self._facts is None:
                key, path = FACTS_PATHS.get(server_kind(self._listing) or "", ("", ""))
                answer = self._get_json(path, {"model": self.model}) if path else None
                self._facts = server_facts(self._listing, {key: answer})
            return self._facts

    def _get_json(self, path: str, params: dict[str, str]) -> Any:
        """GET a path at the server's root (``/props`` lies beside ``/v1``, not under it);
        ``None`` when it fails in any way: missing facts never fail a test."""
        url = _VERSION_SEGMENT.sub("", self.url) + path
        with contextlib.suppress(self._httpx.HTTPError, ValueError, RecursionError):
            # A llama.cpp router answers /props for the model named; others ignore ?model=.
            response = self._http.get(url, params=params, timeout=PROBE_TIMEOUT_S)
            if response.status_code == 200:
                return response.json()
        return None

    def model_info(self) -> ModelInfo:
        owner = (self._listing or {}).get("owned_by")
        with self._lock:
            fingerprint = self._fingerprint
        extra = {
            "host": self.url,
            "owned_by": None if owner is None else self._redact(str(owner)),
            "server_settings": dict(self.server_settings),
            "api_key_env": self.api_key_env,
            "prompt_cache_note": self._cache_note,
        }
        facts = self._server_facts()
        return model_info(self.model, self.name, facts, fingerprint, extra, self._redact)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._http.close()


__all__ = ["OpenAIBackend", "read_api_key"]
