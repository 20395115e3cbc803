"""A stand-in Ollama server: Ollama's wire protocol over the real embedded engine.

Follows ``reference/ollama-api.md``: NDJSON streaming (``application/x-ndjson``, one
compact JSON object per line, headers sent with the first line, body ends after
``done:true``), metrics in nanoseconds and absent when zero, RFC 3339 timestamps with
trimmed fractions, Ollama's status codes and ``{"error": ...}`` bodies, the error line
mid-stream, and ``/``, ``/api/version``, ``/api/tags``, ``/api/ps``, ``/api/show``,
``/api/generate``, ``/api/chat``. Text, token counts and timings come from llama.cpp:
``eval_count``/``eval_duration`` are the engine's decode count and timer,
``prompt_eval_count`` is the whole prompt *including* tokens served from the prefix cache
(as Ollama >= 0.30.1 reports it) while ``prompt_eval_duration`` covers only the tokens
actually processed, and ``load_duration`` is a real model load on a model's first request.

Not served: ``/api/pull``, ``/api/push``, ``/api/create``, ``/api/copy``,
``/api/delete``, ``/api/embed`` (404).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from pytest_tokrate.backends.base import Message, Request
from pytest_tokrate.core.measure import EngineReport, TextChunk

from .engine import EngineHost, ModelEntry, canonical
from .faults import FaultPlan
from .httpserver import Exchange, Piece, StandinServer, write_stream
from .wire import go_json, keep_alive_ns, rfc3339

BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
NDJSON = "application/x-ndjson"
_PART = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}"
_NAME = re.compile(
    rf"^(?:[A-Za-z0-9_.:-]+/)?(?:[A-Za-z0-9_][A-Za-z0-9_-]{{0,79}}/)?{_PART}(?::{_PART})?$"
)
_INT, _FLOAT, _BOOL, _STRINGS = "integer", "float", "boolean", "array of strings"
OPTION_TYPES = {
    **dict.fromkeys(("num_predict", "num_ctx", "num_thread", "seed", "top_k", "num_keep",
                     "repeat_last_n", "num_batch", "num_gpu", "main_gpu"), _INT),
    **dict.fromkeys(("temperature", "top_p", "min_p", "typical_p", "repeat_penalty",
                     "presence_penalty", "frequency_penalty"), _FLOAT),
    "use_mmap": _BOOL,
    "stop": _STRINGS,
}  # fmt: skip
# Ollama's DefaultOptions where they differ from the embedded engine's defaults.
DEFAULTS = {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "num_predict": -1, "num_ctx": 4096}


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_options(options: Any) -> dict[str, Any]:
    """``api.Options.FromMap``: unknown keys ignored, wrong types a 500."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise HttpError(400, "json: cannot unmarshal options into Go value of type map")
    out: dict[str, Any] = {}
    for key, value in options.items():
        kind = OPTION_TYPES.get(key)
        if kind is None:
            continue  # logged and ignored by Ollama
        ok = {
            _INT: isinstance(value, (int, float)) and not isinstance(value, bool),
            _FLOAT: isinstance(value, (int, float)) and not isinstance(value, bool),
            _BOOL: isinstance(value, bool),
            _STRINGS: isinstance(value, list) and all(isinstance(v, str) for v in value),
        }[kind]
        if not ok:
            raise HttpError(500, f'option "{key}" must be of type {kind}')
        out[key] = int(value) if kind == _INT else value
    return out


class OllamaProtocol:
    """Error shapes of Ollama, for the faults."""

    busy_message = BUSY_MESSAGE

    def error_piece(self, message: str) -> Piece:
        return Piece(obj={"error": message})

    def send_error(self, ex: Exchange, status: int, message: str) -> None:
        ex.send_json(status, {"error": message})


class OllamaStandin(StandinServer):
    """Serves the :class:`EngineHost` models the way Ollama does."""

    def __init__(
        self,
        engine: EngineHost,
        *,
        version: str = "0.12.3",
        gpu_fraction: float = 0.0,
        max_queue: int = 512,
        host: str = "127.0.0.1",
        port: int = 0,
        cached_counter: bool = True,
    ) -> None:
        super().__init__(host, port)
        self.engine = engine
        #: False: an Ollama from before prompt_eval_cached_count (rounds cannot be checked).
        self.cached_counter = cached_counter
        self.version = version
        self.gpu_fraction = gpu_fraction
        self.max_queue = max_queue
        self.faults = FaultPlan()
        self.proto = OllamaProtocol()
        self.bodies: list[dict[str, Any]] = []  # last request bodies, for tests
        self._pending = 0
        self._pending_lock = threading.Lock()

    def reset(self) -> None:
        """Forget faults and recorded bodies (between tests)."""
        self.faults.clear()
        self.bodies.clear()

    def plugin_args(self, model: str = "smollm2:135m") -> list[str]:
        """Command-line options pointing pytest-tokrate at this server."""
        return [
            "--tokrate-backend=ollama",
            f"--tokrate-host={self.url}",
            f"--tokrate-model={model}",
        ]

    # -- routing ----------------------------------------------------------------------

    def route(self, ex: Exchange) -> None:
        ex.note["server"] = self
        ex.note["protocol"] = self.proto
        routes = {
            "/": (("GET", "HEAD"), self._root),
            "/api/version": (("GET", "HEAD"), self._version),
            "/api/tags": (("GET", "HEAD"), self._tags),
            "/api/ps": (("GET",), self._ps),
            "/api/show": (("POST",), self._show),
            "/api/generate": (("POST",), lambda e: self._generate(e, chat=False)),
            "/api/chat": (("POST",), lambda e: self._generate(e, chat=True)),
        }
        entry = routes.get(ex.path)
        if entry is None:
            ex.send_text(404, "404 page not found")
            return
        methods, handler = entry
        if ex.method not in methods:
            ex.send_text(405, "405 method not allowed")
            return
        try:
            handler(ex)
        except HttpError as err:
            if ex.headers_sent:
                ex.abort()
            else:
                ex.send_json(err.status, {"error": err.message})

    def _root(self, ex: Exchange) -> None:
        ex.send_text(200, "Ollama is running")

    def _version(self, ex: Exchange) -> None:
        ex.send_json(200, {"version": self.version})

    def _tag_entry(self, entry: ModelEntry) -> dict[str, Any]:
        meta = entry.metadata()
        return {
            "name": entry.name,
            "model": entry.name,
            "modified_at": rfc3339(meta["modified_ns"], utc=False),
            "size": meta["size"],
            "digest": meta["digest"],
            "details": entry.details(),
        }

    def _tags(self, ex: Exchange) -> None:
        ex.send_json(200, {"models": [self._tag_entry(e) for e in self.engine]})

    def _ps(self, ex: Exchange) -> None:
        models = []
        for entry in self.engine:
            if not entry.loaded:
                continue
            meta = entry.metadata()
            size = int(meta["size"])
            expires = entry.expires_ns
            models.append(
                {
                    "name": entry.name,
                    "model": entry.name,
                    "size": size,
                    "digest": meta["digest"],
                    "details": entry.details(),
                    "expires_at": rfc3339(
                        expires if expires and expires > 0 else time.time_ns() + 10**18,
                        utc=False,
                    ),
                    "size_vram": int(size * self.gpu_fraction),
                    "context_length": entry.context_length,
                }
            )
        models.sort(key=lambda m: str(m["expires_at"]), reverse=True)
        ex.send_json(200, {"models": models})

    def _body_json(self, ex: Exchange) -> dict[str, Any]:
        raw = ex.body()
        if not raw:
            raise HttpError(400, "missing request body")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise HttpError(400, f"invalid character in request body: {exc.args[0]}") from None
        if not isinstance(body, dict):
            raise HttpError(400, "json: cannot unmarshal into Go value of type api.Request")
        with self._count_lock:
            self.bodies.append(body)
            del self.bodies[:-50]
        return body

    def _show(self, ex: Exchange) -> None:
        body = self._body_json(ex)
        name = body.get("model") or body.get("name") or ""
        if not isinstance(name, str):
            raise HttpError(
                400, "json: cannot unmarshal into Go struct field .model of type string"
            )
        entry = self.engine.find(name)
        if entry is None:
            raise HttpError(404, f"model '{canonical(name)}' not found")
        meta = entry.metadata()
        info = meta["model_info"]
        if not body.get("verbose"):
            info = {k: ([] if isinstance(v, list) and len(v) > 5 else v) for k, v in info.items()}
        ex.send_json(
            200,
            {
                "license": str(info.get("general.license", "")),
                "modelfile": f"# Modelfile of the tokrate stand-in\nFROM {entry.path}\n",
                "parameters": "",
                "template": meta["template"],
                "details": entry.details(),
                "model_info": info,
                "tensors": [],
                "capabilities": ["completion"],
                "modified_at": rfc3339(meta["modified_ns"], utc=False),
            },
        )

    # -- generation -------------------------------------------------------------------

    def _parse_generation(
        self, body: dict[str, Any], chat: bool
    ) -> tuple[str, ModelEntry, Request | None, int | None]:
        name = body.get("model", "")
        if not isinstance(name, str):
            raise HttpError(
                400, "json: cannot unmarshal number into Go struct field .model of type string"
            )
        if not name:
            if chat:
                raise HttpError(400, "model is required")
            raise HttpError(404, "model '' not found")
        if not _NAME.match(name):
            raise HttpError(400, "invalid model name")
        entry = self.engine.find(name)
        if entry is None:
            raise HttpError(404, f"model '{name}' not found")
        think = body.get("think")
        if isinstance(think, str) and think not in ("low", "medium", "high", "max"):
            raise HttpError(400, f"invalid think value: {think!r}")
        if think not in (None, False):
            raise HttpError(400, f'"{name}" does not support thinking')
        options = {**DEFAULTS, **check_options(body.get("options"))}
        fmt = body.get("format")
        if fmt in ("", None):
            fmt = None
        elif fmt != "json" and not isinstance(fmt, dict):
            raise HttpError(
                500,
                f'invalid format: {json.dumps(fmt)}; expected "json" or a valid JSON Schema object',
            )
        try:
            keep_alive = keep_alive_ns(body.get("keep_alive"))
        except ValueError as exc:
            raise HttpError(400, str(exc)) from None
        if chat:
            messages = body.get("messages") or []
            if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                raise HttpError(
                    400, "json: cannot unmarshal messages into Go value of type []api.Message"
                )
            if not messages:
                return name, entry, None, keep_alive
            request = Request(
                messages=tuple(
                    Message(str(m.get("role", "user")).lower(), str(m.get("content") or ""))
                    for m in messages
                ),
                options=options,
                format=fmt,
            )
        else:
            prompt = body.get("prompt") or ""
            if not prompt:
                return name, entry, None, keep_alive
            request = Request(
                prompt=prompt,
                system=body.get("system") or None,
                options=options,
                format=fmt,
                raw=bool(body.get("raw")),
            )
        return name, entry, request, keep_alive

    def _generate(self, ex: Exchange, chat: bool) -> None:
        body = self._body_json(ex)
        name, entry, request, keep_alive = self._parse_generation(body, chat)
        prompt_text = _prompt_text(body, chat)
        for fault in self.faults.select(ex, name, prompt_text):
            if fault.answer(ex, self.proto):
                return
            ex.note.setdefault("faults", []).append(fault)
        if request is None:  # empty prompt: load (or unload) only
            self._load_only(ex, name, entry, chat, keep_alive)
            return
        with self._pending_lock:
            if self._pending >= self.max_queue:
                raise HttpError(503, BUSY_MESSAGE)
            self._pending += 1
        try:
            self._run(ex, body, name, entry, request, keep_alive, chat)
        finally:
            with self._pending_lock:
                self._pending -= 1

    def _load_only(
        self, ex: Exchange, name: str, entry: ModelEntry, chat: bool, keep_alive: int | None
    ) -> None:
        if keep_alive == 0:
            entry.unload()
            reason = "unload"
        else:
            entry.touch(keep_alive, DEFAULTS["num_ctx"])
            reason = "load"
        obj: dict[str, Any] = {"model": name, "created_at": rfc3339()}
        if chat:
            obj["message"] = {"role": "assistant", "content": ""}
        else:
            obj["response"] = ""
        obj.update(done=True, done_reason=reason)
        ex.send_json(200, obj)

    def _run(
        self,
        ex: Exchange,
        body: dict[str, Any],
        name: str,
        entry: ModelEntry,
        request: Request,
        keep_alive: int | None,
        chat: bool,
    ) -> None:
        entry.metadata()  # first use reads the GGUF header and hashes the file: "loading"
        events = entry.generate(request, replay=self.engine.replay)
        t_sched = time.perf_counter_ns()
        pieces: Iterator[Piece] = self._pieces(ex, events, name, entry, request, chat, t_sched)
        for fault in ex.note.get("faults", []):
            pieces = fault.wrap(ex, self.proto, pieces)
        entry.touch(keep_alive, int(request.options.get("num_ctx") or DEFAULTS["num_ctx"]))
        try:
            if body.get("stream", True) is False:
                self._answer_whole(ex, pieces, chat)
            else:
                write_stream(ex, pieces, _frame, NDJSON, self._stream_error)
        finally:
            if keep_alive == 0:
                entry.unload()

    def _stream_error(self, ex: Exchange, exc: Exception) -> Piece | None:
        message = str(exc) or type(exc).__name__
        if not ex.headers_sent:
            ex.send_json(500, {"error": message})
            return None
        return self.proto.error_piece(message)

    def _pieces(
        self,
        ex: Exchange,
        events: Iterator[TextChunk | EngineReport],
        name: str,
        entry: ModelEntry,
        request: Request,
        chat: bool,
        t_sched: int,
    ) -> Iterator[Piece]:
        text_parts: list[str] = []
        try:
            yield from self._pieces_of(events, name, entry, request, chat, t_sched, ex, text_parts)
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()

    def _pieces_of(
        self,
        events: Iterator[TextChunk | EngineReport],
        name: str,
        entry: ModelEntry,
        request: Request,
        chat: bool,
        t_sched: int,
        ex: Exchange,
        text_parts: list[str],
    ) -> Iterator[Piece]:
        for event in events:
            if isinstance(event, TextChunk):
                text_parts.append(event.text)
                obj: dict[str, Any] = {"model": name, "created_at": rfc3339()}
                if chat:
                    obj["message"] = {"role": "assistant", "content": event.text}
                else:
                    obj["response"] = event.text
                obj["done"] = False
                yield Piece(obj=obj, text=event.text)
                continue
            final: dict[str, Any] = {"model": name, "created_at": rfc3339()}
            if chat:
                final["message"] = {"role": "assistant", "content": ""}
            else:
                final["response"] = ""
            final["done"] = True
            final["done_reason"] = event.done_reason or "stop"
            if not chat and not request.raw:
                prompt = f"{request.system or ''}\n{request.prompt or ''}"
                final["context"] = entry.tokenize(prompt + "".join(text_parts))
            final.update(ollama_metrics(event, ex.t_start_ns, t_sched, self.cached_counter))
            yield Piece(obj=final, final=True)

    def _answer_whole(self, ex: Exchange, pieces: Iterator[Piece], chat: bool) -> None:
        texts: list[str] = []
        final: dict[str, Any] | None = None
        try:
            for piece in pieces:
                if piece.obj is None:
                    continue
                if "error" in piece.obj:
                    ex.send_json(500, piece.obj)
                    return
                if piece.final:
                    final = piece.obj
                else:
                    texts.append(piece.text)
        except Exception as exc:
            ex.send_json(500, {"error": str(exc)})
            return
        if final is None:
            ex.abort()
            return
        if chat:
            final["message"]["content"] = "".join(texts)
        else:
            final["response"] = "".join(texts)
        ex.send_json(200, final)


def ollama_metrics(
    report: EngineReport, t_start_ns: int, t_sched_ns: int, cached_counter: bool = True
) -> dict[str, int]:
    """The engine's report as Ollama's final-chunk metrics (nanoseconds, zeros left out).

    llama.cpp times a one-token prompt suffix (a full prefix-cache hit) as a decode step;
    llama-server reports that step as prompt time, so it is moved back here.
    """
    decode_ns = report.decode_ns or 0
    prefill_ns = report.prefill_ns or 0
    output = report.output_tokens or 0
    if not prefill_ns and (report.prompt_tokens_processed or 0) > 0 and decode_ns:
        # The decode timer then covers output + 1 steps; one of them was the prompt's.
        step = decode_ns // (output + 1)
        prefill_ns, decode_ns = step, decode_ns - step
    values = {
        "total_duration": time.perf_counter_ns() - t_start_ns,
        "load_duration": (t_sched_ns - t_start_ns) + (report.load_ns or 0),
        "prompt_eval_count": report.prompt_tokens or 0,
        "prompt_eval_duration": prefill_ns,
        # Ollama sends this one even when 0 (a 2026 server's final chunk shows
        # "prompt_eval_cached_count":0); servers before it leave it out (cached_counter).
        "prompt_eval_cached_count": report.prompt_tokens_cached or 0,
        "eval_count": output,
        "eval_duration": decode_ns,
    }
    out = {k: int(v) for k, v in values.items() if v}
    if cached_counter:
        out["prompt_eval_cached_count"] = int(values["prompt_eval_cached_count"])
    return out


def _frame(piece: Piece) -> bytes:
    if piece.raw is not None:
        return piece.raw + b"\n"
    return go_json(piece.obj) + b"\n"


def _prompt_text(body: Mapping[str, Any], chat: bool) -> str:
    if chat:
        messages = body.get("messages") or []
        return "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
    return f"{body.get('system') or ''}\n{body.get('prompt') or ''}"


__all__ = ["BUSY_MESSAGE", "OllamaProtocol", "OllamaStandin", "check_options", "ollama_metrics"]
