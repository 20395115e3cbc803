"""The pass rate, its minimum (precedence), the failure text and the judge. Pure."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_tokrate.backends.base import ModelInfo
from pytest_tokrate.core.findings import JudgeContext
from pytest_tokrate.core.measure import Sample
from pytest_tokrate.core.result import Measurement
from pytest_tokrate.core.settings import Layer
from pytest_tokrate.errors import CheckDefinitionError, UsageError
from pytest_tokrate.quality.checks import parse_checks, parse_min_pass_rate, resolve_min_pass_rate
from pytest_tokrate.quality.evaluate import QualityPlan, QualityResult, evaluate, quality_judge


def sample(text: str, index: int) -> Sample:
    return Sample(
        index=index, text=text, output_tokens=len(text.split()), prompt_tokens=None,
        ttft=None, tpot=None, e2e=0.0, itl=(), decode_tps=None, decode_tps_client=None,
        decode_tps_engine=None, prefill_tps=None, e2e_tps=None, load=None, chunks=1,
        words=len(text.split()), done_reason="stop",
    )  # fmt: skip


def result(texts: list[str], checks: list[Any], minimum: float = 1.0) -> QualityResult:
    parsed = parse_checks(checks, "test_x")
    samples = [sample(t, i) for i, t in enumerate(texts)]
    return evaluate(parsed, samples, min_pass_rate=minimum, min_pass_rate_source="marker")


AUSSIE = "This article is about an Australian team."
BOTH = "This article is about a team of Australian players versus a team of American players."
CHECKS = [
    {"type": "icontains", "value": "australia"},
    {"type": "not-icontains", "value": "america"},
]


def test_pass_rate_counts_rounds_passing_every_check() -> None:
    q = result([AUSSIE, BOTH, AUSSIE, BOTH, BOTH], CHECKS)
    assert (q.passed_rounds, q.total) == (2, 5)
    assert q.pass_rate == pytest.approx(0.4)
    assert not q.meets_minimum
    low, high = q.pass_rate_ci95
    assert low < 0.4 < high
    assert result([AUSSIE, BOTH, AUSSIE, BOTH, BOTH], CHECKS, minimum=0.4).meets_minimum
    assert not result([AUSSIE, BOTH, AUSSIE, BOTH, BOTH], CHECKS, minimum=0.41).meets_minimum
    assert result([AUSSIE] * 5, CHECKS).meets_minimum


def test_failure_lines_group_rounds_and_shorten_answers() -> None:
    long_answer = "American " * 40
    q = result([BOTH, AUSSIE, BOTH, BOTH, long_answer], CHECKS)
    lines = q.failure_lines(model="smollm2-q2_k")
    assert lines[0] == (
        "tokrate quality: 1 of 5 rounds passed (20%) on smollm2-q2_k; minimum 100% (marker)"
    )
    text = "\n".join(lines)
    assert '  icontains "australia": failed in round 5 (1 of 5)' in text
    assert '  not-icontains "america": failed in rounds 1, 3-5 (4 of 5)' in text
    # identical answers print once, with every round they came from
    assert text.count("versus a team of American players") == 2  # answer + reason snippet
    assert '    rounds 1, 3-4: "This article is about a team of Australian players' in text
    assert "      -> found 'America' at char 68" in text
    shortened = next(line for line in lines if line.startswith('    round 5: "American'))
    assert shortened.endswith('…"') and len(shortened) < 120
    assert not any("passed in every round" in line for line in lines)


def test_failure_lines_list_checks_that_always_passed_and_cap_answers() -> None:
    texts = [f"answer number {i}" for i in range(6)]
    q = result(texts, [{"type": "contains", "value": "answer"}, {"type": "regex", "value": "X"}])
    lines = q.failure_lines()
    assert lines[-1] == '  passed in every round: contains "answer"'
    assert "    ... 3 more distinct answer(s)" in lines


def test_to_dict_is_plain_data_with_counts() -> None:
    q = result([AUSSIE, BOTH], CHECKS, minimum=0.5)
    data = json.loads(json.dumps(q.to_dict()))
    assert data["passed"] == 1 and data["total"] == 2 and data["pass_rate"] == 0.5
    assert data["meets_minimum"] is True and data["min_pass_rate"] == 0.5
    assert data["checks"]['not-icontains "america"'] == {
        "type": "not-icontains", "value": "america", "label": 'not-icontains "america"',
        "passed": 1, "total": 2,
    }  # fmt: skip
    assert data["per_round"][1]["results"][1]["passed"] is False
    assert q.definitions == [
        {"type": "icontains", "value": "australia", "label": 'icontains "australia"'},
        {"type": "not-icontains", "value": "america", "label": 'not-icontains "america"'},
    ]


@pytest.mark.parametrize(
    ("value", "rate"), [(0.8, 0.8), ("0.8", 0.8), ("80%", 0.8), (1, 1.0), ("0", 0.0)]
)
def test_min_pass_rate_values(value: object, rate: float) -> None:
    assert parse_min_pass_rate("--tokrate-min-pass-rate", value) == pytest.approx(rate)


@pytest.mark.parametrize("value", [1.5, "-0.1", "abc", "120%", True])
def test_bad_min_pass_rate_names_the_setting_and_the_value(value: object) -> None:
    with pytest.raises(UsageError) as info:
        parse_min_pass_rate("--tokrate-min-pass-rate", value)
    assert str(info.value).startswith(f"--tokrate-min-pass-rate: invalid value {value!r}")
    assert "from 0 to 1" in str(info.value)


def test_min_pass_rate_precedence() -> None:
    layers: list[tuple[str, object]] = [("ini", 0.5), ("marker", None), ("call", 0.7)]
    assert resolve_min_pass_rate(layers) == (0.7, "call")
    assert resolve_min_pass_rate([*layers, ("cli", "90%")]) == (0.9, "cli")
    assert resolve_min_pass_rate([]) == (1.0, "default: every round")


def test_plan_joins_marker_and_call_checks_and_applies_precedence() -> None:
    ini = Layer("ini", extra={"min_pass_rate": 0.2})
    marker = Layer("m", extra={"checks": ["not-is-json"], "min_pass_rate": 0.6})
    cli = Layer("command line")
    plan = QualityPlan.build("t", [ini, marker, cli], [{"type": "contains", "value": "a"}])
    assert plan is not None
    assert [c.type for c in plan.checks] == ["not-is-json", "contains"]
    assert (plan.min_pass_rate, plan.min_pass_rate_source) == (0.6, "@pytest.mark.tokrate")
    plan = QualityPlan.build("t", [ini, marker, Layer("c", extra={"min_pass_rate": 1})], None, 0.3)
    assert plan is not None and plan.min_pass_rate_source == "--tokrate-min-pass-rate"
    assert QualityPlan.build("t", [ini, None, cli], None) is None
    with pytest.raises(CheckDefinitionError, match=r"^t: @pytest.mark.tokrate checks\[0\]"):
        QualityPlan.build("t", [None, Layer("m", extra={"checks": ["nope"]}), None], None)
    with pytest.raises(UsageError, match=r"tokrate\.run\(\) min_pass_rate: invalid value 2"):
        QualityPlan.build("t", [None, None, None], ["is-json"], 2)


def measurement(q: QualityResult | None) -> Measurement:
    return Measurement(
        model=ModelInfo(name="smollm2", backend="embedded"), samples=[], settings={},
        request={}, cache_busting="kv-reset", versions={}, quality=q,
    )  # fmt: skip


def test_judge_fails_only_below_the_minimum() -> None:
    context = JudgeContext(test_id="t")
    assert quality_judge(measurement(None), context) == []
    assert quality_judge(measurement(result([AUSSIE], CHECKS)), context) == []
    findings = quality_judge(measurement(result([AUSSIE, BOTH], CHECKS)), context)
    assert [(f.kind, f.severity) for f in findings] == [("quality", "fail")]
    assert findings[0].message.startswith("tokrate quality: 1 of 2 rounds passed (50%) on smollm2")
    assert findings[0].data == {
        "passed_rounds": 1, "total_rounds": 2, "pass_rate": 0.5, "min_pass_rate": 1.0,
    }  # fmt: skip
