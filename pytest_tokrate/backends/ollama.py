"""Ollama, through the official ``ollama`` Python client (``pip install ollama``).

Every request is streamed (``/api/generate`` for a prompt, ``/api/chat`` for messages).
Each chunk with text becomes a :class:`~pytest_tokrate.core.measure.TextChunk`; the final
``done: true`` chunk carries the server's own counters, which become the
:class:`~pytest_tokrate.core.measure.EngineReport` (read in :mod:`.ollama_facts`). The
runner stamps the chunks, so the client figures (TTFT, TPOT, gaps) and the server figures
come from the same round.

``prompt_eval_count`` is recorded as the server sends it: since Ollama 0.1.49 (and again
since 0.30.1) it includes prompt tokens served from the prefix cache, while
``prompt_eval_duration`` covers only the tokens actually processed. Measured rounds
therefore send the exact prompt after an untimed eviction request, checked per round
from ``prompt_eval_cached_count`` (:mod:`.ollama_cache`); ``--tokrate-cache=nonce`` puts
a unique line before the system prompt instead.

Model metadata comes from ``/api/show``, ``/api/tags`` and ``/api/ps`` (see
:mod:`.ollama_facts`); the server's version from ``/api/version``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pytest_tokrate.backends.base import Event, ModelInfo, Request
from pytest_tokrate.backends.hosts import resolve_ollama_host
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
from pytest_tokrate.backends.models import check_ollama_name
from pytest_tokrate.backends.ollama_cache import (
    ALLOWANCE,
    Evictor,
    cached_count,
    keeping_extra_fields,
)
from pytest_tokrate.backends.ollama_facts import (
    engine_report,
    find_listed,
    model_info,
    validation_summary,
)
from pytest_tokrate.core.measure import TextChunk
from pytest_tokrate.errors import (
    BackendUnavailable,
    InfrastructureError,
    ModelNotOnServer,
    RequestTimeout,
    ServerError,
)

if TYPE_CHECKING:
    from typing import Unpack  # Python 3.11+; annotations are never evaluated at run time


class OllamaBackend(ServerBackend):
    """Streams requests to an Ollama server; safe to use from many threads at once."""

    name = "ollama"
    cache_allowance = ALLOWANCE

    def __init__(
        self,
        model: str,
        host: str | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        **options: Unpack[ServerOptions],
    ) -> None:
        check_ollama_name(model)
        self.host, self.host_source = resolve_ollama_host(host, environ)
        super().__init__(model, (self.host, self.host_source), **options)
        self._httpx, self._ollama = import_client(
            "httpx",
            "ollama",
            backend="Ollama backend",
            package="the `ollama` package",
            extra="ollama",
        )
        self._lock = threading.Lock()
        self._client_class = keeping_extra_fields(self._ollama)
        self._clients: dict[float, Any] = {}
        self._static: dict[str, Any] | None = None
        self._check = f"curl {self.url}/api/version"  # shows whether the server answers
        self.server_version = self._probe()
        self._evictor = Evictor(lambda **kw: self._client(PROBE_TIMEOUT_S * 6).generate(**kw))

    @property
    def cache_busting(self) -> str:  # type: ignore[override]  # a class attribute in the base
        """The eviction step this backend ended with (see :mod:`.ollama_cache`)."""
        return self._evictor.method

    def prepare_round(self, request: Request) -> None:
        """Untimed, before a measured round: evict the prompt from the server's cache."""
        if not request.bust_cache or request.cache_nonce is not None:
            return
        options = dict(request.options)
        keep_alive = options.pop("keep_alive", None)
        try:
            self._evictor.before_round(self.model, options, keep_alive)
        except InfrastructureError:
            raise
        except Exception as exc:
            error = self._map_error(exc, 0, self._busy_retry(), PROBE_TIMEOUT_S * 6)
            if error is None:
                raise
            raise error from None

    # -- plumbing ---------------------------------------------------------------------

    def _client(self, timeout_s: float) -> Any:
        """One official client per timeout value (its timeout is fixed at construction)."""
        key = float(timeout_s)
        client = self._clients.get(key)
        if client is None:
            with self._lock:
                client = self._clients.get(key)
                if client is None:
                    client = self._client_class(
                        host=self.url,
                        timeout=request_timeout(self._httpx, key),
                        limits=connection_limits(self._httpx),
                    )
                    self._clients[key] = client
        return client

    def _unreachable(self, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(
            f"Ollama is not reachable at {self.url} ({reason(exc)}{self._address_note()}): "
            "start it with `ollama serve`, or set --tokrate-host (or OLLAMA_HOST) to where it "
            "runs."
        )

    def _probe(self) -> str:
        """GET /api/version: proves the server is up and is Ollama; returns its version."""
        httpx = self._httpx
        try:
            response = self._client(self.probe_timeout_s)._client.get("/api/version")
        except httpx.HTTPError as exc:
            raise (self._silence(httpx, exc, self._check) or self._unreachable(exc)) from None
        version = None
        if response.status_code == 200:
            with contextlib.suppress(ValueError, AttributeError, RecursionError):
                version = response.json().get("version")
        if not isinstance(version, str):
            raise BackendUnavailable(
                f"the server at {self.url} answers, but not like Ollama (GET /api/version gave "
                f"HTTP {response.status_code}): check --tokrate-host, or use "
                "--tokrate-backend=openai for an OpenAI-compatible server."
            )
        return version

    def _call(self, client: Any, request: Request) -> tuple[Callable[..., Any], dict[str, Any]]:
        options = dict(request.options)
        keep_alive = options.pop("keep_alive", None)
        kwargs: dict[str, Any] = {
            "model": self.model,
            "stream": True,
            "options": options or None,
            "format": request.format or None,
            "keep_alive": keep_alive,
        }
        if request.messages is not None:
            kwargs["messages"] = request.chat_messages(apply_nonce=True)
            return client.chat, kwargs
        prompt = request.prompt or ""
        if request.raw:
            # No template in raw mode, so no system slot: the nonce leads the prompt.
            nonce = request.system_with_nonce(apply_nonce=True)
            kwargs.update(prompt=f"{nonce}\n{prompt}" if nonce else prompt, raw=True)
        else:
            kwargs.update(prompt=prompt, system=request.system_with_nonce(apply_nonce=True))
        return client.generate, kwargs

    # -- streaming --------------------------------------------------------------------

    def stream(self, request: Request) -> Iterator[Event]:
        client = self._client(request.timeout_s)
        call, kwargs = self._call(client, request)
        chat = "messages" in kwargs
        ollama = self._ollama
        received = 0
        retry = self._busy_retry()
        parts: Any = None
        try:
            while True:
                parts = call(**kwargs)
                try:
                    first = next(parts, None)
                except ollama.ResponseError as exc:
                    if exc.status_code == 503 and retry.left():
                        retry.wait()
                        continue
                    raise
                break
            if first is None:
                raise ServerError(
                    f"Ollama at {self.url} answered with an empty stream: the round was "
                    "discarded; check the server log."
                )
            # httpx's timeout is per read: chunks without text (a stuck or looping server)
            # would otherwise hold the test for ever.
            deadline = time.monotonic() + request.timeout_s
            for part in itertools.chain((first,), parts):
                if part.done:
                    cached = cached_count(part)
                    if request.bust_cache and request.cache_nonce is None:
                        self._evictor.after_round(cached)
                    yield engine_report(part, retry.count, self.url, cached)
                    return
                text = part.message.content if chat else part.response
                if text:
                    received += 1
                    yield TextChunk(text)
                elif time.monotonic() > deadline:
                    raise self._idle_timeout(request.timeout_s, received)
            raise ServerError(
                f"the stream from Ollama at {self.url} ended after {received} chunks without "
                "the final done:true chunk (connection closed early?): the partial round was "
                "discarded."
            )
        except InfrastructureError:
            raise
        except Exception as exc:
            error = self._map_error(exc, received, retry, request.timeout_s)
            if error is None:
                raise
            raise error from None
        finally:
            if parts is not None:
                with contextlib.suppress(Exception):
                    parts.close()

    def _idle_timeout(self, timeout_s: float, received: int) -> RequestTimeout:
        return RequestTimeout(
            f"no text from Ollama at {self.url} within the {timeout_s:g} s request timeout "
            f"(the server kept sending chunks without text, after {received} chunks): "
            f"{discarded(received)}. Raise --tokrate-timeout, lower num_predict, or check "
            "that the server is not overloaded."
        )

    def _map_error(
        self, exc: Exception, received: int, retry: BusyRetry, timeout_s: float
    ) -> InfrastructureError | None:
        httpx = self._httpx
        lost = discarded(received)
        if isinstance(exc, self._ollama.ResponseError):
            return self._status_error(exc, received, retry, lost)
        if isinstance(exc, (httpx.ConnectError, ConnectionError)):
            return self._unreachable(exc)
        if isinstance(exc, httpx.ConnectTimeout):
            return self._silence(httpx, exc, self._check, (timeout_s, "--tokrate-timeout"))
        if isinstance(exc, httpx.TimeoutException):
            return RequestTimeout(
                f"no answer from Ollama at {self.url} within the {timeout_s:g} s request "
                f"timeout ({reason(exc)}, after {received} chunks): {lost}. Raise "
                "--tokrate-timeout, lower num_predict, or check that the server is not "
                f"frozen or overloaded (`{self._check}`)."
            )
        if isinstance(exc, httpx.TransportError):
            return ServerError(
                f"the connection to Ollama at {self.url} dropped after {received} chunks "
                f"({reason(exc)}): {lost}. Check that the server is still running "
                "(did it crash or restart?)."
            )
        if isinstance(exc, json.JSONDecodeError):
            return ServerError(
                f"Ollama at {self.url} sent a line that is not JSON after {received} chunks "
                f"({exc.msg} at character {exc.pos}): {lost}. Is the address an Ollama "
                "server (or a proxy that rewrites streams)?"
            )
        if isinstance(exc, (RecursionError, OverflowError)):  # e.g. a line nested 10^5 deep
            return ServerError(
                f"Ollama at {self.url} sent a line that cannot be decoded after {received} "
                f"chunks ({reason(exc)}): {lost}. Is the address an Ollama server (or a "
                "proxy that rewrites streams)?"
            )
        # pydantic's ValidationError (a ValueError) from the client; AttributeError and
        # TypeError: a line that is JSON but no object ("NaN", a list), read as one.
        if isinstance(exc, (ValueError, AttributeError, TypeError, KeyError)):
            return ServerError(
                f"Ollama at {self.url} sent a chunk the client cannot read after {received} "
                f"chunks ({validation_summary(exc)}): {lost}. The server's version "
                f"({self.server_version}) may not match the `ollama` client's."
            )
        return None

    def _status_error(
        self, exc: Any, received: int, retry: BusyRetry, lost: str
    ) -> InfrastructureError:
        status, message = exc.status_code, str(exc.error).strip()
        if status == 404:
            return self._not_on_server(message)
        if status == 503:
            return ServerError(
                f"Ollama at {self.url} stayed busy (503: {message}) {retry.spent()}: {lost}. "
                "Send fewer concurrent requests, raise OLLAMA_MAX_QUEUE on the server, or raise "
                "--tokrate-busy-retries."
            )
        if status == -1:
            return ServerError(
                f"Ollama at {self.url} reported an error in the middle of the stream after "
                f"{received} chunks: {message!r}: {lost}. Check the server log "
                "(`ollama serve` output or `journalctl -u ollama`)."
            )
        return ServerError(
            f"Ollama at {self.url} answered HTTP {status}: {message!r}: {lost}. "
            + (
                f"Check the model name {self.model!r} and the generation options."
                if status == 400
                else "Check the server log (`ollama serve` output or `journalctl -u ollama`)."
            )
        )

    def _not_on_server(self, message: object) -> ModelNotOnServer:
        return ModelNotOnServer(
            f"model {self.model!r} is not on the Ollama server at {self.url} "
            f"(404: {message}): run `ollama pull {self.model}` there, or check the name "
            "with `ollama list`."
        )

    # -- metadata ---------------------------------------------------------------------

    def _management(self, what: str, fetch: Callable[[Any], Any]) -> Any:
        try:
            return fetch(self._client(30.0))  # /api/show reads the model's file
        except self._ollama.ResponseError as exc:
            if exc.status_code == 404 and what == "show":
                raise self._not_on_server(exc.error) from None
            raise ServerError(
                f"Ollama at {self.url} answered HTTP {exc.status_code} to /api/{what}: "
                f"{exc.error!r}. Check the server log."
            ) from None
        except (self._httpx.HTTPError, ConnectionError) as exc:
            waited = (30.0, "the limit of the model-facts requests")
            silent = self._silence(self._httpx, exc, self._check, waited)
            raise (silent or self._unreachable(exc)) from None
        except (ValueError, TypeError, RecursionError) as exc:  # not JSON, wrong field types
            raise ServerError(
                f"Ollama at {self.url} answered /api/{what} with a body the client cannot read "
                f"({validation_summary(exc)}): check --tokrate-host, and that the server's "
                f"version ({self.server_version}) matches the `ollama` client's."
            ) from None

    def _fetch_static(self) -> dict[str, Any]:
        show = self._management("show", lambda c: c.show(self.model))
        tag = None
        with contextlib.suppress(InfrastructureError):
            tag = find_listed(self._management("tags", lambda c: c.list()).models, self.model)
        return {"show": show, "tag": tag}

    def _fetch_ps(self) -> Any:
        try:
            running = self._management("ps", lambda c: c.ps())
        except InfrastructureError:
            return None
        return find_listed(running.models, self.model)

    def model_info(self) -> ModelInfo:
        with self._lock:
            static = self._static
        if static is None:
            static = self._fetch_static()
            with self._lock:
                self._static = static
        return model_info(
            static["show"],
            static["tag"],
            self._fetch_ps(),
            model=self.model,
            backend=self.name,
            url=self.url,
            server_version=self.server_version,
            server_settings=self.server_settings,
        )

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()


__all__ = ["OllamaBackend"]
