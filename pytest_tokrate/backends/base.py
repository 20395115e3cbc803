"""The one interface every backend implements.

A backend turns a :class:`Request` into a stream of events: zero or more
:class:`~pytest_tokrate.core.measure.TextChunk` followed by exactly one
:class:`~pytest_tokrate.core.measure.EngineReport`. It does not time anything: the runner
stamps each event as it is yielded, so every backend is measured by the same clock.
The request is sent when the iterator is first advanced.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pytest_tokrate.core.measure import EngineReport, TextChunk

Event = TextChunk | EngineReport


@dataclass(frozen=True)
class Message:
    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Request:
    """One generation request, already resolved from options, marker and call arguments.

    Exactly one of ``prompt`` and ``messages`` is set. ``options`` holds Ollama-style
    generation options (``num_predict``, ``num_ctx``, ``num_thread``, ``temperature``,
    ``seed``, ``stop``, ...); each backend maps them onto its engine.
    """

    prompt: str | None = None
    messages: tuple[Message, ...] | None = None
    system: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    format: str | dict[str, Any] | None = None
    timeout_s: float = 120.0
    #: Set by the runner for measured rounds when the prompt cache must be defeated; the
    #: backend does so without changing the text (``Backend.cache_busting`` names how).
    bust_cache: bool = False
    #: Set only with ``--tokrate-cache=nonce``: the line put before the system prompt.
    cache_nonce: str | None = None
    raw: bool = False

    def system_with_nonce(self, apply_nonce: bool) -> str | None:
        """The system prompt, with the cache nonce line in front when asked to."""
        system = self.system
        if self.messages and self.messages[0].role == "system" and system is None:
            system = self.messages[0].content
        if apply_nonce and self.bust_cache and self.cache_nonce is not None:
            # A short unique line at the very start defeats any prefix cache.
            tag = f"[run {self.cache_nonce}]"
            system = f"{tag}\n{system}" if system else tag
        return system

    def chat_messages(self, apply_nonce: bool = False) -> list[dict[str, str]]:
        """The request as chat messages (system first)."""
        out: list[dict[str, str]] = []
        if self.messages is not None:
            msgs = [m.to_dict() for m in self.messages]
        else:
            msgs = [{"role": "user", "content": self.prompt or ""}]
        if msgs and msgs[0]["role"] == "system" and self.system is None:
            msgs = msgs[1:]
        system = self.system_with_nonce(apply_nonce)
        if system is not None:
            out.append({"role": "system", "content": system})
        out.extend(msgs)
        return out


@dataclass(frozen=True)
class ModelInfo:
    """Facts about the model under test (what ``ollama show`` prints, for a GGUF)."""

    name: str
    backend: str
    architecture: str | None = None
    parameter_count: int | None = None
    parameter_size: str | None = None
    quantization: str | None = None
    context_length: int | None = None
    embedding_length: int | None = None
    family: str | None = None
    format: str | None = None
    digest: str | None = None
    engine_version: str | None = None
    server_version: str | None = None
    size_bytes: int | None = None
    size_vram_bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "backend": self.backend,
            "architecture": self.architecture,
            "parameter_count": self.parameter_count,
            "parameter_size": self.parameter_size,
            "quantization": self.quantization,
            "context_length": self.context_length,
            "embedding_length": self.embedding_length,
            "family": self.family,
            "format": self.format,
            "digest": self.digest,
            "engine_version": self.engine_version,
            "server_version": self.server_version,
            "size_bytes": self.size_bytes,
            "size_vram_bytes": self.size_vram_bytes,
            "extra": dict(self.extra),
        }


@runtime_checkable
class Backend(Protocol):
    """What the runner needs from an engine or server.

    Optional: ``machine_reference(request) -> float | None``, the rate of a fixed
    reference workload timed now on the machine the engine runs on (see
    ``machine/reference.py``); the runner calls it, untimed, before each measured round
    and once after the last. Optional: ``prepare_round(request) -> None``, untimed work
    before each measured round (evicting the prompt from a server's cache,
    ``backends/ollama_cache.py``). Optional: ``cache_allowance: int``, cached prompt tokens
    the backend's method cannot avoid (``core/cache.py``). Optional:
    ``check_request(request) -> None``, called once per call before any round: raises
    :class:`~pytest_tokrate.errors.UsageError` when the engine cannot take the request
    (a chat template or a grammar it cannot build), without generating.
    """

    name: str
    #: How many requests the engine serves at once; 1 means requests are serialised.
    max_parallel: int

    @property
    def cache_busting(self) -> str:
        """How the backend defeats prompt caching without changing the prompt ("kv-reset",
        "cache_prompt=false", "cache_salt", "evict", "reload", or "none" where it cannot);
        read after the rounds, so a backend that escalates reports what it ended with."""
        ...

    def model_info(self) -> ModelInfo: ...

    def stream(self, request: Request) -> Iterator[Event]: ...

    def close(self) -> None: ...


__all__ = ["Backend", "Event", "Message", "ModelInfo", "Request"]
