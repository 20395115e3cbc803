"""Ollama, through the official ``ollama`` Python client (``pip install ollama``).

Every request is streamed (``/api/generate`` for a prompt, ``/api/chat`` for messages).
Each chunk with text becomes a :class:`~pytest_tokrate.measure.TextChunk`; the final
``done: true`` chunk carries the server's own counters (``eval_count``, ``eval_duration``,
``prompt_eval_count``, ``prompt_eval_duration``, ``load_duration``, ``total_duration``;
nanoseconds, and *absent* when zero), which become the
:class:`~pytest_tokrate.measure.EngineReport`. The runner stamps the chunks, so the client
figures (TTFT, TPOT, gaps) and the server figures come from the same round.

``prompt_eval_count`` is recorded as the server sends it: since Ollama 0.1.49 (and again
since 0.30.1) it includes prompt tokens served from the prefix cache, while
``prompt_eval_duration`` covers only the tokens actually processed. Measured rounds
therefore put a unique nonce line at the very start of the system prompt
(``cache_busting = "nonce-prefix"``) so that no earlier prefix matches.

Model metadata comes from ``/api/show`` (architecture, parameter count, quantization,
context and embedding length, family, format), ``/api/tags`` (digest, file size),
``/api/ps`` (how much of the loaded model sits in GPU memory) and ``/api/version``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
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
)
from ..hosts import resolve_ollama_host
from ..measure import EngineReport, TextChunk
from ..models import check_ollama_name
from .base import Event, ModelInfo, Request

#: Requests the client keeps in flight at once. Ollama queues what its slots cannot serve
#: (OLLAMA_MAX_QUEUE, default 512) and answers 503 beyond that.
MAX_PARALLEL = 512
DEFAULT_BUSY_RETRIES = 3
DEFAULT_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
METRIC_FIELDS = (
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)
_PROBE_TIMEOUT_S = 10.0


def _import_client() -> tuple[Any, Any]:
    try:
        import httpx
        import ollama
    except ImportError as exc:
        raise BackendUnavailable(
            f"the Ollama backend needs the `ollama` package ({exc}): install it with "
            '`pip install "pytest-tokrate[ollama]"`.'
        ) from None
    return ollama, httpx


def canonical_name(name: str) -> str:
    """The form Ollama lists a model under: lower case, default host/namespace dropped,
    ``:latest`` added when no tag is given (``llama3.2`` -> ``llama3.2:latest``)."""
    text = name.strip().lower()
    for prefix in ("registry.ollama.ai/", "library/"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    if ":" not in text.rsplit("/", 1)[-1]:
        text += ":latest"
    return text


def backoff_delays(retries: int, base_s: float) -> list[float]:
    """Waits before each retry of a busy server: base, 2*base, 4*base, ... capped."""
    return [min(base_s * 2**i, MAX_BACKOFF_S) for i in range(retries)]


class OllamaBackend:
    """Streams requests to an Ollama server; safe to use from many threads at once."""

    name = "ollama"
    max_parallel = MAX_PARALLEL
    cache_busting = "nonce-prefix"

    def __init__(
        self,
        model: str,
        host: str | None = None,
        *,
        server_settings: Mapping[str, object] | None = None,
        busy_retries: int = DEFAULT_BUSY_RETRIES,
        backoff_s: float = DEFAULT_BACKOFF_S,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        check_ollama_name(model)
        self.model = model
        self.host, self.host_source = resolve_ollama_host(host, environ)
        self.url = self.host.url
        self.server_settings = dict(sorted((server_settings or {}).items()))
        self.busy_retries = busy_retries
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._ollama, self._httpx = _import_client()
        self._lock = threading.Lock()
        self._clients: dict[float, Any] = {}
        self._static: dict[str, Any] | None = None
        self.server_version = self._probe()

    # -- plumbing ---------------------------------------------------------------------

    def _client(self, timeout_s: float) -> Any:
        """One official client per timeout value (its timeout is fixed at construction)."""
        key = float(timeout_s)
        client = self._clients.get(key)
        if client is None:
            with self._lock:
                client = self._clients.get(key)
                if client is None:
                    httpx = self._httpx
                    client = self._ollama.Client(
                        host=self.url,
                        timeout=httpx.Timeout(key, connect=min(key, _PROBE_TIMEOUT_S)),
                        limits=httpx.Limits(
                            max_connections=None, max_keepalive_connections=MAX_PARALLEL
                        ),
                    )
                    self._clients[key] = client
        return client

    def _unreachable(self, exc: BaseException) -> BackendUnavailable:
        reason = _reason(exc)
        where = "" if self.host_source == "--tokrate-host" else f", address from {self.host_source}"
        return BackendUnavailable(
            f"Ollama is not reachable at {self.url} ({reason}{where}): start it with "
            "`ollama serve`, or set --tokrate-host (or OLLAMA_HOST) to where it runs."
        )

    def _probe(self) -> str:
        """GET /api/version: proves the server is up and is Ollama; returns its version."""
        httpx = self._httpx
        try:
            response = self._client(_PROBE_TIMEOUT_S)._client.get("/api/version")
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
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
        retries = 0
        parts: Any = None
        try:
            delays = backoff_delays(self.busy_retries, self.backoff_s)
            while True:
                parts = call(**kwargs)
                try:
                    first = next(parts, None)
                except ollama.ResponseError as exc:
                    if exc.status_code == 503 and retries < len(delays):
                        self._sleep(delays[retries])
                        retries += 1
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
                    yield self._report(part, retries)
                    return
                text = part.message.content if chat else part.response
                if text:
                    received += 1
                    yield TextChunk(text)
                elif time.monotonic() > deadline:
                    partial = f"partial round ({received} chunks)" if received else "round"
                    raise RequestTimeout(
                        f"no text from Ollama at {self.url} within the {request.timeout_s:g} s "
                        "request timeout (the server kept sending chunks without text, after "
                        f"{received} chunks): the {partial} was discarded. Raise "
                        "--tokrate-timeout, lower num_predict, or check that the server is not "
                        "overloaded."
                    )
            raise ServerError(
                f"the stream from Ollama at {self.url} ended after {received} chunks without "
                "the final done:true chunk (connection closed early?): the partial round was "
                "discarded."
            )
        except InfrastructureError:
            raise
        except Exception as exc:
            error = self._map_error(exc, received, retries, request.timeout_s)
            if error is None:
                raise
            raise error from None
        finally:
            if parts is not None:
                with contextlib.suppress(Exception):
                    parts.close()

    def _map_error(
        self, exc: Exception, received: int, retries: int, timeout_s: float
    ) -> InfrastructureError | None:
        httpx = self._httpx
        discarded = (
            f"the partial round ({received} chunks) was discarded"
            if received
            else "the round was discarded"
        )
        if isinstance(exc, self._ollama.ResponseError):
            return self._status_error(exc, received, retries, discarded)
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, ConnectionError)):
            return self._unreachable(exc)
        if isinstance(exc, httpx.TimeoutException):
            return RequestTimeout(
                f"no answer from Ollama at {self.url} within the {timeout_s:g} s request "
                f"timeout ({_reason(exc)}, after {received} chunks): {discarded}. Raise "
                "--tokrate-timeout, lower num_predict, or check that the server is not "
                "overloaded."
            )
        if isinstance(exc, httpx.TransportError):
            return ServerError(
                f"the connection to Ollama at {self.url} dropped after {received} chunks "
                f"({_reason(exc)}): {discarded}. Check that the server is still running "
                "(did it crash or restart?)."
            )
        if isinstance(exc, json.JSONDecodeError):
            return ServerError(
                f"Ollama at {self.url} sent a line that is not JSON after {received} chunks "
                f"({exc.msg} at character {exc.pos}): {discarded}. Is the address an Ollama "
                "server (or a proxy that rewrites streams)?"
            )
        if isinstance(exc, (RecursionError, OverflowError)):  # e.g. a line nested 10^5 deep
            return ServerError(
                f"Ollama at {self.url} sent a line that cannot be decoded after {received} "
                f"chunks ({_reason(exc)}): {discarded}. Is the address an Ollama server (or a "
                "proxy that rewrites streams)?"
            )
        if type(exc).__name__ == "ValidationError":  # pydantic, raised by the client
            return ServerError(
                f"Ollama at {self.url} sent a chunk the client cannot read after {received} "
                f"chunks ({_validation_summary(exc)}): {discarded}. The server's version "
                f"({self.server_version}) may not match the `ollama` client's."
            )
        return None

    def _status_error(
        self, exc: Any, received: int, retries: int, discarded: str
    ) -> InfrastructureError:
        status, message = exc.status_code, str(exc.error).strip()
        if status == 404:
            return ModelNotOnServer(
                f"model {self.model!r} is not on the Ollama server at {self.url} "
                f"(404: {message}): run `ollama pull {self.model}` there, or check the name "
                "with `ollama list`."
            )
        if status == 503:
            waited = sum(backoff_delays(retries, self.backoff_s))
            return ServerError(
                f"Ollama at {self.url} stayed busy (503: {message}) after {retries} retries "
                f"over {waited:.1f} s: {discarded}. Send fewer concurrent requests, raise "
                "OLLAMA_MAX_QUEUE on the server, or raise --tokrate-busy-retries."
            )
        if status == -1:
            return ServerError(
                f"Ollama at {self.url} reported an error in the middle of the stream after "
                f"{received} chunks: {message!r}: {discarded}. Check the server log "
                "(`ollama serve` output or `journalctl -u ollama`)."
            )
        return ServerError(
            f"Ollama at {self.url} answered HTTP {status}: {message!r}: {discarded}. "
            + (
                f"Check the model name {self.model!r} and the generation options."
                if status == 400
                else "Check the server log (`ollama serve` output or `journalctl -u ollama`)."
            )
        )

    def _report(self, part: Any, retries: int) -> EngineReport:
        metrics = {name: getattr(part, name, None) for name in METRIC_FIELDS}
        for name, value in metrics.items():
            if value is not None and value < 0:
                raise ServerError(
                    f"Ollama at {self.url} reported {name}={value}, a negative value: the "
                    "round was discarded. The server's metrics are corrupt; check its version."
                )
        eval_count = metrics["eval_count"] or 0  # absent means zero (omitempty)
        if eval_count >= 2 and not metrics["eval_duration"]:
            # Ollama times every decode step; without the timer the engine rate would
            # silently become the client's, a different figure than the baseline's.
            raise ServerError(
                f"Ollama at {self.url} reported eval_count={eval_count} with no eval_duration "
                "(absent or 0): the engine's decode rate cannot be computed and the round was "
                "discarded. The server's metrics are corrupt; check its version."
            )
        extra: dict[str, Any] = {
            "server_metrics": {k: v for k, v in metrics.items() if v is not None}
        }
        if retries:
            extra["busy_retries"] = retries
        return EngineReport(
            output_tokens=eval_count,
            prompt_tokens=metrics["prompt_eval_count"] or 0,
            decode_tokens=eval_count,
            decode_ns=metrics["eval_duration"] or None,
            prefill_ns=metrics["prompt_eval_duration"] or None,
            load_ns=metrics["load_duration"] or 0,
            total_ns=metrics["total_duration"],
            done_reason=part.done_reason,
            extra=extra,
        )

    # -- metadata ---------------------------------------------------------------------

    def _management(self, what: str, fetch: Callable[[Any], Any]) -> Any:
        try:
            return fetch(self._client(30.0))
        except self._ollama.ResponseError as exc:
            if exc.status_code == 404 and what == "show":
                raise ModelNotOnServer(
                    f"model {self.model!r} is not on the Ollama server at {self.url} "
                    f"(404: {exc.error}): run `ollama pull {self.model}` there, or check the "
                    "name with `ollama list`."
                ) from None
            raise ServerError(
                f"Ollama at {self.url} answered HTTP {exc.status_code} to /api/{what}: "
                f"{exc.error!r}. Check the server log."
            ) from None
        except (self._httpx.HTTPError, ConnectionError) as exc:
            raise self._unreachable(exc) from None
        except (ValueError, TypeError, RecursionError) as exc:  # not JSON, wrong field types
            raise ServerError(
                f"Ollama at {self.url} answered /api/{what} with a body the client cannot read "
                f"({_validation_summary(exc)}): check --tokrate-host, and that the server's "
                f"version ({self.server_version}) matches the `ollama` client's."
            ) from None

    def _fetch_static(self) -> dict[str, Any]:
        show = self._management("show", lambda c: c.show(self.model))
        wanted = canonical_name(self.model)
        tag = None
        with contextlib.suppress(InfrastructureError):
            listing = self._management("tags", lambda c: c.list())
            tag = next((m for m in listing.models if canonical_name(m.model or "") == wanted), None)
        return {"show": show, "tag": tag}

    def _fetch_ps(self) -> Any:
        wanted = canonical_name(self.model)
        try:
            running = self._management("ps", lambda c: c.ps())
        except InfrastructureError:
            return None
        return next(
            (m for m in running.models if canonical_name(m.model or m.name or "") == wanted),
            None,
        )

    def model_info(self) -> ModelInfo:
        with self._lock:
            static = self._static
        if static is None:
            static = self._fetch_static()
            with self._lock:
                self._static = static
        return self._build_info(static["show"], static["tag"], self._fetch_ps())

    def _build_info(self, show: Any, tag: Any, ps: Any) -> ModelInfo:
        info: Mapping[str, Any] = show.modelinfo or {}
        details = show.details
        arch = info.get("general.architecture")
        size = _int(getattr(tag, "size", None))
        loaded_size = _int(getattr(ps, "size", None))
        vram = _int(getattr(ps, "size_vram", None))
        extra: dict[str, Any] = {
            "host": self.url,
            "client": f"ollama-python {_client_version()}",
            "capabilities": list(show.capabilities or []),
            "families": list(getattr(details, "families", None) or []),
            "loaded": ps is not None,
            "loaded_size_bytes": loaded_size,
            "loaded_context_length": _int(getattr(ps, "context_length", None)),
            "gpu_fraction": round(vram / loaded_size, 4)
            if vram is not None and loaded_size
            else None,
            "server_settings": dict(self.server_settings),
        }
        return ModelInfo(
            name=self.model,
            backend=self.name,
            architecture=arch,
            parameter_count=_int(info.get("general.parameter_count")),
            parameter_size=getattr(details, "parameter_size", None),
            quantization=getattr(details, "quantization_level", None),
            context_length=_int(info.get(f"{arch}.context_length")),
            embedding_length=_int(info.get(f"{arch}.embedding_length")),
            family=getattr(details, "family", None),
            format=getattr(details, "format", None),
            digest=getattr(tag, "digest", None),
            engine_version=f"ollama {self.server_version}",
            server_version=self.server_version,
            size_bytes=size,
            size_vram_bytes=vram,
            extra=extra,
        )

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()


def _client_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ollama")
    except PackageNotFoundError:  # pragma: no cover - vendored copies
        return "unknown"


def _int(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError, OverflowError):  # OverflowError: a server's infinity
        return None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def _validation_summary(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc).splitlines()[0]
    parts = []
    for err in errors()[:3]:
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg')}, got {err.get('input')!r}")
    return "; ".join(parts)


__all__ = ["MAX_PARALLEL", "OllamaBackend", "backoff_delays", "canonical_name"]
