"""Declarative suites: collection, ids, selection, marks, running on the real model, and
every kind of bad file as a collection error naming the file, the line and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_tokrate.core.result import FIGURES
from pytest_tokrate.quality.suite import SuiteError, load_suite
from pytest_tokrate.quality.suite_schema import suite_schema
from pytest_tokrate.quality.types import CHECK_TYPES

MODEL = (
    "--tokrate-model=smollm2",
    "--tokrate-option=num_thread=1",
    "--tokrate-gate=off",
    "-p",
    "no:cacheprovider",
)

SUITE = """\
description: arithmetic
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
      - type: max-words
        value: 12
  - name: sum_chat
    marks: [slow]
    system: You answer with digits only.
    messages:
      - {role: user, content: "{{question}}"}
    checks:
      - type: python
        value: "'4' in output"
  - name: wrong_on_purpose
    prompt: "{{question}}"
    min_pass_rate: 50%
    checks:
      - type: icontains
        value: seventeen
"""


def text(result: pytest.RunResult) -> str:
    return result.stdout.str() + "\n" + result.stderr.str()


def test_cases_collect_as_items_per_model(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", tokrate_sums=SUITE)
    result = pytester.runpytest("--collect-only", "-q", "--tokrate-model=smollm2,smollm2-q2_k")
    assert result.ret == pytest.ExitCode.OK
    ids = [line for line in result.stdout.lines if "::" in line]
    assert ids == [
        "tokrate_sums.yaml::sum_words[smollm2]",
        "tokrate_sums.yaml::sum_words[smollm2-q2_k]",
        "tokrate_sums.yaml::sum_chat[smollm2]",
        "tokrate_sums.yaml::sum_chat[smollm2-q2_k]",
        "tokrate_sums.yaml::wrong_on_purpose[smollm2]",
        "tokrate_sums.yaml::wrong_on_purpose[smollm2-q2_k]",
    ]
    selected = pytester.runpytest("--collect-only", "-q", "--tokrate-model=smollm2", "-m", "slow")
    assert [line for line in selected.stdout.lines if "::" in line] == [
        "tokrate_sums.yaml::sum_chat[smollm2]"
    ]
    other_yaml = pytester.makefile(".yaml", settings="cases: []")  # not tokrate_*: ignored
    assert other_yaml.exists()
    # An unregistered mark is warned about at the case's line in the YAML file (as pytest
    # does for a Python test's decorator), not inside pytest; a registered one is quiet.
    assert "tokrate_sums.yaml:18: PytestUnknownMarkWarning: unknown mark 'slow'" in text(result)
    assert "_pytest" not in text(result)
    pytester.makeini("[pytest]\nmarkers =\n    slow: long cases\n")
    quiet = pytester.runpytest("--collect-only", "-q", "--tokrate-model=smollm2")
    assert "PytestUnknownMarkWarning" not in text(quiet)


def test_cases_run_on_the_real_model(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", tokrate_sums=SUITE)
    result = pytester.runpytest(*MODEL, "-v")
    result.assert_outcomes(passed=2, failed=1)
    out = text(result)
    assert "tokrate_sums.yaml::sum_words[smollm2] PASSED" in out
    assert "tokrate_sums.yaml::sum_chat[smollm2] PASSED" in out
    assert (
        "tokrate quality: 0 of 2 rounds passed (0%) on smollm2; "
        "minimum 50% (tokrate_sums.yaml min_pass_rate)" in out
    )
    assert 'icontains "seventeen": failed in rounds 1-2 (2 of 2)' in out
    assert "passed in every round: not-is-json" in out
    # the speed table lists the cases like any test
    assert "tokrate_sums.yaml::sum_words[smollm2]" in out.split("speed per test and model")[1]


def test_select_with_k_and_no_model_skips(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    pytester.makefile(".yaml", tokrate_sums=SUITE)
    result = pytester.runpytest(*MODEL, "-k", "sum_words")
    result.assert_outcomes(passed=1, deselected=2)
    skipped = pytester.runpytest("-p", "no:cacheprovider")
    skipped.assert_outcomes(skipped=3)


def test_thresholds_fail_with_the_figure_and_the_bound(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".yaml",
        tokrate_fast="""\
cases:
  - name: too_long
    prompt: Count from one to twenty.
    rounds: 2
    warmup: 0
    options: {num_predict: 16}
    thresholds:
      output_tokens: {max: 4, stat: max}
      decode_tps: {min: 0.001}
""",
    )
    result = pytester.runpytest(*MODEL)
    result.assert_outcomes(failed=1)
    out = text(result)
    assert "tokrate thresholds of 'too_long' on smollm2:" in out
    assert "output_tokens max 16 tok is above the maximum 4" in out
    assert "decode_tps" not in out.split("tokrate thresholds")[1].split("====")[0]


BAD = [
    ("cases:\n  - name: a\n    prompt: [unclosed\n",
     ":3:22: YAML syntax error: expected ',' or ']', but got '<stream end>'"),
    ("cases:\n  - name: a\n    promt: hi\n",
     ":3: cases[0] (a): unknown key 'promt' (did you mean 'prompt'?)"),
    ("cases:\n  - name: a\n    prompt: hi\n    checks:\n      - type: containz\n",
     ":5: cases[0] (a).checks[0].type: unknown check type 'containz' (did you mean"),
    ("cases:\n  - name: a\n    prompt: hi\n    checks:\n      - {type: regex, value: '(x'}\n",
     ":5: cases[0] (a).checks[0] (regex): bad regular expression '(x'"),
    ("cases:\n  - name: a\n    prompt: hi\n    checks:\n      - type: jsonschema\n"
     "        value: {type: 5}\n",
     ":5: cases[0] (a).checks[0] (jsonschema): invalid JSON Schema at type"),
    ("cases:\n  - name: a\n    prompt: hi\n    checks:\n"
     "      - {type: python, value: 'file://gone.py:f'}\n",
     ":5: cases[0] (a).checks[0] (python): python file"),
    ("cases:\n  - name: a\n    prompt: 'hi {{who}}'\n",
     ":3: cases[0] (a).prompt: unknown variable(s) {{who}}: define them under `vars:`"),
    ("cases:\n  - name: a\n    prompt: hi\n    marks:\n"
     "      - skipif: {condition: \"open('x', 'w')\", reason: r}\n",
     ":5: cases[0] (a).marks: skipif condition \"open('x', 'w')\" is a string, which pytest "
     "would run as Python code"),
    ("cases:\n  - name: a\n    prompt: hi\n  - name: a\n    prompt: ho\n",
     ":4: case name 'a' is already used on line 2"),
    ("cases:\n  - name: a\n    prompt: hi\n    messages: [{role: user, content: hi}]\n",
     ":2: case 'a': give exactly one of `prompt` or `messages`"),
    ("cases:\n  - name: a\n    prompt: hi\n    prompt: ho\n",
     ":4: key 'prompt' appears twice in one mapping"),
    ("cases:\n  - name: a\n    prompt: hi\n    options: {num_predcit: 4}\n",
     ":4: case 'a' options: unknown generation option 'num_predcit'. Did you mean"),
    ("cases:\n  - name: a\n    prompt: hi\n    thresholds: {decode_tsp: {min: 1}}\n",
     ":4: cases[0] (a).thresholds: unknown value 'decode_tsp' (did you mean 'decode_tps'?)"),
    ("cases:\n  - name: a b\n    prompt: hi\n",
     ":2: cases[0] (a b).name: 'a b' does not match"),
    ("vars: {text: 'file://missing.txt'}\ncases:\n  - name: a\n    prompt: hi\n",
     ":1: variable 'text': cannot read"),
    ("cases:\n  - name: a\n    prompt: hi\n    min_pass_rate: 1.5\n",
     ":4: cases[0] (a).min_pass_rate: 1.5 is greater than the maximum of 1"),
    ("", ": the file is empty: add a `cases:` list"),
    ("cases: []\n", ":1: cases: [] should be non-empty"),
]  # fmt: skip


@pytest.mark.parametrize(("content", "message"), BAD)
def test_bad_suite_is_a_collection_error_with_file_and_line(
    pytester: pytest.Pytester, content: str, message: str
) -> None:
    pytester.makefile(".yaml", tokrate_bad=content)
    result = pytester.runpytest("--tokrate-model=smollm2", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    out = text(result)
    assert "ERROR collecting tokrate_bad.yaml" in out
    assert "tokrate suite is invalid:" in out
    assert f"tokrate_bad.yaml{message}" in out, out
    assert "Traceback" not in out


def test_every_problem_is_listed(tmp_path: Path) -> None:
    path = tmp_path / "tokrate_two.yaml"
    path.write_text(
        "cases:\n  - name: a\n    promt: hi\n  - name: b\n    prompt: hi\n    rounds: 0\n"
    )
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    lines = str(info.value).splitlines()
    assert lines[0].startswith(f"{path}:3: cases[0] (a): unknown key 'promt'")
    assert lines[1] == f"{path}:6: cases[1] (b).rounds: 0 is less than the minimum of 1"


def test_example_suite_is_valid() -> None:
    example = Path(__file__).parents[3] / "examples" / "tokrate_article.yaml"
    cases = load_suite(example)
    assert [c.name for c in cases] == ["team_country", "club_facts_json", "match_report_long"]
    assert "Geelong Harbour Sharks" in (cases[0].prompt or "")
    assert cases[1].format == cases[1].checks[0].value  # the schema is shared by an anchor
    assert cases[2].options == {"num_predict": 256}


def test_schema_is_in_step_with_check_types_and_figures() -> None:
    schema = suite_schema()
    types = schema["$defs"]["check"]["properties"]["type"]["enum"]
    assert types == [*CHECK_TYPES, *(f"not-{t}" for t in CHECK_TYPES)]
    figures = schema["$defs"]["settings"]["properties"]["thresholds"]["propertyNames"]["enum"]
    assert figures == [*FIGURES, "itl"]
    json.dumps(schema)  # plain JSON, shipped as package data


def test_problems_of_every_kind_come_in_one_pass(tmp_path: Path) -> None:
    """A schema problem in one case does not hide what building the others finds
    (unknown variables, a bad regex, a check without its value)."""
    path = tmp_path / "tokrate_mixed.yaml"
    path.write_text(
        "vars:\n  article: text\ncases:\n"
        "  - name: one\n    prompt: '{{artcle}} question'\n"
        "    checks:\n      - {type: regex, value: '([a-z'}\n"
        "  - name: two\n    prompt: hi\n    unknownkey: 3\n"
        "  - name: three\n    prompt: hi\n    checks:\n      - {type: contains}\n"
    )
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    lines = [line.removeprefix(f"{path}:") for line in str(info.value).splitlines()]
    assert lines[0] == (
        "5: cases[0] (one).prompt: unknown variable(s) {{artcle}} (did you mean 'article'?): "
        "define them under `vars:` (known: article)"
    )
    assert lines[1].startswith("7: cases[0] (one).checks[0] (regex): bad regular expression")
    assert lines[2].startswith("10: cases[1] (two): unknown key 'unknownkey'")
    assert lines[3].startswith("14: cases[2] (three).checks[0] (contains): needs a 'value'")
    assert len(lines) == 4
