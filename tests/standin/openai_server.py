"""A stand-in OpenAI-compatible server over the real embedded engine.

``POST /v1/chat/completions`` (and ``/v1/completions``) streamed as server-sent events
(``data: {...}`` blocks, ``data: [DONE]`` at the end), ``GET /v1/models``. Three flavours
decide what the server reports besides the text:

``llama.cpp``  ``usage`` when asked (``stream_options.include_usage``) and always llama.cpp's
               ``timings`` object (``prompt_n``, ``prompt_ms``, ``predicted_n``,
               ``predicted_ms``, ``cache_n``) on the last event
``vllm``       ``usage`` when asked, no timings
``bare``       neither: the client has only the text (some hosted and older servers)

With ``api_key`` set, requests need ``Authorization: Bearer <key>``; a wrong key gets
401 with a message that echoes the key it was given, as some hosted APIs do, so tests
can check that the client never lets a key through.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from pytest_tokrate.backends.base import Message, Request
from pytest_tokrate.core.measure import EngineReport, TextChunk

from .engine import EngineHost
from .faults import FaultPlan
from .httpserver import Exchange, Piece, StandinServer, write_stream

FLAVOURS = ("llama.cpp", "vllm", "bare")
BUSY_MESSAGE = "The server is busy. Please retry your request later."
SSE = "text/event-stream"


class OpenAIProtocol:
    busy_message = BUSY_MESSAGE

    def error_piece(self, message: str) -> Piece:
        return Piece(obj={"error": {"message": message, "type": "server_error", "code": 500}})

    def send_error(self, ex: Exchange, status: int, message: str) -> None:
        kind = "server_error" if status >= 500 else "invalid_request_error"
        ex.send_json(
            status,
            {"error": {"message": message, "type": kind, "param": None, "code": status}},
            "application/json",
        )


class OpenAIStandin(StandinServer):
    def __init__(
        self,
        engine: EngineHost,
        *,
        flavour: str = "llama.cpp",
        api_key: str | None = None,
        n_ctx: int = 2048,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        if flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {FLAVOURS}")
        self.engine = engine
        self.flavour = flavour
        self.api_key = api_key
        self.n_ctx = n_ctx
        self.faults = FaultPlan()
        self.proto = OpenAIProtocol()
        self.bodies: list[dict[str, Any]] = []
        self.auth_headers: list[str | None] = []
        self._defaults = (flavour, api_key)
        self._lock = threading.Lock()

    def reset(self) -> None:
        self.faults.clear()
        self.bodies.clear()
        self.auth_headers.clear()
        self.flavour, self.api_key = self._defaults

    def plugin_args(self, model: str = "smollm2:135m") -> list[str]:
        return [
            "--tokrate-backend=openai",
            f"--tokrate-host={self.url}",
            f"--tokrate-model={model}",
        ]

    # -- routing ----------------------------------------------------------------------

    def route(self, ex: Exchange) -> None:
        ex.note["server"] = self
        ex.note["protocol"] = self.proto
        if ex.path == "/health":
            ex.send_json(200, {"status": "ok"}, "application/json")
            return
        if ex.path not in ("/v1/models", "/v1/chat/completions", "/v1/completions"):
            self.proto.send_error(ex, 404, f"File Not Found: {ex.path}")
            return
        auth = ex.headers.get("Authorization")
        with self._lock:
            self.auth_headers.append(auth)
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            given = (auth or "").removeprefix("Bearer ").strip() or "(none)"
            self.proto.send_error(
                ex, 401, f"Incorrect API key provided: {given}. You can find your API key in "
                "your account settings.",
            )  # fmt: skip
            return
        if ex.path == "/v1/models":
            if ex.method != "GET":
                self.proto.send_error(ex, 405, "Method Not Allowed")
                return
            self._models(ex)
            return
        if ex.method != "POST":
            self.proto.send_error(ex, 405, "Method Not Allowed")
            return
        self._completion(ex, chat=ex.path == "/v1/chat/completions")

    def _models(self, ex: Exchange) -> None:
        data = []
        for entry in self.engine:
            item: dict[str, Any] = {
                "id": entry.name,
                "object": "model",
                "created": int(time.time()),
                "owned_by": "tokrate-standin",
            }
            if self.flavour == "llama.cpp":
                meta = entry.metadata()
                info = meta["model_info"]
                arch = info.get("general.architecture", "")
                item["meta"] = {
                    "n_params": info.get("general.parameter_count"),
                    "n_ctx_train": info.get(f"{arch}.context_length"),
                    "n_embd": info.get(f"{arch}.embedding_length"),
                    "size": meta["size"],
                }
            data.append(item)
        ex.send_json(200, {"object": "list", "data": data}, "application/json")

    # -- completions ----------------------------------------------------------------

    def _request(self, body: dict[str, Any], chat: bool) -> Request:
        options: dict[str, Any] = {"num_ctx": self.n_ctx, "temperature": 0.8}
        for field in ("max_tokens", "max_completion_tokens", "n_predict"):
            if isinstance(body.get(field), int):
                options["num_predict"] = body[field]
        for field in ("temperature", "top_p", "seed", "top_k", "min_p", "typical_p",
                      "repeat_penalty", "presence_penalty", "frequency_penalty"):  # fmt: skip
            if body.get(field) is not None:
                options[field] = body[field]
        stop = body.get("stop")
        if stop is not None:
            options["stop"] = [stop] if isinstance(stop, str) else list(stop)
        fmt: str | dict[str, Any] | None = None
        rf = body.get("response_format") or {}
        if rf.get("type") == "json_object":
            fmt = "json"
        elif rf.get("type") == "json_schema":
            fmt = dict((rf.get("json_schema") or {}).get("schema") or {})
        if not chat:
            return Request(
                prompt=str(body.get("prompt") or ""), options=options, format=fmt, raw=True
            )
        messages = []
        for m in body.get("messages") or []:
            content = m.get("content") or ""
            if isinstance(content, list):  # content parts
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            messages.append(Message(str(m.get("role", "user")), str(content)))
        if not messages:
            raise ValueError("'messages' must not be empty")
        return Request(messages=tuple(messages), options=options, format=fmt)

    def _completion(self, ex: Exchange, chat: bool) -> None:
        try:
            body = json.loads(ex.body() or b"null")
            if not isinstance(body, dict):
                raise ValueError("the request body must be a JSON object")
            name = body.get("model")
            request = self._request(body, chat)
        except (ValueError, TypeError, AttributeError) as exc:
            self.proto.send_error(ex, 400, f"invalid request: {exc}")
            return
        with self._lock:
            self.bodies.append(body)
            del self.bodies[:-50]
        entry = self.engine.find(str(name or ""))
        if entry is None:
            self.proto.send_error(ex, 404, f"The model `{name}` does not exist.")
            return
        prompt_text = "\n".join(m.content for m in request.messages or ()) + (request.prompt or "")
        faults = self.faults.select(ex, str(name), prompt_text)
        for fault in faults:
            if fault.answer(ex, self.proto):
                return
        stream = bool(body.get("stream"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = entry.generate(request, replay=self.engine.replay)
        pieces = self._pieces(events, str(name), chat, stream, include_usage)
        for fault in faults:
            pieces = fault.wrap(ex, self.proto, pieces)
        if stream:
            write_stream(ex, pieces, _frame, SSE, self._stream_error, trailer=b"data: [DONE]\n\n")
        else:
            self._answer_whole(ex, pieces, chat)

    def _stream_error(self, ex: Exchange, exc: Exception) -> Piece | None:
        if not ex.headers_sent:
            self.proto.send_error(ex, 500, str(exc) or type(exc).__name__)
            return None
        return self.proto.error_piece(str(exc))

    def _pieces(
        self,
        events: Iterator[TextChunk | EngineReport],
        name: str,
        chat: bool,
        stream: bool,
        include_usage: bool,
    ) -> Iterator[Piece]:
        ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        kind = "chat.completion.chunk" if chat else "text_completion"
        fingerprint = "b6000-tokrate-standin" if self.flavour == "llama.cpp" else None

        def event(choices: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
            obj: dict[str, Any] = {"id": ident, "object": kind, "created": created, "model": name}
            if fingerprint:
                obj["system_fingerprint"] = fingerprint
            obj["choices"] = choices
            obj.update(more)
            return obj

        def choice(text: str | None, finish: str | None) -> dict[str, Any]:
            if chat:
                delta: dict[str, Any] = {} if text is None else {"content": text}
                return {"index": 0, "delta": delta, "finish_reason": finish}
            return {"index": 0, "text": text or "", "finish_reason": finish}

        if chat and stream:
            first = {"role": "assistant", "content": None if self.flavour == "llama.cpp" else ""}
            yield Piece(obj=event([{"index": 0, "delta": first, "finish_reason": None}]))
        for ev in events:
            if isinstance(ev, TextChunk):
                yield Piece(obj=event([choice(ev.text, None)]), text=ev.text)
                continue
            finish = "stop" if ev.done_reason == "stop" else "length"
            usage = _usage(ev)
            timings = _timings(ev) if self.flavour == "llama.cpp" else None
            last = event([choice(None, finish)])
            if self.flavour != "bare" and (include_usage or not stream):
                if stream:
                    yield Piece(obj=last)  # finish_reason; the usage event follows
                    last = event([], usage=usage)
                else:
                    last["usage"] = usage
            if timings is not None:
                last["timings"] = timings
            yield Piece(obj=last, final=True)

    def _answer_whole(self, ex: Exchange, pieces: Iterator[Piece], chat: bool) -> None:
        texts: list[str] = []
        final: dict[str, Any] | None = None
        for piece in pieces:
            if piece.obj is None:
                continue
            if "error" in piece.obj:
                ex.send_json(500, piece.obj, "application/json")
                return
            texts.append(piece.text)
            if piece.final:
                final = piece.obj
        if final is None:
            ex.abort()
            return
        text = "".join(texts)
        final["object"] = "chat.completion" if chat else "text_completion"
        for c in final["choices"]:
            if chat:
                c.pop("delta", None)
                c["message"] = {"role": "assistant", "content": text}
            else:
                c["text"] = text
        ex.send_json(200, final, "application/json")


def _usage(report: EngineReport) -> dict[str, Any]:
    prompt = report.prompt_tokens or 0
    output = report.output_tokens or 0
    return {
        "completion_tokens": output,
        "prompt_tokens": prompt,
        "total_tokens": prompt + output,
        "prompt_tokens_details": {"cached_tokens": report.prompt_tokens_cached or 0},
    }


def _timings(report: EngineReport) -> dict[str, Any]:
    prompt_n = report.prompt_tokens_processed or 0
    prompt_ms = (report.prefill_ns or 0) / 1e6
    predicted_n = report.output_tokens or 0
    predicted_ms = (report.decode_ns or 0) / 1e6
    if not prompt_ms and prompt_n > 0 and predicted_ms:
        # a one-token prompt suffix was timed as a decode step (see ollama_metrics)
        step = predicted_ms / (predicted_n + 1)
        prompt_ms, predicted_ms = step, predicted_ms - step
    return {
        "cache_n": report.prompt_tokens_cached or 0,
        "prompt_n": prompt_n,
        "prompt_ms": prompt_ms,
        "prompt_per_token_ms": prompt_ms / prompt_n if prompt_n else 0.0,
        "prompt_per_second": prompt_n / prompt_ms * 1e3 if prompt_ms else 0.0,
        "predicted_n": predicted_n,
        "predicted_ms": predicted_ms,
        "predicted_per_token_ms": predicted_ms / predicted_n if predicted_n else 0.0,
        "predicted_per_second": predicted_n / predicted_ms * 1e3 if predicted_ms else 0.0,
    }


def _frame(piece: Piece) -> bytes:
    if piece.raw is not None:
        return b"data: " + piece.raw + b"\n\n"
    return b"data: " + json.dumps(piece.obj, separators=(",", ":")).encode() + b"\n\n"


__all__ = ["FLAVOURS", "OpenAIProtocol", "OpenAIStandin"]
