"""Hypothesis over what a server sends back: only documented errors may come out.

Ollama NDJSON chunks and OpenAI SSE events, random and near misses of a real stream
(the shapes the stand-ins in tests/standin/ send): fields dropped, values of the wrong
type, negative, huge, ``NaN``/``Infinity`` literals, nesting thousands deep, bytes that
are not UTF-8, lines cut short, random lines in between.

Each example goes the whole way a real round goes: a scripted HTTP server (one per
module, on a real socket, answering each request with the example's body) -> the
official ``ollama`` client or httpx -> our backend's stream parsing -> the runner's
round (:meth:`Runner.one_round`, with the sanity checks of ``core/sanity.py``) -> the
sample's figures (``derive_sample``). The outcome must be a sample or a
:class:`~pytest_tokrate.errors.TokrateError`; anything else (a ``KeyError``, a pydantic
error, a ``RecursionError``) is a bug. Reads are time-boxed by the request timeout.

Derandomized with fixed example counts; ``TOKRATE_FUZZ_SCALE=10`` multiplies them.
"""

from __future__ import annotations

import copy
import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from reliability_support import FUZZ_SCALE, fuzz_settings

from pytest_tokrate.backends.base import Backend, Request
from pytest_tokrate.core.measure import derive_sample
from pytest_tokrate.core.runner import Runner
from pytest_tokrate.errors import TokrateError

SCALE = FUZZ_SCALE
EXAMPLES = {
    "ollama_near_miss": 120,
    "ollama_lines": 80,
    "openai_near_miss": 120,
    "openai_lines": 80,
}
#: The number of fuzz examples this module runs (for the closing note of the issue).
TOTAL_EXAMPLES = sum(EXAMPLES.values()) * SCALE
#: The time box of one example's request: a parser that waits for more must end here.
TIMEOUT_S = 5.0
REQUEST = Request(prompt="Say hi.", options={"num_predict": 8}, timeout_s=TIMEOUT_S)


def fuzz(name: str) -> Any:
    return fuzz_settings(EXAMPLES[name])


# -- a server that answers with the example's body ------------------------------------------


class Script:
    """The body the next generation request gets (a scripted response)."""

    body = b""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one connection for many examples

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/api/version":
            self._send(b'{"version": "0.12.6"}', "application/json")
        elif self.path.startswith("/v1/models"):
            self._send(b'{"object": "list", "data": [{"id": "m", "object": "model"}]}', "json")
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        stream = "application/x-ndjson" if self.path.startswith("/api/") else "text/event-stream"
        self._send(Script.body, stream)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def ollama(server: str) -> Iterator[Backend]:
    from pytest_tokrate.backends.ollama import OllamaBackend

    backend = OllamaBackend("m:latest", host=server, timeout_s=TIMEOUT_S)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def openai(server: str) -> Iterator[Backend]:
    from pytest_tokrate.backends.openai import OpenAIBackend

    backend = OpenAIBackend("m", host=f"{server}/v1", timeout_s=TIMEOUT_S)
    yield backend
    backend.close()


def one_round(backend: Backend, body: bytes) -> None:
    """One round on ``body``: a sample with sane figures, or a documented error."""
    Script.body = body
    try:
        sample = derive_sample(Runner(backend).one_round(REQUEST))
    except TokrateError as exc:
        assert str(exc).strip(), "an error with no message"
        return
    for name, value in vars(sample).items():  # what a sample holds is usable
        if isinstance(value, float):
            assert not math.isnan(value), (name, value)


# -- what goes on the wire ----------------------------------------------------------------

WEIRD = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["", "12", "-1", "NaN", "stop"])
    | st.lists(st.integers(), max_size=3)
    | st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)
)
#: Lines that are not a chunk at all: cut, deep, not UTF-8, random.
JUNK_LINES = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [
            b"[" * 5000 + b"]" * 5000,
            b'{"a":' * 3000 + b"1" + b"}" * 3000,
            b"\xff\xfe\x80not utf-8",
            b'{"response": "\xc3\x28", "done": false}',
            b"NaN",
            b'{"done": true, "eval_count": 1e400}',
            b"",
        ]
    ),
)

OLLAMA_TEXT = {
    "model": "m:latest",
    "created_at": "2025-01-01T00:00:00.000000001Z",
    "response": "Hi",
    "done": False,
}
OLLAMA_FINAL = {
    **OLLAMA_TEXT,
    "response": "",
    "done": True,
    "done_reason": "stop",
    "context": [1, 2, 3],
    "total_duration": 9_000_000,
    "load_duration": 1_000_000,
    "prompt_eval_count": 5,
    "prompt_eval_duration": 2_000_000,
    "eval_count": 2,
    "eval_duration": 3_000_000,
}
OPENAI_TEXT = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1735689600,
    "model": "m",
    "system_fingerprint": "b1-abc",
    "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}],
}
OPENAI_FINAL = {
    **OPENAI_TEXT,
    "choices": [],
    "usage": {
        "completion_tokens": 2,
        "prompt_tokens": 5,
        "total_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 0},
    },
    "timings": {
        "prompt_n": 5,
        "prompt_ms": 2.0,
        "predicted_n": 2,
        "predicted_ms": 3.0,
        "cache_n": 0,
    },
}
OPENAI_STOP = {
    **OPENAI_TEXT,
    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
}


def _spots(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for key, value in obj.items():
            out += _spots(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out += _spots(value, (*prefix, i))
    return out


@st.composite
def near_miss(draw: Any, chunk: dict[str, Any]) -> dict[str, Any]:
    """``chunk`` with one to three fields dropped or replaced by a weird value."""
    chunk = copy.deepcopy(chunk)
    for _ in range(draw(st.integers(1, 3))):
        spots = _spots(chunk)
        if not spots:
            break
        path = draw(st.sampled_from(spots))
        parent: Any = chunk
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(WEIRD)
    return chunk


def _json(obj: Any) -> bytes:
    # allow_nan: the NaN and Infinity literals Python and some servers write.
    return json.dumps(obj, allow_nan=True).encode()


def ndjson(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def sse(lines: list[bytes]) -> bytes:
    return b"".join(b"data: " + line + b"\n\n" for line in lines)


# -- the tests --------------------------------------------------------------------------------


@fuzz("ollama_near_miss")
@given(data=st.data())
def test_ollama_near_miss_chunks(ollama: Backend, data: Any) -> None:
    texts = data.draw(st.lists(st.just(OLLAMA_TEXT) | near_miss(OLLAMA_TEXT), max_size=3))
    final = data.draw(near_miss(OLLAMA_FINAL) | st.just(OLLAMA_FINAL))
    one_round(ollama, ndjson([_json(c) for c in [*texts, final]]))


@fuzz("ollama_lines")
@given(
    lines=st.lists(
        st.sampled_from([_json(OLLAMA_TEXT), _json(OLLAMA_FINAL)]) | JUNK_LINES, max_size=5
    ),
    cut=st.integers(min_value=0, max_value=400),
)
def test_ollama_broken_lines(ollama: Backend, lines: list[bytes], cut: int) -> None:
    body = ndjson(lines)
    one_round(ollama, body[: len(body) - cut] if cut < len(body) else body)


@fuzz("openai_near_miss")
@given(data=st.data())
def test_openai_near_miss_events(openai: Backend, data: Any) -> None:
    texts = data.draw(st.lists(st.just(OPENAI_TEXT) | near_miss(OPENAI_TEXT), max_size=3))
    stop = data.draw(st.just(OPENAI_STOP) | near_miss(OPENAI_STOP))
    final = data.draw(near_miss(OPENAI_FINAL) | st.just(OPENAI_FINAL))
    done = [b"[DONE]"] if data.draw(st.booleans()) else []
    one_round(openai, sse([*(_json(c) for c in [*texts, stop, final]), *done]))


@fuzz("openai_lines")
@given(
    lines=st.lists(
        st.sampled_from([_json(OPENAI_TEXT), _json(OPENAI_STOP), _json(OPENAI_FINAL), b"[DONE]"])
        | JUNK_LINES,
        max_size=5,
    ),
    cut=st.integers(min_value=0, max_value=400),
)
def test_openai_broken_lines(openai: Backend, lines: list[bytes], cut: int) -> None:
    body = sse(lines)
    one_round(openai, body[: len(body) - cut] if cut < len(body) else body)


def test_the_scripted_server_gives_a_real_round(ollama: Backend, openai: Backend) -> None:
    """The unharmed streams make a sample: the examples above start from real rounds."""
    for backend, body in (
        (ollama, ndjson([_json(OLLAMA_TEXT), _json(OLLAMA_FINAL)])),
        (openai, sse([_json(OPENAI_TEXT), _json(OPENAI_STOP), _json(OPENAI_FINAL), b"[DONE]"])),
    ):
        Script.body = body
        sample = derive_sample(Runner(backend).one_round(REQUEST))
        assert sample.output_tokens == 2, backend.name
