"""The Ollama stand-in speaks Ollama's wire protocol (reference/ollama-api.md).

Checked at the byte level with httpx, and through the official ``ollama`` client, whose
pydantic models are the strictest reader of the protocol we have.
"""

from __future__ import annotations

import json
import re

import httpx
import ollama
import pytest
from standin import EngineHost, OllamaStandin
from standin.wire import go_json, parse_go_duration, rfc3339

MODEL = "smollm2:135m"
CREATED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,8}[1-9])?Z$")
METRICS = (
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)


def _post(server: OllamaStandin, path: str, body: object) -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(server.url + path, content=data, timeout=60)


def test_streamed_generate_is_ndjson_with_metrics_only_at_the_end(
    ollama_standin: OllamaStandin,
) -> None:
    body = {"model": MODEL, "prompt": "Count: 1, 2, 3,", "options": {"num_predict": 6}}
    with httpx.stream("POST", ollama_standin.url + "/api/generate", json=body, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/x-ndjson"
        assert r.headers.get("transfer-encoding") == "chunked"
        raw = r.read()
    assert raw.endswith(b"}\n") and b"\n\n" not in raw  # one object per line, no blanks
    lines = [json.loads(line) for line in raw.splitlines()]
    *chunks, final = lines
    assert chunks, "the engine produced no chunk"
    for chunk in chunks:
        assert list(chunk) == ["model", "created_at", "response", "done"]
        assert chunk["model"] == MODEL and chunk["done"] is False
        assert CREATED_AT.match(chunk["created_at"]), chunk["created_at"]
    assert final["done"] is True and final["response"] == ""
    assert final["done_reason"] == "length"  # num_predict reached
    assert all(isinstance(final[k], int) and final[k] > 0 for k in METRICS)
    assert final["eval_count"] == 6
    assert final["total_duration"] >= final["eval_duration"] + final["prompt_eval_duration"]
    assert isinstance(final["context"], list) and all(isinstance(t, int) for t in final["context"])
    assert "".join(c["response"] for c in chunks).strip()


def test_chat_through_the_official_client(ollama_standin: OllamaStandin) -> None:
    client = ollama.Client(host=ollama_standin.url)
    parts = list(
        client.chat(
            MODEL,
            messages=[{"role": "user", "content": "Say hello."}],
            stream=True,
            options={"num_predict": 5, "temperature": 0, "seed": 1},
        )
    )
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    final = parts[-1]
    assert final.message.role == "assistant"
    assert final.eval_count == 5 and (final.eval_duration or 0) > 0
    assert ollama_standin.bodies[-1]["tools"] == []  # the client's own quirk reached us


def test_zero_metrics_are_absent_not_zero(ollama_standin: OllamaStandin) -> None:
    # The same prompt twice: the second is a prefix-cache hit. Its metrics stay present
    # and positive (the one remaining prompt token is timed), and no metric is ever 0.
    body = {"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}}
    for _ in range(2):
        answer = _post(ollama_standin, "/api/generate", body).json()
        assert all(answer.get(k, 1) != 0 for k in METRICS)
    load = _post(ollama_standin, "/api/generate", {"model": MODEL, "prompt": ""}).json()
    assert load["done_reason"] == "load" and not set(METRICS) & set(load)


def test_non_streaming_answer_is_one_object(ollama_standin: OllamaStandin) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": False,
            "options": {"num_predict": 4}}  # fmt: skip
    r = _post(ollama_standin, "/api/chat", body)
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    answer = r.json()
    assert answer["done"] is True and answer["message"]["content"]
    assert answer["eval_count"] == 4


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/api/generate", {"model": "nope", "prompt": "x"}, 404, "model 'nope' not found"),
        ("/api/generate", {"model": "", "prompt": "x"}, 404, "model '' not found"),
        ("/api/chat", {"model": "", "messages": []}, 400, "model is required"),
        ("/api/chat", {"model": "bad name!", "messages": []}, 400, "invalid model name"),
        ("/api/generate", b"", 400, "missing request body"),
        ("/api/show", {"model": "nope"}, 404, "model 'nope:latest' not found"),
        (
            "/api/generate",
            {"model": MODEL, "prompt": "x", "options": {"num_predict": "8"}},
            500,
            'option "num_predict" must be of type integer',
        ),
        (
            "/api/generate",
            {"model": MODEL, "prompt": "x", "think": True},
            400,
            f'"{MODEL}" does not support thinking',
        ),
    ],
)
def test_error_statuses_and_bodies(
    ollama_standin: OllamaStandin, path: str, body: object, status: int, error: str
) -> None:
    r = _post(ollama_standin, path, body)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert r.json() == {"error": error}


def test_unknown_paths_and_methods(ollama_standin: OllamaStandin) -> None:
    assert httpx.get(ollama_standin.url + "/").text == "Ollama is running"
    r = httpx.get(ollama_standin.url + "/api/nothing")
    assert (r.status_code, r.text) == (404, "404 page not found")
    r = httpx.get(ollama_standin.url + "/api/chat")
    assert (r.status_code, r.text) == (405, "405 method not allowed")


def test_busy_is_503_with_ollamas_message(ollama_standin: OllamaStandin) -> None:
    ollama_standin.faults.arm("busy", times=1)
    r = _post(ollama_standin, "/api/generate", {"model": MODEL, "prompt": "x"})
    assert r.status_code == 503
    assert r.json() == {
        "error": "server busy, please try again.  maximum pending requests exceeded"
    }


def test_error_line_mid_stream_keeps_status_200(ollama_standin: OllamaStandin) -> None:
    ollama_standin.faults.arm("error_midstream", after=2, message="runner died")
    body = {"model": MODEL, "prompt": "Count to ten.", "options": {"num_predict": 20}}
    r = _post(ollama_standin, "/api/generate", body)
    assert r.status_code == 200
    lines = [json.loads(line) for line in r.content.splitlines()]
    assert len(lines) == 3 and lines[-1] == {"error": "runner died"}


def test_management_endpoints_parse_with_the_official_client(
    standin_factory: object,
) -> None:
    server = standin_factory("ollama", gpu_fraction=0.5, version="0.12.9")  # type: ignore[operator]
    client = ollama.Client(host=server.url)
    assert httpx.get(server.url + "/api/version").json() == {"version": "0.12.9"}
    listing = client.list()
    assert [m.model for m in listing.models] == [MODEL]
    assert len(listing.models[0].digest or "") == 64
    client.generate(MODEL, "", keep_alive=0)  # an empty prompt with keep_alive 0 unloads
    assert client.ps().models == []
    show = client.show(MODEL)
    assert show.details is not None and show.details.format == "gguf"
    assert show.modelinfo is not None
    arch = show.modelinfo["general.architecture"]
    assert isinstance(show.modelinfo["general.parameter_count"], int)
    assert isinstance(show.modelinfo[f"{arch}.context_length"], int)
    assert "general.name" not in show.modelinfo
    client.generate(MODEL, "Hi", options={"num_predict": 1, "num_ctx": 1024})
    (running,) = client.ps().models
    assert running.model == MODEL and running.context_length == 1024
    assert running.size_vram == (running.size or 0) // 2


def test_wire_helpers_follow_go() -> None:
    assert go_json({"a": "<b>&", "n": 1}) == b'{"a":"\\u003cb\\u003e\\u0026","n":1}'
    assert rfc3339(1_767_607_200_000_000_000) == "2026-01-05T10:00:00Z"
    assert rfc3339(1_767_607_200_123_456_700) == "2026-01-05T10:00:00.1234567Z"
    assert parse_go_duration("1h30m") == 5_400_000_000_000
    assert parse_go_duration("-1m") == -60_000_000_000
    with pytest.raises(ValueError, match='time: invalid duration "5 min"'):
        parse_go_duration("5 min")


def test_fault_chosen_per_request_by_header(ollama_standin: OllamaStandin) -> None:
    body = {"model": MODEL, "prompt": "Count to ten.", "options": {"num_predict": 8}}
    headers = {"X-Tokrate-Fault": "truncate", "X-Tokrate-Fault-Args": '{"after": 1}'}
    r = httpx.post(ollama_standin.url + "/api/generate", json=body, headers=headers, timeout=60)
    assert r.status_code == 200 and len(r.content.splitlines()) == 1  # no done:true line
    r = httpx.post(ollama_standin.url + "/api/generate", json=body, timeout=60)
    assert json.loads(r.content.splitlines()[-1])["done"] is True  # the next one is whole


def test_replay_streams_recorded_real_tokens() -> None:
    engine = EngineHost(replay=True, replay_tokens=12)
    try:
        with OllamaStandin(engine) as server:
            client = ollama.Client(host=server.url)
            recording = next(iter(engine)).record()
            assert recording.report.output_tokens == 12 and recording.pieces
            parts = list(
                client.generate(MODEL, "anything", stream=True, options={"num_predict": 30})
            )
            texts = [p.response for p in parts[:-1]]
            assert len(texts) == 30 and parts[-1].eval_count == 30
            # the recorded pieces, cycled
            assert texts[: len(recording.pieces)] == recording.pieces
            assert (parts[-1].eval_duration or 0) > 0
    finally:
        engine.close()
