"""The check vocabulary on answer texts: each type, negation, reasons, definition errors.

Pure: checks judge text, so these tests hand them answers directly; the same checks
run on the real model's answers in test_plugin_quality.py and test_suite_yaml.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_tokrate.core.measure import Sample
from pytest_tokrate.errors import CheckDefinitionError
from pytest_tokrate.quality.checks import parse_check, parse_checks
from pytest_tokrate.quality.types import CHECK_TYPES, RoundContext


def sample(text: str, index: int = 0, tokens: int | None = None) -> Sample:
    """An answer as a measured round carries it."""
    return Sample(
        index=index, text=text, output_tokens=tokens, prompt_tokens=None, ttft=None,
        tpot=None, e2e=0.0, itl=(), decode_tps=None, decode_tps_client=None,
        decode_tps_engine=None, prefill_tps=None, e2e_tps=None, load=None, chunks=1,
        words=len(text.split()), done_reason="stop",
    )  # fmt: skip


def judge(spec: Any, text: str, tokens: int | None = None) -> tuple[bool, str]:
    check = parse_check(spec, "test_x: check #1")
    result = check.run(text, RoundContext(round=0, sample=sample(text, tokens=tokens)))
    return result.passed, result.reason


ANSWER = "This article is about an Australian netball club from Geelong."


@pytest.mark.parametrize(
    ("spec", "passes"),
    [
        ({"type": "contains", "value": "Australian"}, True),
        ({"type": "contains", "value": "australian"}, False),
        ({"type": "icontains", "value": "AUSTRALIAN"}, True),
        ({"type": "not-icontains", "value": "american"}, True),
        ({"type": "not-contains", "value": "Geelong"}, False),
        ({"type": "contains-any", "value": ["Sydney", "Geelong"]}, True),
        ({"type": "contains-any", "value": ["Sydney", "Perth"]}, False),
        ({"type": "icontains-any", "value": ["NETBALL"]}, True),
        ({"type": "contains-all", "value": ["netball", "Geelong"]}, True),
        ({"type": "contains-all", "value": ["netball", "Perth"]}, False),
        ({"type": "icontains-all", "value": ["NETBALL", "geelong"]}, True),
        ({"type": "starts-with", "value": "This article"}, True),
        ({"type": "starts-with", "value": "article"}, False),
        ({"type": "equals", "value": ANSWER + "  \n"}, True),
        ({"type": "equals", "value": "Australian"}, False),
        ({"type": "regex", "value": r"(?i)\baustralian\b"}, True),
        ({"type": "regex", "value": r"^\{"}, False),
        ({"type": "not-regex", "value": r"\d"}, True),
        ({"type": "max-words", "value": 10}, True),
        ({"type": "max-words", "value": 9}, False),
        ({"type": "min-words", "value": 11}, False),
        ({"type": "is-json"}, False),
        ("not-is-json", True),
        ({"type": "python", "value": "'club' in output"}, True),
        ({"type": "python", "value": "all(w in output for w in ['netball', 'club'])"}, True),
    ],
)
def test_text_checks(spec: Any, passes: bool) -> None:
    assert judge(spec, ANSWER)[0] is passes


def test_reasons_show_where_and_what() -> None:
    ok, reason = judge(
        {"type": "not-icontains", "value": "american"}, "Both Australian and American teams."
    )
    assert not ok
    assert "found 'American' at char 20" in reason
    assert "Australian and American teams" in reason
    assert judge({"type": "icontains", "value": "perth"}, ANSWER) == (False, "'perth' not found")
    assert (
        judge({"type": "contains-all", "value": ["a", "zz", "yy"]}, "abc")[1]
        == "missing 'zz', 'yy'"
    )


def test_token_bounds_use_the_engine_count() -> None:
    assert judge({"type": "max-tokens", "value": 16}, ANSWER, tokens=12) == (
        True,
        "12 tokens <= 16",
    )
    assert judge({"type": "min-tokens", "value": 16}, ANSWER, tokens=12) == (
        False,
        "12 tokens < 16",
    )
    ok, reason = judge({"type": "max-tokens", "value": 16}, ANSWER, tokens=None)
    assert not ok and "reported no token count" in reason


SCHEMA = {
    "type": "object",
    "properties": {"country": {"enum": ["Australia"]}, "founded": {"type": "integer"}},
    "required": ["country", "founded"],
}


@pytest.mark.parametrize(
    ("text", "passes", "reason"),
    [
        ('{"country": "Australia", "founded": 1975}', True, "valid JSON matching the schema"),
        ('```json\n{"country": "Australia", "founded": 1975}\n```', True, "matching the schema"),
        ('{"country": "Australia", "founded": "1975"}', False, "schema violation at $.founded"),
        ('{"country": "USA", "founded": 1975}', False, "schema violation at $.country"),
        ('{"country": "Australia"', False, "not valid JSON"),
    ],
)
def test_jsonschema(text: str, passes: bool, reason: str) -> None:
    ok, why = judge({"type": "jsonschema", "value": SCHEMA}, text)
    assert ok is passes
    assert reason in why


def test_is_json_and_contains_json() -> None:
    prose = 'Here you go: {"a": [1, 2]} -- done'
    assert judge("is-json", prose)[0] is False
    assert judge("contains-json", prose) == (True, "valid JSON")
    assert judge({"type": "contains-json", "value": {"type": "array"}}, prose)[0] is False
    assert judge({"type": "equals", "value": {"a": [1, 2]}}, ' {"a":[1,2]} ')[0] is True


def ctx_round(out: str, context: RoundContext) -> bool:
    return context.round == 0


@pytest.mark.parametrize(
    ("returned", "passes", "reason"),
    [
        (True, True, "returned True"),
        ((False, "too vague"), False, "too vague"),
        (0.8, True, "score 0.8 >= threshold 0.5"),
        ((0.2, "two of ten facts"), False, "two of ten facts (score 0.2 < threshold 0.5)"),
        ({"pass": True, "score": 0.1, "reason": "fine"}, True, "fine"),
        ({"score": 0.7}, True, "passed"),
    ],
)
def test_python_check_returns(returned: Any, passes: bool, reason: str) -> None:
    assert judge(lambda out: returned, ANSWER) == (passes, reason)


def test_python_threshold_and_context() -> None:
    assert judge({"type": "python", "value": lambda out: 0.6, "threshold": 0.7}, ANSWER)[0] is False
    check = parse_check(ctx_round, "t")
    assert check.run("x", RoundContext(round=0, sample=sample("x"))).passed
    assert not check.run("x", RoundContext(round=1, sample=sample("x", index=1))).passed


def test_a_check_that_raises_fails_its_round_with_the_exception_text() -> None:
    def boom(out: str) -> bool:
        raise ValueError("cannot parse the answer")

    check = parse_check({"type": "not-python", "value": boom}, "t")  # negation does not hide it
    result = check.run(ANSWER, RoundContext(round=0, sample=sample(ANSWER)))
    assert not result.passed and result.error
    assert result.reason == "ValueError: cannot parse the answer"


def test_bad_python_return_fails_the_round_and_says_what_to_return() -> None:
    ok, reason = judge(lambda out: "yes", ANSWER)
    assert not ok
    assert "returned 'yes'" in reason and "return True/False" in reason


def test_python_file_and_module_references(tmp_path: Path) -> None:
    (tmp_path / "my_checks.py").write_text(
        "def short(output):\n    return len(output) < 10\n\n"
        "def get_assert(output, context):\n    return {'pass': True, 'reason': 'default name'}\n"
    )
    ok = parse_check({"type": "python", "value": "file://my_checks.py:short"}, "t", tmp_path)
    assert ok.label == "python short"
    assert not ok.run(ANSWER, RoundContext(round=0, sample=sample(ANSWER))).passed
    default = parse_check({"type": "python", "value": "file://my_checks.py"}, "t", tmp_path)
    assert default.run("", RoundContext(round=0, sample=sample(""))).reason == "default name"
    module = parse_check({"type": "python", "value": "json:loads"}, "t")
    assert module.run("[1]", RoundContext(round=0, sample=sample("[1]"))).passed is False


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"type": "containz", "value": "x"},
            "unknown check type 'containz' (did you mean 'contains'?)",
        ),
        ({"type": "regex", "value": "(unclosed"}, "bad regular expression '(unclosed': missing )"),
        ({"type": "jsonschema", "value": {"type": "objekt"}}, "invalid JSON Schema at type:"),
        ({"type": "contains"}, "(contains): needs a 'value', the text to look for"),
        ({"type": "contains", "valeu": "x"}, "unknown key(s) 'valeu' (did you mean 'value'?)"),
        ({"type": "contains-any", "value": "Sydney"}, "must be a non-empty list of strings"),
        ({"type": "max-tokens", "value": -1}, "must be a whole number >= 0"),
        ({"type": "contains", "value": "x", "threshold": 0.5}, "'threshold' applies to python"),
        ({"value": "x"}, "has no 'type'"),
        ({"type": "python", "value": "file://nope.py:f"}, "does not exist"),
        ({"type": "python", "value": "json:nope"}, "names no function 'nope'"),
        ({"type": "python", "value": "no_such_module_xyz:f"}, "cannot import 'no_such_module_xyz'"),
        ({"type": "python", "value": "output ==="}, "neither 'file://path.py:function'"),
        (42, "42 is not a check"),
    ],
)
def test_definition_errors_name_the_test_the_check_and_the_problem(spec: Any, message: str) -> None:
    with pytest.raises(CheckDefinitionError) as info:
        parse_checks([{"type": "is-json"}, spec], "tests/test_x.py::test_a")
    text = str(info.value)
    assert text.startswith("tests/test_x.py::test_a[1]")
    assert message in text


def test_checks_must_be_a_list() -> None:
    with pytest.raises(CheckDefinitionError, match="checks must be a list"):
        parse_checks({"type": "is-json"}, "t")  # type: ignore[arg-type]


def test_every_type_accepts_not_prefix() -> None:
    for kind, need in CHECK_TYPES.items():
        value: Any = {
            "contains-any": ["a"], "icontains-any": ["a"], "contains-all": ["a"],
            "icontains-all": ["a"], "jsonschema": {"type": "object"}, "max-tokens": 1,
            "min-tokens": 1, "max-words": 1, "min-words": 1, "python": "True",
        }.get(kind, "a")  # fmt: skip
        spec = {"type": f"not-{kind}", "value": value} if need == "required" else f"not-{kind}"
        check = parse_check(spec, "t")
        assert check.negate and check.type == f"not-{kind}"


def test_every_bad_check_of_a_list_is_reported_at_once() -> None:
    with pytest.raises(CheckDefinitionError) as info:
        parse_checks([{"type": "nope"}, "is-json", {"type": "contains"}], "t: tokrate.run() checks")
    lines = str(info.value).splitlines()
    assert lines[0].startswith("t: tokrate.run() checks[0]: ") and "'nope'" in lines[0]
    assert any(line.startswith("t: tokrate.run() checks[2]") for line in lines)
    assert not any("checks[1]" in line for line in lines)
