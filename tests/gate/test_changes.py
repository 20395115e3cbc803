"""Environment or configuration: what the gate judges, names, leaves unjudged, and how a
model change reads as a trade-off. Fingerprints and definitions are the real ones of a
SmolLM2 measurement; speed samples are real recorded rounds (benchmarks/data)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from pytest_tokrate.errors import UsageError
from pytest_tokrate.gate import judge as gate
from pytest_tokrate.gate import rule
from pytest_tokrate.gate.changes import (
    configuration_changes,
    environment_changes,
    unjudged,
)
from pytest_tokrate.gate.records import build, run_record
from pytest_tokrate.gate.rule import GateSettings
from pytest_tokrate.gate.siblings import reference_baseline, without_model
from pytest_tokrate.gate.store import save
from pytest_tokrate.machine import fingerprint


@pytest.fixture
def env(measurement: Any) -> dict[str, Any]:
    return json.loads(json.dumps(fingerprint.environment(measurement.model.to_dict(), {})))


def words(base_fp: Any, cur_fp: Any, base_def: Any, cur_def: Any) -> list[str]:
    return [str(c) for c in configuration_changes(base_fp, cur_fp, base_def, cur_def)]


def test_each_configuration_change_is_named_in_words(measurement: Any, env: Any) -> None:
    request, settings = measurement.request, measurement.settings
    base = fingerprint.definition(request, settings)
    assert words(env, env, base, base) == []
    q2 = copy.deepcopy(env)
    q2["model"].update(name="smollm2-q2_k", quantization="Q2_K", digest="feedbeef" * 8)
    assert words(env, q2, base, base) == ["model smollm2 -> smollm2-q2_k (Q4_1 -> Q2_K)"]
    swapped = copy.deepcopy(env)
    swapped["model"].update(digest="feedbeef" * 8)
    assert words(env, swapped, base, base) == [
        f"model smollm2: another file (digest {env['model']['digest'][:12]} -> feedbeeffeed)"
    ]
    upgraded = copy.deepcopy(env)
    upgraded["engine"]["engine_version"] = "llama-cpp-python 0.3.40"
    assert words(env, upgraded, base, base) == [
        f"engine {env['engine']['engine_version']} -> llama-cpp-python 0.3.40"
    ]
    threads = dict(request, options={**request["options"], "num_thread": 2})
    system = dict(request, system="You answer in one word. " * 9)
    assert words(env, env, base, fingerprint.definition(threads, settings)) == [
        f"num_thread {request['options'].get('num_thread', 'default')} -> 2"
    ]
    assert words(env, env, base, fingerprint.definition(system, settings)) == [
        "system prompt: added (216 characters)"
    ]
    checked = fingerprint.definition(request, settings, checks=["contains:red"])
    assert words(env, env, base, checked) == ["quality checks changed"]
    # A prompt edit names the first line that differs (from per-line hashes, not the text).
    three = dict(request, prompt="Line one.\nLine two.\nLine three.")
    edited = dict(request, prompt="Line one.\nLine 2!!.\nLine three.")
    assert words(
        env, env, fingerprint.definition(three, settings), fingerprint.definition(edited, settings)
    ) == ["prompt: changed (same length, 31 characters), from line 2 of 3"]

    # The embedded engine's load-time settings: named when both runs recorded them, once.
    def engine(**settings: Any) -> dict[str, Any]:
        fp = copy.deepcopy(env)
        fp["engine"]["engine_settings"] = {"flash_attn": "auto", "type_k": "f16", **settings}
        return fp

    assert words(engine(), engine(type_k="q8_0"), base, base) == ["engine type_k f16 -> q8_0"]
    assert words(env, engine(), base, base) == []  # a baseline from before they were recorded
    off = dict(request, options={**request["options"], "flash_attn": "off"})
    assert words(
        engine(), engine(flash_attn="off"), base, fingerprint.definition(off, settings)
    ) == ["flash_attn default -> off"]
    # How the prompt cache was defeated: named when both runs recorded it.
    nonce = fingerprint.environment(measurement.model.to_dict(), {}, "nonce-prefix")
    evict = fingerprint.environment(measurement.model.to_dict(), {}, "evict")
    assert words(nonce, evict, base, base) == ["prompt cache method nonce-prefix -> evict"]
    assert words(env, evict, base, base) == []  # a baseline from before it was recorded


def test_the_environment_is_hardware_for_the_engine_and_the_name_for_a_server(env: Any) -> None:
    other = copy.deepcopy(env)
    other["hardware"]["cpu_model"] = "Other CPU"
    assert [c.field for c in environment_changes(env, other)] == ["hardware.cpu_model"]
    server, moved = copy.deepcopy(env), copy.deepcopy(other)
    for fp in (server, moved):
        fp["engine"]["backend"] = "ollama"
    assert environment_changes(server, moved) == []  # the client's CPU is not the server's
    old = copy.deepcopy(env)
    del old["hardware"]["gpu_driver"]  # a field an older file lacks is not a change
    assert environment_changes(old, env) == []


def test_figures_whose_meaning_changed_are_not_judged(measurement: Any, env: Any) -> None:
    request, settings = measurement.request, measurement.settings
    base = fingerprint.definition(request, settings)
    longer = dict(request, options={**request["options"], "num_predict": 99})
    changes = configuration_changes(env, env, base, fingerprint.definition(longer, settings))
    assert set(unjudged(changes)) == {"e2e", "e2e_tps"}
    checked = configuration_changes(
        env, env, base, fingerprint.definition(request, settings, checks=["x"])
    )
    assert "minimum pass rate" in unjudged(checked)["pass_rate"]


def run(decode: list[float], passed: int, model: str = "d1") -> dict[str, Any]:
    return {
        "definition": {"hash": "d", "prompt": "p", "options": {}, "cache": None, "checks": None},
        "rounds": len(decode),
        "warmup": 1,
        "samples": {"decode_tps": list(decode)},
        "summaries": {},
        "quality": {"passed": passed, "total": len(decode)},
    }


def judge_model_swap(
    base: list[float], cur: list[float], passed: int, settings: GateSettings
) -> list[Any]:
    fp16 = {"hardware": {}, "engine": {}, "model": {"name": "fp16", "quantization": "F16"}}
    q2 = {"hardware": {}, "engine": {}, "model": {"name": "q2", "quantization": "Q2_K"}}
    return gate.judge_run(
        test_id="t.py::test_country[q2]",
        where="baselines/t/test_country[fp16]@ollama.json",
        baseline=run(base, len(base)),
        baseline_fingerprint=fp16,
        current=run(cur, passed),
        current_fingerprint=q2,
        settings=settings,
    )


def test_a_pass_rate_drop_fails_whatever_the_speed_unless_a_policy_accepts_it(
    recorded: dict[str, dict[str, list[float]]],
) -> None:
    base = recorded["a1"]["decode_tps"][:20]
    faster = [v * 1.8 for v in recorded["a1"]["decode_tps"][20:30]]
    findings = judge_model_swap(base, faster, passed=6, settings=GateSettings())
    kinds = [f.kind for f in findings]
    assert kinds[0] == "regression" and kinds[-1] == "gate"
    message = findings[0].message
    assert "regression of pass rate" in message and "model fp16 -> q2 (F16 -> Q2_K)" in message
    assert "trade-off: decode tok/s 1.8" in message and "pass rate -40 pts" in message
    assert findings[-1].data["gate"]["tradeoff"]["verdict"] == "regression"
    policy = GateSettings(tradeoffs=rule.parse_tradeoff("50 points for decode_tps +30%", "t"))
    accepted = judge_model_swap(base, faster, passed=6, settings=policy)
    assert [f.kind for f in accepted] == ["accepted-tradeoff", "gate"]
    verdict = accepted[-1].data["gate"]
    assert verdict["verdict"] == "accepted" and verdict["why"] == "50 points for decode_tps +30%"
    # Not fast enough for the policy: the drop fails.
    greedy = GateSettings(tradeoffs=rule.parse_tradeoff("50 points for decode_tps +90%", "t"))
    assert judge_model_swap(base, faster, passed=6, settings=greedy)[0].kind == "regression"
    # A drop beyond the policy's points fails too.
    assert judge_model_swap(base, faster, passed=2, settings=policy)[0].kind == "regression"


def test_a_bad_policy_names_the_value_and_the_fix() -> None:
    with pytest.raises(UsageError, match="write the gain with - \\(lower is better\\)"):
        rule.parse_tradeoff("5 points for ttft +30%", "--tokrate-accept-tradeoff")
    with pytest.raises(UsageError, match="'5 points for decode_tps \\+30%'"):
        rule.parse_tradeoff("5% for speed", "--tokrate-accept-tradeoff")


def test_medians_raw_change_and_machine_adjusted_change_have_their_own_columns(
    recorded: dict[str, dict[str, list[float]]],
) -> None:
    data = recorded["a1"]
    base, ref = data["decode_tps"][:10], data["machine_ref_tps"][:10]
    # The machine ran 20% faster, the model kept its share of it: raw +20%, adjusted 0%.
    now, ref_now = [v * 1.2 for v in base], [r * 1.2 for r in ref]
    c = rule.compare_speed("decode_tps", base, now, 0.10, references=(ref, ref_now))
    assert c.raw_change == pytest.approx(0.2) and c.change == pytest.approx(0.0, abs=1e-9)
    header, row, *foot = gate.table([c])
    assert "machine-adjusted" in header
    assert "+20.0%" in row and "+0.0%" in row and row.rstrip().endswith("ok")
    assert "The machine itself ran 20% faster" in foot[-1]
    raw = rule.compare_speed("decode_tps", base, now, 0.1)
    assert "machine-adjusted" not in gate.table([raw])[0]


def test_references_taken_differently_are_not_used(
    recorded: dict[str, dict[str, list[float]]],
) -> None:
    """Before the reference ran on one thread it followed the test's thread count."""
    data = recorded["a1"]
    old, new = run(data["decode_tps"][:10], 10), run(data["decode_tps"][10:20], 10)
    for r, refs in ((old, data["machine_ref_tps"][:10]), (new, data["machine_ref_tps"][10:20])):
        r["samples"]["machine_ref_tps"] = refs
    old["engine_threads"], new["machine_ref_threads"] = 2, 1
    (c,) = rule.compare_runs(old, new, GateSettings(metrics=("decode_tps",)))
    assert not c.adjusted
    old["engine_threads"] = 1  # recorded on one thread: the same reference
    (c,) = rule.compare_runs(old, new, GateSettings(metrics=("decode_tps",)))
    assert c.adjusted


def test_a_recorded_run_says_its_reference_ran_on_one_thread(measurement: Any) -> None:
    record = run_record(measurement)
    assert "machine_ref_tps" in record["samples"]
    assert record["machine_ref_threads"] == 1


@pytest.mark.parametrize(
    ("test_id", "model", "expected"),
    [
        ("t.py::test_a[smollm2]", "smollm2", "t.py::test_a"),
        ("t.py::test_a[gemma2:2b-instruct-q2_K-3]", "gemma2:2b-instruct-q2_K", "t.py::test_a[3]"),
        ("t.py::test_a[x-smollm2]", "smollm2", "t.py::test_a[x]"),
        ("s.yaml::case[a-b-c]", "b", "s.yaml::case[a-c]"),
        ("t.py::test_a[other]", "smollm2", None),
        ("t.py::test_a", "smollm2", None),
    ],
)
def test_the_test_without_its_model(test_id: str, model: str, expected: str | None) -> None:
    assert without_model(test_id, model) == expected


def test_a_model_without_a_baseline_is_judged_against_the_reference_models(
    tmp_path: Path, measurement: Any
) -> None:
    fp = fingerprint.environment(measurement.model.to_dict(), {})
    record = run_record(measurement)

    def write(model: str, reference: str, when: str) -> Path:
        test_id = f"t.py::test_a[{model}]"
        path = tmp_path / f"test_a[{model}]@embedded.json"
        doc = build(
            test_id,
            "embedded",
            {**fp, "model": {**fp["model"], "name": model}},
            {"run 1": record},
            {"model_id": model, "test_key": "t.py::test_a", "reference_model": reference},
        )
        doc["recorded_at"] = when
        save(path, doc)
        return path

    assert reference_baseline(tmp_path, "t.py::test_a", "embedded") is None
    write("b", "a", "2026-01-01T00:00:00Z")
    first = write("a", "a", "2026-01-01T00:00:00Z")
    assert reference_baseline(tmp_path, "t.py::test_a", "embedded").path == first
    later = write("c", "c", "2026-02-01T00:00:00Z")  # recorded again, c listed first
    assert reference_baseline(tmp_path, "t.py::test_a", "embedded").path == later
    assert reference_baseline(tmp_path, "t.py::test_b", "embedded") is None
    assert reference_baseline(tmp_path, "t.py::test_a", "ci") is None
