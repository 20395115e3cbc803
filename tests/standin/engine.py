"""The real engine behind the stand-in servers: pytest-tokrate's embedded llama.cpp backend.

Each served model name maps to an embedded alias (``smollm2:135m`` -> ``smollm2``). The
model loads on its first request (so that request's ``load_duration`` is a real load),
requests keep llama.cpp's prefix cache as a real server does (unless the protocol says not
to: ``generate(reset_cache=True)``), and metadata comes from the GGUF file itself (a
vocabulary-only load).

``replay=True`` records one real generation per model once and then streams those real
tokens back with no delay, for the client-overhead benchmark.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pytest_tokrate.backends.base import Request
from pytest_tokrate.backends.gguf import FTYPE_NAMES
from pytest_tokrate.backends.llamacpp import LlamaCppBackend
from pytest_tokrate.backends.models import ModelSpec, resolve_model
from pytest_tokrate.core.measure import EngineReport, TextChunk

from .wire import gguf_value, human_number

DEFAULT_MODELS = {"smollm2:135m": "smollm2"}
REPLAY_PROMPT = "Tell a long story about a lighthouse keeper and a storm."
REPLAY_TOKENS = 256


def canonical(name: str) -> str:
    text = name.strip().lower()
    for prefix in ("registry.ollama.ai/", "library/"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    if ":" not in text.rsplit("/", 1)[-1]:
        text += ":latest"
    return text


@dataclass
class Recording:
    """One real generation, kept for replay."""

    pieces: list[str]
    report: EngineReport


@dataclass
class ModelEntry:
    """One model the server has 'pulled'."""

    name: str  # display form, e.g. smollm2:135m
    alias: str  # embedded alias or .gguf path
    num_thread: int
    replay_tokens: int = REPLAY_TOKENS
    #: How the server was started (``{"flash_attn": "off"}``: OLLAMA_FLASH_ATTENTION=0).
    engine_options: Mapping[str, Any] = field(default_factory=dict)
    spec: ModelSpec = field(init=False)
    backend: LlamaCppBackend | None = None
    expires_ns: int | None = None  # wall clock, when loaded; -1: forever
    context_length: int | None = None
    recording: Recording | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _meta: dict[str, Any] | None = field(default=None, repr=False)
    _vocab: Any = field(default=None, repr=False)
    _active: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self.spec = resolve_model(self.alias, "embedded")
        self._idle = threading.Condition(self._lock)

    # -- files and metadata -----------------------------------------------------------

    @property
    def path(self) -> Path:
        assert self.spec.path is not None
        if not self.spec.path.is_file():
            self._backend()  # derived quantisations are written on first use
        return self.spec.path

    def digest(self) -> str:
        """Hex sha256 of the GGUF (Ollama lists digests without the ``sha256:`` prefix)."""
        with self._lock:
            meta = self._metadata_locked()
            return str(meta["digest"])

    def _metadata_locked(self) -> dict[str, Any]:
        if self._meta is None:
            import llama_cpp

            path = self.path
            with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
                vocab = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
            raw = dict(vocab.metadata)
            info: dict[str, Any] = {}
            for key, value in sorted(raw.items()):
                if key in ("general.name", "tokenizer.chat_template"):
                    continue  # Ollama leaves these two out of model_info
                info[key] = gguf_value(value)
            info["general.parameter_count"] = int(llama_cpp.llama_model_n_params(vocab.model))
            h = hashlib.sha256()
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            stat = path.stat()
            self._vocab = vocab
            self._meta = {
                "model_info": info,
                "template": raw.get("tokenizer.chat_template", ""),
                "digest": h.hexdigest(),
                "size": stat.st_size,
                "modified_ns": stat.st_mtime_ns,
            }
        return self._meta

    def metadata(self) -> dict[str, Any]:
        with self._lock:
            return self._metadata_locked()

    def details(self) -> dict[str, Any]:
        info = self.metadata()["model_info"]
        arch = info.get("general.architecture", "")
        ftype = info.get("general.file_type")
        return {
            "parent_model": "",
            "format": "gguf",
            "family": arch,
            "families": [arch] if arch else None,
            "parameter_size": human_number(int(info["general.parameter_count"])),
            "quantization_level": FTYPE_NAMES.get(ftype, "") if isinstance(ftype, int) else "",
        }

    def tokenize(self, text: str) -> list[int]:
        with self._lock:
            self._metadata_locked()
            return list(self._vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    # -- generation -------------------------------------------------------------------

    def _backend(self) -> LlamaCppBackend:
        with self._lock:
            if self.backend is None:
                self.backend = LlamaCppBackend(self.spec)
            return self.backend

    @property
    def loaded(self) -> bool:
        if self.backend is None or self.expires_ns is None:
            return False
        return self.expires_ns < 0 or self.expires_ns > time.time_ns()

    def touch(self, keep_alive_ns: int | None, num_ctx: int) -> None:
        """Mark the model loaded until now + keep_alive (default 5 minutes)."""
        ka = 300_000_000_000 if keep_alive_ns is None else keep_alive_ns
        self.expires_ns = -1 if ka < 0 else time.time_ns() + ka
        self.context_length = num_ctx

    def unload(self, wait_s: float = 60.0) -> None:
        """Free the model once no request is using it (closing it under a running
        generation would crash llama.cpp)."""
        with self._lock:
            self._idle.wait_for(lambda: self._active == 0, timeout=wait_s)
            backend, self.backend = self.backend, None
            self.expires_ns = None
            if backend is not None:
                backend.close()

    def generate(
        self, request: Request, replay: bool = False, reset_cache: bool = False
    ) -> Iterator[TextChunk | EngineReport]:
        """The engine's events for one request. The KV cache is kept, as a server keeps
        it, unless ``reset_cache``: what a server does when told not to reuse it
        (llama.cpp's ``cache_prompt: false``, a ``cache_salt`` nothing was cached under)."""
        options = dict(request.options)
        options.setdefault("num_thread", self.num_thread)
        options.update(self.engine_options)
        request = replace(request, options=options, bust_cache=reset_cache, cache_nonce=None)
        if replay:
            return self._tracked(self._replay(request))
        return self._tracked(self._backend().stream(request))

    def _tracked(
        self, events: Iterator[TextChunk | EngineReport]
    ) -> Iterator[TextChunk | EngineReport]:
        with self._lock:
            self._active += 1
        try:
            yield from events
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
            with self._lock:
                self._active -= 1
                self._idle.notify_all()

    def _replay(self, request: Request) -> Iterator[TextChunk | EngineReport]:
        recording = self.record()
        n = int(request.options.get("num_predict") or -1)
        pieces = recording.pieces or [""]
        count = n if n > 0 else len(pieces)
        rec = recording.report
        start = time.perf_counter_ns()
        for i in range(count):
            yield TextChunk(pieces[i % len(pieces)], tokens=1)
        # The timers are the replay's own: the recorded ones would claim seconds of work
        # for a stream served in milliseconds, which no real server can report (the
        # runner refuses such rounds, see pytest_tokrate/sanity.py).
        elapsed = max(time.perf_counter_ns() - start, 1)
        yield replace(
            rec,
            output_tokens=count,
            decode_tokens=count,
            decode_ns=elapsed,
            prefill_ns=None,  # no prompt is evaluated in a replay
            total_ns=elapsed,
            load_ns=None,
            done_reason="length" if n > 0 else rec.done_reason,
        )

    def record(self) -> Recording:
        """Run the real engine once (greedy, fixed seed) and keep its pieces."""
        with self._lock:
            if self.recording is not None:
                return self.recording
        request = Request(
            prompt=REPLAY_PROMPT,
            options={"num_predict": self.replay_tokens, "temperature": 0.0, "seed": 42,
                     "num_thread": self.num_thread, "num_ctx": 2048},
        )  # fmt: skip
        pieces: list[str] = []
        report = EngineReport()
        for event in self._backend().stream(request):
            if isinstance(event, TextChunk):
                pieces.append(event.text)
            else:
                report = event
        with self._lock:
            self.recording = Recording(pieces, report)
            return self.recording


class EngineHost:
    """The models a stand-in serves, shared by any number of stand-in servers."""

    def __init__(
        self,
        models: Mapping[str, str] | None = None,
        *,
        num_thread: int = 1,
        replay: bool = False,
        replay_tokens: int = REPLAY_TOKENS,
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.replay = replay
        self.entries: dict[str, ModelEntry] = {}
        for name, alias in (models or DEFAULT_MODELS).items():
            self.entries[canonical(name)] = ModelEntry(
                name, alias, num_thread, replay_tokens, dict(engine_options or {})
            )

    def find(self, name: str) -> ModelEntry | None:
        return self.entries.get(canonical(name))

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self.entries.values())

    def close(self) -> None:
        for entry in self.entries.values():
            entry.unload()


__all__ = ["DEFAULT_MODELS", "EngineHost", "ModelEntry", "Recording", "canonical"]
