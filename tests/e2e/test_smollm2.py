"""The real SmolLM2-135M model through the real plugin: the figures must hang together.

Each test writes a small test file, runs it with ``--tokrate-model=...`` through
``pytester`` and reads back the ``Measurement`` that the inner test dumped as JSON.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import statistics
from pathlib import Path
from typing import Any

import pytest

import pytest_tokrate
from pytest_tokrate.backends.models import SMOLLM2_FILE

pytestmark = pytest.mark.e2e

MEASURE = """
import json
import re

def test_measure(tokrate):
    r = tokrate.run({call})
    name = re.sub(r"\\W", "_", tokrate.model)
    with open(f"result-{{name}}.json", "w") as fh:
        json.dump(r.to_dict(), fh)
"""

#: A completed assistant turn in SmolLM2's chat format: the model's next token is its
#: end-of-turn token, so the answer has zero tokens.
FINISHED_TURN = (
    "<|im_start|>user\\nSay OK.<|im_end|>\\n<|im_start|>assistant\\nOK.<|im_end|>\\n"
    "<|im_start|>user\\nThanks<|im_end|>\\n<|im_start|>assistant\\nYou're welcome!"
)


def run_measure(
    pytester: pytest.Pytester, call: str, *args: str, passed: bool = True
) -> tuple[dict[str, dict[str, Any]], str]:
    """Run ``tokrate.run(<call>)`` in an inner test: (results by model, terminal output)."""
    for path in pytester.path.glob("result-*.json"):
        path.unlink()
    pytester.makepyfile(MEASURE.format(call=call))
    if not any(a.startswith("--tokrate-model") for a in args):
        args = ("--tokrate-model=smollm2", *args)
    # One engine thread: the machines these run on are small and shared, and llama.cpp's
    # spinning worker threads slow down badly when they compete for the same cores.
    args = ("--tokrate-option=num_thread=1", *args)
    result = pytester.runpytest(*args)
    out = result.stdout.str()
    expected = pytest.ExitCode.OK if passed else pytest.ExitCode.TESTS_FAILED
    assert result.ret == expected, out
    results = {
        p.stem.removeprefix("result-"): json.loads(p.read_text())
        for p in pytester.path.glob("result-*.json")
    }
    return results, out


def measure(pytester: pytest.Pytester, call: str, *args: str) -> dict[str, dict[str, Any]]:
    return run_measure(pytester, call, *args)[0]


def one(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    assert len(results) == 1
    return next(iter(results.values()))


def test_figures_are_consistent(pytester: pytest.Pytester) -> None:
    r = one(
        measure(pytester, "'Write a short story about a cat.', rounds=5, warmup=1, num_predict=32")
    )
    samples = r["samples"]
    assert r["rounds"] == len(samples) == 5
    for s in samples:
        n = s["output_tokens"]
        assert 1 < n <= 32
        assert s["prompt_tokens"] > 0
        assert 0 < s["ttft_s"] < s["e2e_s"]
        # TTFT plus (n - 1) inter-token times is the whole request.
        assert s["ttft_s"] + s["tpot_s"] * (n - 1) == pytest.approx(s["e2e_s"], rel=1e-9)
        assert s["e2e_tps"] == pytest.approx(n / s["e2e_s"])
        assert s["decode_tps"] == s["decode_tps_engine"]  # llama.cpp's own timer is used
        assert s["prefill_tps"] > 0
        assert len(s["itl_s"]) == s["chunks"] - 1
        assert sum(s["itl_s"]) <= s["e2e_s"] - s["ttft_s"] + 1e-9
        assert s["text"] and s["words"] > 0
    # Client-derived decode rate vs the engine's, on rounds cut by num_predict (see README,
    # "Client vs engine decode rate"). The client span holds the same n - 1 decode steps
    # plus sampling and our loop, so it cannot be faster than the engine (2% for clock
    # granularity) and on a local engine is within a few percent; 15% leaves room for a
    # busy shared machine descheduling us between steps.
    ratios = [
        s["decode_tps_client"] / s["decode_tps_engine"]
        for s in samples
        if s["done_reason"] == "length"
    ]
    assert ratios, "no round was cut by num_predict"
    assert 0.85 <= statistics.median(ratios) <= 1.02, ratios
    summary = r["summaries"]["decode_tps"]
    assert summary["n"] == 5
    assert summary["median"] == pytest.approx(statistics.median(s["decode_tps"] for s in samples))
    assert summary["min"] <= summary["median"] <= summary["max"]


def test_deterministic_by_default_and_recorded(pytester: pytest.Pytester) -> None:
    r = one(measure(pytester, "'Name three colours.', rounds=3, warmup=0, num_predict=16"))
    texts = [s["text"] for s in r["samples"]]
    assert texts[0] and len(set(texts)) == 1, texts
    options = r["settings"]["options"]
    assert (options["temperature"], options["seed"], options["num_ctx"]) == (0.0, 42, 2048)
    assert r["request"]["options"] == options


def test_seed_is_applied_when_sampling(pytester: pytest.Pytester) -> None:
    call = "'Tell me a story.', rounds=2, warmup=0, num_predict=16, temperature=0.9, seed={seed}"
    texts = []
    for seed in (1, 2, 3):
        samples = one(measure(pytester, call.format(seed=seed)))["samples"]
        assert samples[0]["text"] == samples[1]["text"]  # same seed, same text
        texts.append(samples[0]["text"])
    assert len(set(texts)) > 1, texts  # different seeds sample differently


def test_warmup_rounds_are_not_counted(pytester: pytest.Pytester) -> None:
    r = one(measure(pytester, "'Hi', rounds=3, warmup=2, num_predict=4"))
    assert r["rounds"] == 3 and r["warmup_rounds"] == 2
    # The model loaded during warm-up: no measured round carries the load.
    assert [s["load_s"] for s in r["samples"]] == [None, None, None]
    assert [s["index"] for s in r["samples"]] == [0, 1, 2]


def test_without_warmup_the_first_round_pays_the_load(pytester: pytest.Pytester) -> None:
    r = one(measure(pytester, "'Hi', rounds=2, warmup=0, num_predict=4"))
    first, second = r["samples"]
    assert first["load_s"] > 0
    assert second["load_s"] is None
    assert r["summaries"]["load"]["n"] == 1


def test_cache_is_busted_by_default(pytester: pytest.Pytester) -> None:
    r = one(measure(pytester, "'Explain rain in one line.', rounds=3, warmup=1, num_predict=4"))
    assert r["cache_busting"] == "kv-reset"
    assert r["settings"]["cache"] == "bust"
    for s in r["samples"]:
        assert s["prompt_tokens_cached"] == 0
        assert s["prefill_tps"] > 0


def test_cache_allowed_is_recorded(pytester: pytest.Pytester) -> None:
    r = one(
        measure(
            pytester,
            "'Explain rain in one line.', rounds=2, warmup=1, num_predict=4",
            "--tokrate-cache=allow",
        )
    )
    assert r["cache_busting"] == "none"
    for s in r["samples"]:
        # The whole prompt is reused but its last token, which is evaluated again.
        assert s["prompt_tokens_cached"] == s["prompt_tokens"] - 1


def test_empty_answer_is_recorded_and_reported(pytester: pytest.Pytester) -> None:
    results, out = run_measure(
        pytester, f"{FINISHED_TURN!r}, raw=True, rounds=2, warmup=0", passed=False
    )
    # The test fails, plainly, because nothing can be measured without text ...
    assert "tokrate: smollm2 answered nothing in all 2 measured round(s)" in out
    assert "Traceback" not in out and "ZeroDivisionError" not in out
    # ... and the measurement is still recorded and reported as it is.
    r = one(results)
    for s in r["samples"]:
        assert s["output_tokens"] == 0
        assert s["text"] == ""
        assert s["done_reason"] == "stop"
        assert s["ttft_s"] is None and s["tpot_s"] is None
        assert s["decode_tps"] is None and s["decode_tps_client"] is None
        assert s["e2e_tps"] == 0.0
        assert s["e2e_s"] > 0
        assert s["prompt_tokens"] > 0 and s["prefill_tps"] > 0
    assert r["summaries"]["decode_tps"]["n"] == 0
    assert r["summaries"]["decode_tps"]["median"] is None
    assert "2 of 2 rounds produced no tokens" in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if "decode tok/s" in line)
    row = lines[header + 2].split()  # below the header and its rule
    assert row[0] == "test_empty_answer_is_recorded_and_reported.py::test_measure[smollm2]"
    assert row[2] == "-"  # decode tok/s: no rate, no division by zero
    assert row[-3:] == ["0", "±0", "2"]  # out tok median ±stdev, rounds


def test_chat_messages_and_system_prompt(pytester: pytest.Pytester) -> None:
    call = (
        "messages=[{{'role': 'user', 'content': 'Say hi'}}], system={system!r}, "
        "rounds=1, warmup=0, num_predict=8"
    )
    short = one(measure(pytester, call.format(system="You are terse.")))
    longer = one(
        measure(pytester, call.format(system="You are terse. Answer in one English sentence."))
    )
    assert short["request"]["system"] == "You are terse."
    assert short["request"]["messages"] == [{"role": "user", "content": "Say hi"}]
    assert short["samples"][0]["output_tokens"] > 0
    # The system prompt reached the model: five more words, more prompt tokens.
    assert longer["samples"][0]["prompt_tokens"] > short["samples"][0]["prompt_tokens"]


def test_stop_sequence_ends_the_answer_before_it(pytester: pytest.Pytester) -> None:
    r = one(
        measure(
            pytester,
            "'List three colours, one per line.', rounds=1, warmup=0, num_predict=40, stop=['\\n']",
        )
    )
    s = r["samples"][0]
    assert s["text"] and "\n" not in s["text"]
    assert s["done_reason"] == "stop"
    assert s["output_tokens"] < 40


def test_metadata_and_versions_recorded(pytester: pytest.Pytester, smollm2_gguf: Path) -> None:
    r = one(measure(pytester, "'Hi', rounds=1, warmup=0, num_predict=2"))
    m = r["model"]
    assert m["name"] == "smollm2" and m["backend"] == "embedded"
    assert m["format"] == "gguf"
    assert m["architecture"] == "llama"
    assert 100e6 < m["parameter_count"] < 200e6  # a 135M-parameter model
    assert m["parameter_size"] == "135M"
    in_file_name = re.search(r"\.(Q\w+)\.gguf$", SMOLLM2_FILE)  # ...Instruct.Q4_1.gguf
    assert in_file_name is not None
    assert m["quantization"] == in_file_name.group(1)
    assert m["context_length"] >= 2048
    assert m["embedding_length"] > 0
    assert m["digest"] == "sha256:" + hashlib.sha256(smollm2_gguf.read_bytes()).hexdigest()
    assert m["size_bytes"] == smollm2_gguf.stat().st_size
    v = r["versions"]
    assert v["pytest_tokrate"] == pytest_tokrate.__version__
    assert v["backend"] == "embedded"
    assert v["engine"] == f"llama-cpp-python {importlib.metadata.version('llama-cpp-python')}"


def test_gguf_path_works(pytester: pytest.Pytester, smollm2_gguf: Path) -> None:
    r = one(
        measure(
            pytester, "'Hi', rounds=1, warmup=0, num_predict=4", f"--tokrate-model={smollm2_gguf}"
        )
    )
    assert r["model"]["name"] == str(smollm2_gguf)
    assert r["model"]["backend"] == "embedded"
    assert r["model"]["digest"] == "sha256:" + hashlib.sha256(smollm2_gguf.read_bytes()).hexdigest()
    assert r["samples"][0]["output_tokens"] > 0


def test_q2k_runs_and_differs_from_the_original(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TOKRATE_CACHE_DIR", str(tmp_path))
    results = measure(
        pytester,
        "'Name three colours.', rounds=2, warmup=0, num_predict=8",
        "--tokrate-model=smollm2,smollm2-q2_k",
    )
    base, q2k = results["smollm2"], results["smollm2_q2_k"]
    assert (tmp_path / "models" / "SmolLM2-135M-Instruct.Q2_K.gguf").is_file()
    assert base["model"]["quantization"] != "Q2_K"
    assert q2k["model"]["quantization"] == "Q2_K"
    assert q2k["model"]["digest"] != base["model"]["digest"]
    assert q2k["model"]["size_bytes"] < base["model"]["size_bytes"]
    assert q2k["model"]["parameter_count"] == base["model"]["parameter_count"]
    for r in (base, q2k):
        assert all(s["output_tokens"] > 0 for s in r["samples"])
        assert r["summaries"]["decode_tps"]["n"] == 2
