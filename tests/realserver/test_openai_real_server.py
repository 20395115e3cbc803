"""The OpenAI-compatible backend end to end against a real llama.cpp ``llama-server``.

The server is llama.cpp's own, built from the source the embedded engine was built from
(conftest.py), serving SmolLM2 with two slots and one thread. Each check runs pytest with
the plugin in a subprocess, as a user would (``--tokrate-backend=openai``), and reads what
the inner test measured; the server's own log says what it computed for the same requests.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from realserver_support import LlamaServer, get_json

pytestmark = pytest.mark.real_llamacpp

SYSTEM = "You are a sports reporter. Answer in two sentences."
PROMPT = "Which sport do the Geelong Cats play, and where is their home ground?"
#: Short answers keep the module fast on two cores; long enough for texts to differ.
NUM_PREDICT = 32
ROUNDS = 5
#: A hang in a mishandled fault must fail this suite, not stall CI.
RUN_LIMIT_S = 120.0

INNER = """
import json

def test_measure(tokrate):
    r = tokrate.run({prompt!r}, system={system!r}, num_predict={num_predict}, temperature=0)
    out = {{
        "measurement": r.to_dict(),
        "cache": r.extra["cache"],
        "token_sources": [s.extra.get("token_source") for s in r.samples],
    }}
    with open("measurement.json", "w") as fh:
        json.dump(out, fh, default=str)
"""


def plugin_args(server: LlamaServer, model: str) -> list[str]:
    return ["--tokrate-backend=openai", f"--tokrate-host={server.url}", f"--tokrate-model={model}"]


def run_plugin(workdir: Path, server: LlamaServer, *args: str) -> dict[str, Any]:
    """Run the inner test through pytest in a subprocess; what it measured, as JSON."""
    workdir.mkdir(parents=True, exist_ok=True)
    inner = INNER.format(prompt=PROMPT, system=SYSTEM, num_predict=NUM_PREDICT)
    (workdir / "test_inner.py").write_text(inner, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    command = [
        sys.executable, "-m", "pytest", "test_inner.py", "-p", "no:cacheprovider", "-q",
        "--tokrate-gate=off", *plugin_args(server, server.model_id()), *args,
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=RUN_LIMIT_S
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\nserver:\n{server.log_tail()}"
    data: dict[str, Any] = json.loads((workdir / "measurement.json").read_text("utf-8"))
    data["output"] = done.stdout
    return data


@pytest.fixture(scope="module")
def exact_run(llama_server: LlamaServer, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Five measured rounds at temperature 0 with the default --tokrate-cache=bust, and the
    decode timings the server logged for the same requests."""
    since = llama_server.log_size()
    data = run_plugin(
        tmp_path_factory.mktemp("exact"),
        llama_server,
        f"--tokrate-rounds={ROUNDS}",
        "--tokrate-warmup=1",
    )
    data["server_evals"] = llama_server.eval_timings(since)
    return data


def test_five_rounds_at_temperature_0_give_one_answer(exact_run: Any) -> None:
    samples = exact_run["measurement"]["samples"]
    assert len(samples) == ROUNDS
    texts = {s["text"] for s in samples}
    assert len(texts) == 1, texts
    assert samples[0]["output_tokens"] > 0


def test_decode_rate_is_the_servers_own(exact_run: Any) -> None:
    """Per round, decode tok/s is llama-server's timings (predicted_n / predicted_ms): the
    same figure its log prints for that request."""
    samples = exact_run["measurement"]["samples"]
    # The warm-up round and the measured ones ran one after another, in this order.
    evals = exact_run["server_evals"][-ROUNDS:]
    assert len(exact_run["server_evals"]) == ROUNDS + 1, exact_run["server_evals"]
    assert exact_run["token_sources"] == ["timings"] * ROUNDS
    for sample, (ms, n) in zip(samples, evals, strict=True):
        assert sample["decode_tps"] == sample["decode_tps_engine"]
        assert sample["output_tokens"] == n
        # The log rounds the time to 0.01 ms: a relative error well under 1e-3.
        assert sample["decode_tps_engine"] == pytest.approx(n / ms * 1000.0, rel=1e-3)


def test_no_round_reuses_cached_prompt_tokens(exact_run: Any) -> None:
    samples = exact_run["measurement"]["samples"]
    assert [s["prompt_tokens_cached"] for s in samples] == [0] * ROUNDS
    assert all(s["prompt_tokens_processed"] == s["prompt_tokens"] > 0 for s in samples)
    cache = exact_run["cache"]
    assert cache["method"] == "cache_prompt=false" and cache["exact_prompt"] is True
    assert cache["held"] is True and cache["reused_rounds"] == []
    assert cache["verified_rounds"] == ROUNDS


def test_allowed_cache_is_reused(llama_server: LlamaServer, tmp_path: Path) -> None:
    """The same check, with the cache allowed, sees the server reuse it: it can fail."""
    data = run_plugin(
        tmp_path, llama_server, "--tokrate-rounds=3", "--tokrate-warmup=1", "--tokrate-cache=allow"
    )
    samples = data["measurement"]["samples"]
    cached = [s["prompt_tokens_cached"] for s in samples]
    assert all(c > 0 for c in cached[1:]), cached
    assert all(s["prompt_tokens_processed"] < s["prompt_tokens"] for s in samples[1:])
    assert data["cache"]["method"] == "none" and data["cache"]["held"] is None


def test_model_facts_from_the_server(
    exact_run: Any, llama_server: LlamaServer, smollm2_gguf: Path
) -> None:
    """Quantization, context and size come from ``/v1/models`` and ``/props``."""
    model = exact_run["measurement"]["model"]
    meta = llama_server_meta(llama_server)
    assert model["backend"] == "openai" and model["format"] == "gguf"
    assert model["quantization"] == "Q4_1"
    assert model["parameter_count"] == meta["n_params"]
    assert 130e6 < model["parameter_count"] < 140e6  # SmolLM2-135M
    assert model["context_length"] == meta["n_ctx_train"] == 8192
    assert model["extra"]["loaded_context_length"] == llama_server.ctx_per_slot
    assert model["extra"]["total_slots"] == llama_server.parallel
    assert model["extra"]["model_file"] == smollm2_gguf.name
    assert model["digest"].startswith("llama.cpp-facts:")
    assert model["server_version"]


def llama_server_meta(server: LlamaServer) -> dict[str, Any]:
    meta: dict[str, Any] = get_json(f"{server.url}/v1/models")["data"][0]["meta"]
    return meta


KILLED = """
PROMPT = "Write a long story about a dragon who lives in a castle."

def test_1_killed_mid_stream(tokrate):
    tokrate.run(PROMPT, num_predict=1000)

def test_2_after_the_death(tokrate):
    tokrate.run(PROMPT, num_predict=8)
"""


def kill_when_streaming(server: LlamaServer, tokens: int, done: list[int]) -> None:
    """SIGKILL the server once it has decoded ``tokens`` tokens of a request."""
    deadline = time.monotonic() + RUN_LIMIT_S
    while time.monotonic() < deadline:
        try:
            decoded = server.decoded_so_far()
        except OSError:
            decoded = 0
        if decoded >= tokens:
            server.kill()
            done.append(decoded)
            return
        time.sleep(0.05)


def test_server_killed_mid_stream(
    pytester: pytest.Pytester, doomed_llama_server: LlamaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 while a round streams: that test errors (the partial round discarded, the
    remedy named), the next one finds nothing listening, nothing shows a traceback."""
    monkeypatch.delenv("CI", raising=False)
    server = doomed_llama_server
    pytester.makepyfile(test_killed=KILLED)
    killed: list[int] = []
    killer = threading.Thread(target=kill_when_streaming, args=(server, 8, killed), daemon=True)
    killer.start()
    result = pytester.runpytest_subprocess(
        *plugin_args(server, server.model_id()),
        "--tokrate-rounds=1", "--tokrate-warmup=0", "--tokrate-gate=off", "-p",
        "no:cacheprovider", "-rA", timeout=RUN_LIMIT_S,
    )  # fmt: skip
    killer.join(5)
    assert killed, f"the server was never seen streaming:\n{server.log_tail()}"
    result.assert_outcomes(errors=2)
    text = result.stdout.str()
    assert "Traceback" not in text and "pytest_tokrate/" not in text, text
    dropped = re.search(r"dropped after (\d+) chunks", text)
    assert dropped and int(dropped.group(1)) >= 1, text
    chunks = dropped.group(1)
    assert f"the partial round ({chunks} chunks) was discarded" in text, text
    assert "Check that the server is still running" in text, text
    assert "not reachable" in text and "`llama-server -m model.gguf`" in text, text
