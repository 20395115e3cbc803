"""Hypothesis fuzzing of the two loaders that read files users edit by hand.

Only the documented errors may come out: :class:`~pytest_tokrate.errors.BaselineError`
from the baseline loader, :class:`~pytest_tokrate.quality.suite.SuiteError` from the YAML
suite loader. A baseline that loads must also go through the gate's comparison without
anything but findings (or a documented error), since that is what a loaded baseline is
for. Inputs: random bytes, random text, random JSON / YAML structures, and near misses
of a real file (a key dropped, a value replaced by one of another type, an unknown key
added, NaN and infinities, huge and negative numbers).

Runs are derandomized with a fixed number of examples, so CI sees the same inputs each
time; ``TOKRATE_FUZZ_SCALE=10`` multiplies the examples for a longer local session.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from reliability_support import FUZZ_SCALE, fuzz_settings

from pytest_tokrate.errors import BaselineError, TokrateError
from pytest_tokrate.gate import store as baselines
from pytest_tokrate.gate.judge import judge_run
from pytest_tokrate.gate.rule import GateSettings
from pytest_tokrate.quality.suite import SuiteError, load_suite

SCALE = FUZZ_SCALE
EXAMPLES = {
    "baseline_bytes": 150,
    "baseline_json": 150,
    "baseline_near_miss": 300,
    "suite_bytes": 150,
    "suite_structure": 150,
    "suite_near_miss": 300,
}
#: The number of fuzz examples this module runs (for the closing note of the issue).
TOTAL_EXAMPLES = sum(EXAMPLES.values()) * SCALE


def fuzz(name: str, examples: dict[str, int] = EXAMPLES) -> Any:
    """Hypothesis settings of the fuzz test ``name`` (its count in ``examples``): also used
    by the generative suite tests, each module with its own table of counts."""
    return fuzz_settings(examples[name])


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["", "run 1", "decode_tps", "1", "-1", "NaN", "{{x}}", "!!python/name:os"])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)


def paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``data`` (dict keys and list indexes)."""
    out = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            out += paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out += paths(value, (*prefix, i))
    return out


def mutate(data: Any, draw: Any) -> Any:
    """One to three near-miss edits of a valid document."""
    data = copy.deepcopy(data)
    for _ in range(draw(st.integers(1, 3))):
        spots = [p for p in paths(data) if p]
        if not spots:
            break
        path = draw(st.sampled_from(spots))
        parent = data
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        action = draw(st.sampled_from(["drop", "replace", "add", "wrap"]))
        if action == "drop":
            del parent[last]
        elif action == "replace":
            parent[last] = draw(JSON)
        elif action == "wrap":
            parent[last] = [parent[last]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(JSON)
        else:
            parent.insert(last, draw(JSON))
    return data


# -- baselines ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_baseline() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A baseline document of a real measurement, and the record and fingerprint of a
    second real measurement to compare with it."""
    from pytest_tokrate.backends.base import Request
    from pytest_tokrate.backends.llamacpp import LlamaCppBackend
    from pytest_tokrate.backends.models import resolve_model
    from pytest_tokrate.core.runner import Runner
    from pytest_tokrate.core.settings import Layer, resolve

    backend = LlamaCppBackend(resolve_model("smollm2"))
    try:
        options = {"num_predict": 4, "num_thread": 1}
        settings_ = resolve([Layer("fuzz", rounds=3, warmup=0, options=options)])
        runs = [Runner(backend).run(Request(prompt="Name a colour."), settings_) for _ in "ab"]
    finally:
        backend.close()
    for m in runs:
        m.test_id = "tests/test_fuzz.py::test_speed[smollm2]"
    first, second = runs
    doc = baselines.build(
        first.test_id,
        "embedded",
        baselines.measurement_environment(first),
        {"run 1": baselines.run_record(first)},
    )
    baselines.validate(json.loads(baselines.dumps(doc)), "fixture")  # really valid
    return doc, baselines.run_record(second), baselines.measurement_environment(second)


def load_and_judge(text: str, current: dict[str, Any], fingerprint: dict[str, Any]) -> None:
    """What the gate does with a file: load it, then compare each of its runs."""
    try:
        loaded = baselines.parse(text, "baselines/fuzz@embedded.json")
    except BaselineError as exc:
        assert "baselines/fuzz@embedded.json" in str(exc)  # it names the file
        return
    judge_each_run(loaded, current, fingerprint)


def judge_each_run(
    loaded: baselines.Baseline, current: dict[str, Any], fingerprint: dict[str, Any]
) -> None:
    """Compare each run of a loaded baseline with ``current``, as the gate does: only
    findings or a documented error may come out (also used by the generative suite)."""
    for label, run in loaded.runs.items():
        with contextlib.suppress(TokrateError):  # a documented error is fine
            judge_run(
                test_id=loaded.test_id,
                where=f"fuzz ({label})",
                baseline=run,
                baseline_fingerprint=loaded.fingerprint,
                current=current,
                current_fingerprint=fingerprint,
                settings=GateSettings(),
                recorded_at=loaded.data.get("recorded_at"),
            )


@fuzz("baseline_bytes")
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_baseline_loader_random_bytes(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "x@embedded.json"
    path.write_bytes(raw)
    with pytest.raises(BaselineError, match=r"x@embedded\.json"):
        baselines.load(path)


@fuzz("baseline_json")
@given(data=JSON)
def test_baseline_loader_random_json(
    real_baseline: tuple[dict[str, Any], dict[str, Any], dict[str, Any]], data: Any
) -> None:
    _, current, fingerprint = real_baseline
    load_and_judge(json.dumps(data), current, fingerprint)


@fuzz("baseline_near_miss")
@given(st.data())
def test_baseline_loader_near_misses(
    real_baseline: tuple[dict[str, Any], dict[str, Any], dict[str, Any]], data: st.DataObject
) -> None:
    doc, current, fingerprint = real_baseline
    broken = mutate(doc, data.draw)
    load_and_judge(json.dumps(broken), current, fingerprint)


def test_a_valid_baseline_passes_the_fuzz_harness(
    real_baseline: tuple[dict[str, Any], dict[str, Any], dict[str, Any]],
) -> None:
    """The harness is not vacuous: the unmutated file loads and is compared."""
    doc, current, fingerprint = real_baseline
    loaded = baselines.parse(json.dumps(doc), "fixture")
    assert loaded.runs["run 1"]["rounds"] == 3
    findings = judge_run(
        test_id=loaded.test_id,
        where="fixture",
        baseline=loaded.runs["run 1"],
        baseline_fingerprint=loaded.fingerprint,
        current=current,
        current_fingerprint=fingerprint,
        settings=GateSettings(),
    )
    assert all(f.severity in ("fail", "warn", "info", "skip") for f in findings)


# -- YAML suites -----------------------------------------------------------------------------

SUITE = """\
description: fuzz seed
vars:
  question: What is 2 + 2?
defaults:
  rounds: 2
  warmup: 0
  options: {num_predict: 12}
  checks:
    - not-is-json
cases:
  - name: sum_words
    prompt: "{{question}}"
    checks:
      - type: contains
        value: "4"
      - type: regex
        value: "[0-9]+"
    thresholds:
      decode_tps: {min: 1, stat: median}
  - name: sum_chat
    marks: [slow]
    system: You answer with digits only.
    messages:
      - {role: user, content: "{{question}}"}
"""
SUITE_DATA = yaml.safe_load(SUITE)


def load_suite_text(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "tokrate_fuzz.yaml"
    path.write_bytes(raw)
    check_suite_file(path)


def check_suite_file(path: Path) -> str | None:
    """Load ``path``: the cases are sound, or the error is a SuiteError naming the file
    (returned, for tests that expect a given message; None when the file loaded)."""
    try:
        cases = load_suite(path)
    except SuiteError as exc:
        assert str(path) in str(exc)  # every problem names the file
        return str(exc)
    for case in cases:  # what collection then relies on
        assert isinstance(case.name, str) and case.line >= 1
        assert (case.prompt is None) != (case.messages is None)
        for bound in case.thresholds.values():
            assert all(not isinstance(v, float) or not math.isnan(v) for v in bound.values())
    return None


def test_the_seed_suite_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "tokrate_seed.yaml"
    path.write_text(SUITE, encoding="utf-8")
    assert [c.name for c in load_suite(path)] == ["sum_words", "sum_chat"]


@fuzz("suite_bytes")
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_suite_loader_random_bytes(tmp_path: Path, raw: bytes) -> None:
    load_suite_text(tmp_path, raw)


@fuzz("suite_structure")
@given(data=JSON | st.fixed_dictionaries({"cases": st.lists(JSON, max_size=3)}))
def test_suite_loader_random_structures(tmp_path: Path, data: Any) -> None:
    try:
        text = yaml.safe_dump(data, allow_unicode=True)
    except yaml.YAMLError:
        return
    load_suite_text(tmp_path, text.encode("utf-8"))


@fuzz("suite_near_miss")
@given(st.data())
def test_suite_loader_near_misses(tmp_path: Path, data: st.DataObject) -> None:
    broken = mutate(SUITE_DATA, data.draw)
    load_suite_text(tmp_path, yaml.safe_dump(broken, allow_unicode=True).encode("utf-8"))
