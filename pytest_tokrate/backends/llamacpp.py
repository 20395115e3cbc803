"""The embedded engine: a GGUF model run in-process by llama.cpp (llama-cpp-python).

Zero setup: no server. Generation is driven token by token through ``Llama.generate`` so
that every token is seen as it is sampled, and the engine's own timers
(``llama_perf_context``: prefill and decode milliseconds and token counts) are read after
each request. The prompt cache is defeated by clearing the KV cache before a measured
round, so the prompt is always fully evaluated ("kv-reset").

The engine serves one request at a time (``max_parallel = 1``).
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import os
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from typing import Any

from pytest_tokrate.backends.base import Event, ModelInfo, Request
from pytest_tokrate.backends.gguf import FTYPE_NAMES, file_digest, import_llama_cpp, quantize
from pytest_tokrate.backends.llamacpp_params import LoadParams, create_llama, load_params
from pytest_tokrate.backends.llamacpp_request import (
    build_grammar,
    check_grammar,
    fit_tokens,
    templated,
)
from pytest_tokrate.backends.models import ModelSpec
from pytest_tokrate.core.measure import EngineReport, TextChunk
from pytest_tokrate.errors import InfrastructureError, UsageError


@dataclass
class _Round:
    """One request, resolved before its first token: the context it runs in, its prompt
    tokens and how many of them the KV cache already holds, and how far it may go."""

    llm: Any
    n_ctx: int
    threads: int
    tokens: list[int]
    cached: int
    limit: int
    grammar: Any
    stops: list[str]
    load_ns: int | None
    t_start: int


class LlamaCppBackend:
    """Runs one GGUF model in-process; one request at a time."""

    name = "embedded"
    max_parallel = 1
    cache_busting = "kv-reset"

    def __init__(self, spec: ModelSpec, reference: bool = True) -> None:
        if spec.path is None:
            raise UsageError(f"model {spec.name!r} has no GGUF path.")
        self.spec = spec
        self._llama_cpp = import_llama_cpp()
        if spec.quantize_to and spec.base_path and not spec.path.is_file():
            quantize(spec.base_path, spec.path, spec.quantize_to)
        self.path = spec.path
        # One context per distinct set of load-time settings (llamacpp_params.py).
        self._instances: dict[LoadParams, Any] = {}
        self._engine_settings: dict[LoadParams, dict[str, Any]] = {}
        self._last: LoadParams | None = None
        self._lock = threading.Lock()
        self._info: ModelInfo | None = None
        self._pending_load_ns: int | None = None
        self._formatter: Any = None
        # Per token id: its text bytes and whether it ends generation. The vocabulary is
        # fixed, so the two ctypes calls per token are made once per id, not per round.
        self._pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}
        self.reference = reference

    # -- model handling -------------------------------------------------------------

    def _llama(self, params: LoadParams, n_threads: int) -> Any:
        """The context for these load-time settings, created on first use; the threads are
        set per round (``llama_set_n_threads``), so they are not part of the key."""
        llm = self._instances.get(params)
        if llm is None:
            t = time.perf_counter_ns()
            try:
                llm, active = create_llama(self._llama_cpp, str(self.path), params, n_threads)
            except (ValueError, RuntimeError, OSError) as exc:
                raise InfrastructureError(
                    f"llama.cpp could not load {self.path} with {params.describe()} ({exc}): "
                    "check that the file is a complete GGUF model, that num_ctx fits memory "
                    "and that the model supports these settings."
                ) from None
            self._pending_load_ns = time.perf_counter_ns() - t
            # Keep at most two contexts (e.g. two num_ctx values) to bound memory.
            if len(self._instances) >= 2:
                oldest = next(iter(self._instances))
                self._engine_settings.pop(oldest, None)
                with contextlib.suppress(Exception):
                    self._instances.pop(oldest).close()
            self._instances[params] = llm
            self._engine_settings[params] = params.settings(active)
        self._last = params
        return llm

    def _chat_prompt(self, llm: Any, request: Request) -> str:
        if request.raw:
            system = request.system_with_nonce(apply_nonce=False)
            prompt = request.prompt or ""
            return f"{system}\n{prompt}" if system else prompt
        if self._formatter is None:
            template = llm.metadata.get("tokenizer.chat_template")
            if not template:
                return request.prompt or "\n".join(
                    m["content"] for m in request.chat_messages(apply_nonce=False)
                )
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            eos = llm._model.token_get_text(llm.token_eos())
            bos = llm._model.token_get_text(llm.token_bos())
            self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        return str(self._formatter(messages=request.chat_messages(apply_nonce=False)).prompt)

    def _prompt_tokens(self, llm: Any, request: Request, n_ctx: int) -> list[int]:
        """The request's prompt through the chat template, as tokens that fit the context."""
        prompt = templated(lambda: self._chat_prompt(llm, request), self.path.name)
        return fit_tokens(llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True), n_ctx)

    def check_request(self, request: Request) -> None:
        """The request's tokens and grammar built as a round builds them, without generating:
        what the engine cannot take is a UsageError before any round, not a crash in one.
        Loads the model a first round would load (that round still reports the load)."""
        params = load_params(request.options)
        with self._lock:
            llm = self._llama(params, _threads(request.options))
            self._prompt_tokens(llm, request, params.n_ctx)
            check_grammar(self._llama_cpp, llm._model.vocab, build_grammar(request.format))

    def model_info(self) -> ModelInfo:
        # The context last used (the test's settings) or, before any round, the defaults.
        load = self._last or LoadParams()
        llm = self._llama(load, _threads({}))
        if self._info is None:
            meta: dict[str, str] = dict(llm.metadata)
            arch = meta.get("general.architecture")
            params = int(self._llama_cpp.llama_model_n_params(llm.model))
            desc = ctypes.create_string_buffer(256)
            self._llama_cpp.llama_model_desc(llm.model, desc, 256)
            ftype = meta.get("general.file_type")
            quant = FTYPE_NAMES.get(int(ftype)) if ftype and ftype.isdigit() else None
            self._info = ModelInfo(
                name=self.spec.name,
                backend=self.name,
                architecture=arch,
                parameter_count=params,
                parameter_size=_size_label(params),
                quantization=quant,
                context_length=_int_or_none(meta.get(f"{arch}.context_length")),
                embedding_length=_int_or_none(meta.get(f"{arch}.embedding_length")),
                family=arch,
                format="gguf",
                digest=file_digest(self.path),
                engine_version=f"llama-cpp-python {self._llama_cpp.__version__}",
                size_bytes=self.path.stat().st_size,
                extra={
                    "file": self.path.name,
                    "description": desc.value.decode(errors="replace"),
                    "general.name": meta.get("general.name"),
                },
            )
        # The load-time settings in effect, as configuration (docs/engine-parity.md).
        settings = dict(self._engine_settings.get(load) or {})
        return replace(self._info, extra={**self._info.extra, "engine_settings": settings})

    # -- streaming --------------------------------------------------------------------

    def stream(self, request: Request) -> Iterator[Event]:
        with self._lock:
            yield from self._stream_locked(request)

    def _stream_locked(self, request: Request) -> Iterator[Event]:
        round_ = self._prepare(request)
        output_tokens, done_reason = yield from self._generate(round_, request.options)
        yield self._report(round_, output_tokens, done_reason)

    def _prepare(self, request: Request) -> _Round:
        """Load the context, tokenize the prompt and set the cache, seed and grammar."""
        lc = self._llama_cpp
        opts = request.options
        params = load_params(opts)
        n_ctx = params.n_ctx
        threads = _threads(opts)
        t_start = time.perf_counter_ns()
        llm = self._llama(params, threads)
        load_ns, self._pending_load_ns = self._pending_load_ns, None
        lc.llama_set_n_threads(llm._ctx.ctx, threads, threads)
        tokens = self._prompt_tokens(llm, request, n_ctx)
        num_predict = int(opts.get("num_predict", 64))
        limit = n_ctx - len(tokens)
        if num_predict > 0:
            limit = min(limit, num_predict)
        cached = 0
        if request.bust_cache:
            llm.reset()  # forget the KV cache: the whole prompt is evaluated again
        else:
            cached = _common_prefix(llm, tokens)
        seed = opts.get("seed")
        if seed is not None:
            llm.set_seed(int(seed))
        grammar = build_grammar(request.format)
        stops = [s for s in (opts.get("stop") or []) if s]
        lc.llama_perf_context_reset(llm._ctx.ctx)
        return _Round(
            llm=llm,
            n_ctx=n_ctx,
            threads=threads,
            tokens=tokens,
            cached=cached,
            limit=limit,
            grammar=grammar,
            stops=stops,
            load_ns=load_ns,
            t_start=t_start,
        )

    def _generate(self, round_: _Round, opts: Any) -> Generator[TextChunk, None, tuple[int, str]]:
        """Sample token by token, yielding the text; returns (tokens, done reason)."""
        lc, llm, stops = self._llama_cpp, round_.llm, round_.stops
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        vocab = llm._model.vocab
        # Local names: this loop runs once per token, inside the measured time.
        pieces, eog = self._pieces, self._eog
        n = 0
        pending = 0
        held = ""  # text not yet sent because it may be the start of a stop sequence
        stop_hit = False
        done_reason = "length"
        try:
            generator = llm.generate(
                round_.tokens, **_sampling(opts), reset=True, grammar=round_.grammar
            )
            for token in generator:
                is_eog = eog.get(token)
                if is_eog is None:
                    is_eog = eog[token] = bool(lc.llama_vocab_is_eog(vocab, token))
                if is_eog:
                    done_reason = "stop"
                    break
                n += 1
                pending += 1
                raw_piece = pieces.get(token)
                if raw_piece is None:
                    raw_piece = pieces[token] = llm.detokenize([token], special=False)
                piece = decoder.decode(raw_piece)
                if stops and piece:
                    piece, held, stop_hit = _apply_stops(held + piece, stops)
                if piece:
                    yield TextChunk(piece, tokens=pending)
                    pending = 0
                if stop_hit:
                    done_reason = "stop"
                    break
                if n >= round_.limit:
                    done_reason = "length"
                    break
            generator.close()
        except (RuntimeError, ValueError) as exc:
            raise InfrastructureError(f"llama.cpp failed while generating: {exc}") from None
        # A held-back partial stop sequence that never completed is ordinary text.
        tail = "" if stop_hit else held + decoder.decode(b"", final=True)
        if tail:
            yield TextChunk(tail, tokens=pending or None)
        return n, done_reason

    def _report(self, round_: _Round, output_tokens: int, done_reason: str) -> EngineReport:
        """The round's figures from llama.cpp's own timers (``llama_perf_context``)."""
        perf = self._llama_cpp.llama_perf_context(round_.llm._ctx.ctx)
        n_p_eval, n_eval = int(perf.n_p_eval), int(perf.n_eval)
        t_p_eval_ns = int(perf.t_p_eval_ms * 1e6)
        t_eval_ns = int(perf.t_eval_ms * 1e6)
        processed = len(round_.tokens) - round_.cached
        if processed == 1 and n_p_eval == 0:
            # A one-token prompt suffix is timed by llama.cpp as a decode step.
            n_p_eval, n_eval = 1, max(n_eval - 1, 0)
        return EngineReport(
            output_tokens=output_tokens,
            prompt_tokens=len(round_.tokens),
            prompt_tokens_processed=n_p_eval,
            prompt_tokens_cached=round_.cached,
            decode_tokens=n_eval,
            decode_ns=t_eval_ns if n_eval else None,
            prefill_ns=t_p_eval_ns if n_p_eval else None,
            load_ns=round_.load_ns,
            total_ns=time.perf_counter_ns() - round_.t_start,
            done_reason=done_reason,
            extra={"num_thread": round_.threads, "num_ctx": round_.n_ctx},
        )

    def machine_reference(self, request: Request) -> dict[str, float | None] | None:
        """The machine reference's decode and prefill rates now, by sample key (see
        :mod:`pytest_tokrate.machine.reference`); ``None`` when turned off."""
        if not self.reference:
            return None
        from pytest_tokrate.machine.calibration import PREFILL_REFERENCE, REFERENCE
        from pytest_tokrate.machine.reference import shared

        with self._lock:
            decode, prefill = shared(self._llama_cpp).rates()
        return {REFERENCE: decode, PREFILL_REFERENCE: prefill}

    def close(self) -> None:
        for llm in self._instances.values():
            with contextlib.suppress(Exception):
                llm.close()
        self._instances.clear()
        self._engine_settings.clear()
        self._last = None


def _apply_stops(text: str, stops: list[str]) -> tuple[str, str, bool]:
    """Split unsent text into (send now, hold back, stop reached).

    Text is cut where the earliest stop sequence begins; without a full match, the
    longest tail that could still grow into a stop sequence is held back, so a stop
    split across tokens never leaks its first part into the answer.
    """
    found = [i for i in (text.find(stop) for stop in stops) if i >= 0]
    if found:
        return text[: min(found)], "", True
    hold = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), hold, -1):
            if text.endswith(stop[:size]):
                hold = size
                break
    return text[: len(text) - hold], text[len(text) - hold :], False


def _common_prefix(llm: Any, tokens: list[int]) -> int:
    count = 0
    for a, b in zip(llm._input_ids[: llm.n_tokens], tokens, strict=False):
        if a != b:
            break
        count += 1
    return min(count, max(len(tokens) - 1, 0))


def _sampling(opts: Any) -> dict[str, Any]:
    """The sampler settings of ``Llama.generate``, with llama.cpp's defaults where unset."""
    return {
        "temp": float(opts.get("temperature", 0.0)),
        "top_k": int(opts.get("top_k", 40)),
        "top_p": float(opts.get("top_p", 0.9)),
        "min_p": float(opts.get("min_p", 0.0)),
        "typical_p": float(opts.get("typical_p", 1.0)),
        "repeat_penalty": float(opts.get("repeat_penalty", 1.0)),
        "presence_penalty": float(opts.get("presence_penalty", 0.0)),
        "frequency_penalty": float(opts.get("frequency_penalty", 0.0)),
    }


def _threads(opts: Any) -> int:
    """``num_thread``, else every usable core but one: the Python thread that drives the
    engine (sampling, stamping each token) and the rest of the machine keep a core. On a
    shared 2-core machine two threads decoded at 0.54x the rate of one (docs/engine-parity.md)."""
    value = int(opts.get("num_thread") or 0)
    if value > 0:
        return value
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 1
    return max(usable - 1, 1)


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _size_label(params: int) -> str:
    if params >= 1_000_000_000:
        return f"{params / 1e9:.1f}B"
    return f"{params / 1e6:.0f}M"


__all__ = ["LlamaCppBackend"]
