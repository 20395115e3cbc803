"""A stand-in OpenAI-compatible server over the real embedded engine.

``POST /v1/chat/completions`` (and ``/v1/completions``) streamed as server-sent events
(``data: {...}`` blocks, ``data: [DONE]`` at the end), ``GET /v1/models``. Three flavours
decide what the server reports besides the text:

``llama.cpp``  ``usage`` when asked (``stream_options.include_usage``) and always llama.cpp's
               ``timings`` object (``prompt_n``, ``prompt_ms``, ``predicted_n``,
               ``predicted_ms``, ``cache_n``) on the last event; model facts as
               ``llama-server`` gives them: ``meta`` in ``/v1/models`` and ``GET /props``
               (shapes from llama.cpp's tools/server/server-context.cpp, as vendored by
               llama-cpp-python 0.3.36; ``legacy_llamacpp=True``: builds before ``meta``
               had ``n_ctx`` and ``ftype`` and ``/props`` had ``model_ftype``)
``vllm``       ``usage`` when asked, no timings; ``root``, ``parent``, ``max_model_len`` in
               ``/v1/models`` (vLLM's ``ModelCard``) and ``GET /version``
               (``vllm_version``)
``bare``       neither: the client has only the text (some hosted and older servers) and
               no model facts

The prompt cache is the engine's real one (one slot: the last prompt's tokens), reused as
each server reuses it: llama.cpp unless the request says ``"cache_prompt": false`` (then
the whole prompt is evaluated and ``cache_n`` is 0, as in llama-server's own source); vLLM
only under the same ``cache_salt`` as the request that filled it (none counts as one
salt), with ``prompt_tokens_details.cached_tokens`` saying what was reused. A vLLM
``cache_salt`` must be a non-empty string; with ``vllm_v0=True`` it is refused with
HTTP 400, as vLLM 0.9 refuses it on its V0 engine. ``bodies`` keeps the last 50 request
bodies received, so tests can read the exact text of every round.

The facts are the served file's own (read by llama.cpp from the GGUF), so serving another
file behind the same name, ``EngineHost({"smollm2:135m": "smollm2-q2_k"})``, is what
restarting ``llama-server --alias smollm2:135m -m ...Q2_K.gguf`` looks like.

With ``api_key`` set, requests need ``Authorization: Bearer <key>``; a wrong key gets
401 with a message that echoes the key it was given, as some hosted APIs do, so tests
can check that the client never lets a key through.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from functools import cache
from typing import Any

from pytest_tokrate.backends.base import Message, Request
from pytest_tokrate.core.measure import EngineReport, TextChunk

from .engine import EngineHost, ModelEntry
from .faults import FaultPlan
from .httpserver import Exchange, Piece, StandinServer, write_stream

FLAVOURS = ("llama.cpp", "vllm", "bare")
BUSY_MESSAGE = "The server is busy. Please retry your request later."
SSE = "text/event-stream"
#: What llama.cpp's llama_build_info() says: both /props and system_fingerprint carry it.
BUILD_INFO = "b6000-tokrate-standin"
VLLM_VERSION = "0.10.1+tokrate.standin"
#: The salt of the prompt in the engine's cache is not known (another server filled it).
_UNKNOWN = object()


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
        legacy_llamacpp: bool = False,
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
        self.legacy_llamacpp = legacy_llamacpp
        self.vllm_version = VLLM_VERSION
        self.vllm_v0 = False
        self._cache_salt: object = _UNKNOWN
        self.faults = FaultPlan()
        self.proto = OpenAIProtocol()
        self.bodies: list[dict[str, Any]] = []
        self.auth_headers: list[str | None] = []
        self._defaults = (flavour, api_key, legacy_llamacpp)
        self._lock = threading.Lock()

    def reset(self) -> None:
        self.faults.clear()
        self.bodies.clear()
        self.auth_headers.clear()
        self.flavour, self.api_key, self.legacy_llamacpp = self._defaults
        self.vllm_version, self.vllm_v0, self._cache_salt = VLLM_VERSION, False, _UNKNOWN

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
        facts_path = {"llama.cpp": "/props", "vllm": "/version"}.get(self.flavour)
        if ex.path not in ("/v1/models", "/v1/chat/completions", "/v1/completions", facts_path):
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
        if ex.path in ("/v1/models", facts_path):
            if ex.method != "GET":
                self.proto.send_error(ex, 405, "Method Not Allowed")
            elif ex.path == "/v1/models":
                self._models(ex)
            elif ex.path == "/props":
                ex.send_json(200, self._props(), "application/json")
            else:
                ex.send_json(200, {"version": self.vllm_version}, "application/json")
            return
        if ex.method != "POST":
            self.proto.send_error(ex, 405, "Method Not Allowed")
            return
        self._completion(ex, chat=ex.path == "/v1/chat/completions")

    def _models(self, ex: Exchange) -> None:
        data = []
        for entry in self.engine:
            item: dict[str, Any] = {"id": entry.name}
            if self.flavour == "llama.cpp" and not self.legacy_llamacpp:
                # served as `llama-server --alias NAME`: the alias is the id
                item.update(aliases=[entry.name], tags=[])
            item.update(object="model", created=int(time.time()), owned_by="tokrate-standin")
            if self.flavour == "llama.cpp":
                item["owned_by"] = "llamacpp"
                item["meta"] = self._meta(entry)
            elif self.flavour == "vllm":
                # vLLM's ModelCard: root is what --model named, here the GGUF file
                item.update(owned_by="vllm", root=str(entry.path), parent=None)
                item.update(max_model_len=self.n_ctx, permission=[])
            data.append(item)
        ex.send_json(200, {"object": "list", "data": data}, "application/json")

    def _meta(self, entry: ModelEntry) -> dict[str, Any]:
        """llama.cpp's get_res_model_info() "meta" (model_meta() in older builds)."""
        facts = _file_facts(str(entry.path))
        info = entry.metadata()["model_info"]
        arch = info.get("general.architecture", "")
        meta = {
            "vocab_type": facts["vocab_type"],
            "n_vocab": facts["n_vocab"],
            "n_ctx": self.n_ctx,
            "n_ctx_train": info.get(f"{arch}.context_length"),
            "n_embd": info.get(f"{arch}.embedding_length"),
            "n_params": facts["n_params"],
            "size": facts["size"],
            "ftype": facts["ftype"],
        }
        if self.legacy_llamacpp:
            del meta["n_ctx"], meta["ftype"]
        return meta

    def _props(self) -> dict[str, Any]:
        """llama.cpp's get_res_props() for a server of one model (the first one here): the
        facts' fields as the source fills them; the web UI's fields trimmed or left out."""
        entry = next(iter(self.engine))
        facts = _file_facts(str(entry.path))
        params = {"seed": 4294967295, "temperature": 0.8, "top_k": 40, "top_p": 0.95,
                  "min_p": 0.05, "max_tokens": -1, "n_predict": -1}  # fmt: skip
        props: dict[str, Any] = {
            "default_generation_settings": {"params": params, "n_ctx": self.n_ctx},
            "total_slots": 1,
            "model_alias": entry.name,
            "model_ftype": facts["ftype"],
            "model_path": str(entry.path),
            "modalities": {"vision": False, "video": False, "audio": False},
            "chat_template": entry.metadata()["template"],
            "bos_token": facts["bos_token"],
            "eos_token": facts["eos_token"],
            "build_info": BUILD_INFO,
            "is_sleeping": False,
        }
        if self.legacy_llamacpp:
            del props["model_alias"], props["model_ftype"], props["is_sleeping"]
        return props

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
        if self.flavour == "vllm" and body.get("cache_salt") is not None:
            # vLLM's check_cache_salt_support (entrypoints/openai/protocol.py)
            if self.vllm_v0:
                raise ValueError("Parameter 'cache_salt' is not supported with this instance "
                                 "of vLLM, which uses engine V0.")  # fmt: skip
            if not isinstance(body["cache_salt"], str) or not body["cache_salt"]:
                raise ValueError("Parameter 'cache_salt' must be a non-empty string if provided.")
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
            with self._lock:  # refused ones too
                self.bodies.append(body)
                del self.bodies[:-50]
            name = body.get("model")
            request = self._request(body, chat)
        except (ValueError, TypeError, AttributeError) as exc:
            self.proto.send_error(ex, 400, f"invalid request: {exc}")
            return
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
        reset = self._cache_reset(body)
        events = entry.generate(request, replay=self.engine.replay, reset_cache=reset)
        pieces = self._pieces(events, str(name), chat, stream, include_usage)
        for fault in faults:
            pieces = fault.wrap(ex, self.proto, pieces)
        if stream:
            write_stream(ex, pieces, _frame, SSE, self._stream_error, trailer=b"data: [DONE]\n\n")
        else:
            self._answer_whole(ex, pieces, chat)

    def _cache_reset(self, body: dict[str, Any]) -> bool:
        """Whether this request may not reuse the prompt in the engine's cache."""
        if self.flavour == "llama.cpp":
            # llama-server's default is --cache-prompt (on); a request turns it off.
            return body.get("cache_prompt", True) is False
        if self.flavour == "vllm":
            # A salt enters the hash of the prompt's first block: blocks cached under
            # another salt (or none) never match.
            salt = body.get("cache_salt")
            with self._lock:
                reset, self._cache_salt = salt != self._cache_salt, salt
            return reset
        return False

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
        fingerprint = BUILD_INFO if self.flavour == "llama.cpp" else None

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


@cache
def _file_facts(path: str) -> dict[str, Any]:
    """What llama.cpp itself says of a GGUF file (a vocabulary-only load, then the same
    functions llama-server calls): parameters, tensor bytes, vocabulary, file type name."""
    import llama_cpp

    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        model = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(model.model)
    # llama_model_ftype() is 0 before the tensors load; the server's comes from this key.
    ftype = int(model.metadata.get("general.file_type", 0))
    facts = {
        "n_params": int(llama_cpp.llama_model_n_params(model.model)),
        "size": int(llama_cpp.llama_model_size(model.model)),
        "n_vocab": int(llama_cpp.llama_vocab_n_tokens(vocab)),
        "vocab_type": int(llama_cpp.llama_vocab_type(vocab)),
        "ftype": llama_cpp.llama_ftype_name(ftype).decode(),
        "bos_token": model.detokenize([model.token_bos()], special=True).decode(),
        "eos_token": model.detokenize([model.token_eos()], special=True).decode(),
    }
    model.close()
    return facts


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


__all__ = ["BUILD_INFO", "FLAVOURS", "VLLM_VERSION", "OpenAIProtocol", "OpenAIStandin"]
