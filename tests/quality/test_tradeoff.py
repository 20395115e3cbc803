"""The model-vs-model trade-off on real measurements of SmolLM2 and its Q2_K requantisation.

The seeds' question, on an original article: the full model answers "Australian", the
2-bit one mentions an American team too. Both run through the real embedded engine.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from pytest_tokrate.backends.base import Request
from pytest_tokrate.backends.llamacpp import LlamaCppBackend
from pytest_tokrate.backends.models import resolve_model
from pytest_tokrate.core.result import Measurement
from pytest_tokrate.core.runner import Runner
from pytest_tokrate.core.settings import Layer, resolve
from pytest_tokrate.core.stats import fisher_exact_less
from pytest_tokrate.quality.checks import parse_checks
from pytest_tokrate.quality.evaluate import evaluate
from pytest_tokrate.quality.tradeoff import (
    _drop_param,
    compare_models,
    comparison_key,
)
from pytest_tokrate.reports.tradeoff import tradeoff_lines

pytestmark = pytest.mark.e2e

ARTICLE = (Path(__file__).parents[2] / "examples" / "article.txt").read_text().strip()
PROMPT = f"{ARTICLE}\n\nIs this article about an Australian or American team? Answer with one word."
CHECKS = [
    {"type": "icontains", "value": "australia"},
    {"type": "not-icontains", "value": "america"},
]


def measure(model: str, test_id: str) -> Measurement:
    backend = LlamaCppBackend(resolve_model(model))
    try:
        settings = resolve(
            # flash_attn off: the answers described above were read without it (its CPU
            # kernel rounds differently and flips the 2-bit model's near-tied tokens).
            [
                Layer(
                    "test",
                    rounds=5,
                    warmup=1,
                    options={"num_predict": 24, "num_thread": 1, "flash_attn": "off"},
                )
            ]
        )
        m = Runner(backend).run(Request(prompt=PROMPT), settings)
    finally:
        backend.close()
    m.test_id = test_id
    m.quality = evaluate(parse_checks(CHECKS, test_id), m.samples)
    return m


@pytest.fixture(scope="module")
def results() -> list[Measurement]:
    return [
        measure("smollm2", "tests/test_a.py::test_country[smollm2]"),
        measure("smollm2-q2_k", "tests/test_a.py::test_country[smollm2-q2_k]"),
    ]


def test_speed_ratio_and_pass_rate_change(results: list[Measurement]) -> None:
    full, q2 = results
    rows = compare_models(results, ["smollm2", "smollm2-q2_k"])
    assert len(rows) == 1
    row = rows[0]
    assert (row.test, row.model, row.reference) == (
        "tests/test_a.py::test_country", "smollm2-q2_k", "smollm2",
    )  # fmt: skip
    expected = statistics.median(q2.decode_tps.values) / statistics.median(full.decode_tps.values)
    assert row.ratio == pytest.approx(expected)
    assert row.ratio_low <= row.ratio <= row.ratio_high
    # the real answers: the full model passes every round, the 2-bit one none
    assert full.quality.passed_rounds == 5, full.texts[0]
    assert q2.quality.passed_rounds == 0, q2.texts[0]
    assert (row.pass_ref.passed, row.pass_ref.total) == (5, 5)
    assert (row.pass_other.passed, row.pass_other.total) == (0, 5)
    assert row.p_worse == pytest.approx(fisher_exact_less(0, 5, 5, 5))
    assert row.p_worse < 0.05
    assert row.quality_verdict == "worse answers"


def test_table_lines(results: list[Measurement]) -> None:
    lines = tradeoff_lines(compare_models(results))
    assert lines[0].split()[:4] == ["test", "model", "decode", "tok/s"]
    row = lines[2]
    assert row.startswith("tests/test_a.py::test_country  smollm2-q2_k")
    assert "5/5 -> 0/5" in row and "-100 pp" in row and "worse answers" in row
    assert lines[3].startswith("reference: smollm2 (the first --tokrate-model)")
    # temperature 0: each model repeats one answer, and the table says what that means
    assert all(len(set(m.texts)) == 1 for m in results)
    assert lines[4].startswith("note: some tests gave one same answer in every round")
    assert lines[5].startswith("smollm2-q2_k vs smollm2: decode speed ")
    assert "pass rate 100% -> 0% (5/5 -> 0/5 rounds, p(worse) 0.00397)" in lines[5]


def test_one_model_gives_no_table(results: list[Measurement]) -> None:
    assert compare_models(results[:1]) == []
    assert tradeoff_lines([]) == []


@pytest.mark.parametrize(
    ("params", "model", "rest"),
    [
        ("smollm2", "smollm2", ""),
        ("smollm2-q2_k", "smollm2-q2_k", ""),
        ("smollm2-q2_k-16", "smollm2-q2_k", "16"),
        ("16-smollm2", "smollm2", "16"),
        ("a-smollm2-b", "smollm2", "a-b"),
        ("gemma2:2b-instruct-q2_K-x", "gemma2:2b-instruct-q2_K", "x"),
    ],
)
def test_model_param_is_dropped_from_the_test_id(params: str, model: str, rest: str) -> None:
    assert _drop_param(params, model) == rest


def test_comparison_key_keeps_the_label(results: list[Measurement]) -> None:
    m = results[0]
    m.label = "run 2"
    try:
        assert comparison_key(m) == "tests/test_a.py::test_country (run 2)"
    finally:
        m.label = None
