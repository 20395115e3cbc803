"""Generative tests of the arguments of ``tokrate.run()`` / ``tokrate.sweep()`` (and of YAML
cases, which run through the same call): prompt, system, messages, raw, format and label.

Every example goes through the pure check (``core/request_check.py``): only a UsageError
may come out. A value it accepts must then be usable: the embedded engine builds its
prompt tokens and grammar from the request without generating (``check_request`` on one
real smollm2 backend), and the request describes itself as JSON (reports, baselines). The
engine may still refuse a schema its grammar converter cannot handle, or a prompt longer
than its context, by a UsageError naming ``format`` or ``num_ctx``; nothing else.

Inputs: text with lone surrogates, control characters and blanks; ints, None, dicts,
lists and nested junk in every slot; random JSON Schemas and near misses of valid ones
(a type misspelt or made a number, a keyword given the wrong type, huge repetition counts,
unresolvable ``$ref``, patterns without anchors).

A few end-to-end runs prove that such values fail the test with our message, no traceback
and no round measured.

Derandomized with a fixed number of examples; ``TOKRATE_FUZZ_SCALE=10`` multiplies them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from reliability_support import FAST, FUZZ_SCALE, assert_clean, fuzz_settings, output

from pytest_tokrate.backends.base import Message
from pytest_tokrate.core.request_check import ROLES, check_label, checked_request
from pytest_tokrate.core.runner import describe_request
from pytest_tokrate.errors import UsageError

SCALE = FUZZ_SCALE
EXAMPLES = {"run_arguments": 300, "schemas": 300}
#: The number of generative examples this module runs (for the closing note of the issue).
TOTAL_EXAMPLES = sum(EXAMPLES.values()) * SCALE
OPTIONS = {"num_predict": 2, "num_thread": 1}


def fuzz(name: str) -> Any:
    return fuzz_settings(EXAMPLES[name])


# Surrogates (category Cs) are left out of Hypothesis' text by default: let them in.
CHARS = st.characters(exclude_categories=())
TEXT = st.text(CHARS, max_size=40) | st.sampled_from(
    ["", " ", "\n\t", "Hi", "Hi \ud800", "\udfff", "\x00", "a\x1b[31mb", "{{x}}", "<|im_end|>"]
)
#: Text the check accepts: anything but surrogates, with something besides blanks.
WORDS = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40).filter(
    str.strip
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | TEXT
)
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
GOOD_MESSAGE = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant"]),
        "content": st.text(st.characters(exclude_categories=("Cs",)), max_size=40),
    }
) | st.builds(Message, st.sampled_from(["user", "assistant"]), WORDS)
MESSAGE = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(ROLES), "content": TEXT}),
    st.fixed_dictionaries(
        {
            "role": st.sampled_from([*ROLES, "tool", "wizard", "User", ""]) | JUNK,
            "content": TEXT | JUNK,
        }
    ),
    st.fixed_dictionaries(
        {"role": st.sampled_from(ROLES), "content": TEXT},
        optional={"images": JUNK, "name": TEXT},
    ),
    st.builds(Message, st.sampled_from(ROLES), TEXT),
    JUNK,
)

# -- JSON Schemas, valid and near misses ------------------------------------------------------

TYPES = ["string", "integer", "number", "boolean", "object", "array", "null"]
TYPE = st.sampled_from(TYPES) | st.sampled_from(["objekt", "str", "", "Object"]) | JUNK
COUNT = st.integers(0, 20) | st.sampled_from([999, 1000, 1001, 20_000, 10**9, -1]) | JUNK
PATTERN = st.sampled_from(
    ["^[a-z]+$", "abc", "^a{2,5}$", "^a{0,20000}$", "^(a|b)*$", "^[$", "^\\d{3}-\\d{4}$", "^$"]
)


def schemas(leaf: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    def grow(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        keyword = st.sampled_from(["properties", "items", "anyOf", "oneOf", "$defs", "not"])
        return st.one_of(
            st.fixed_dictionaries(
                {"type": st.just("object"), "properties": st.dictionaries(TEXT, inner, max_size=3)},
                optional={
                    "required": st.lists(TEXT, max_size=3) | JUNK,
                    "additionalProperties": st.booleans() | inner,
                },
            ),
            st.fixed_dictionaries(
                {"type": st.just("array"), "items": inner},
                optional={"minItems": COUNT, "maxItems": COUNT},
            ),
            st.fixed_dictionaries({"anyOf": st.lists(inner, max_size=3)}),
            st.dictionaries(keyword, inner, max_size=2),
        )

    return st.recursive(leaf, grow, max_leaves=8)


LEAF_SCHEMA = st.one_of(
    st.fixed_dictionaries(
        {"type": TYPE},
        optional={
            "minLength": COUNT,
            "maxLength": COUNT,
            "pattern": PATTERN | JUNK,
            "enum": st.lists(SCALARS, max_size=3),
            "const": SCALARS,
            "minimum": SCALARS,
            "format": st.sampled_from(["date", "email", "uuid"]) | JUNK,
        },
    ),
    st.fixed_dictionaries(
        {"$ref": st.sampled_from(["#/$defs/a", "#/nope", "other.json", "#", "https://x/y"])}
    ),
    st.dictionaries(TEXT, JUNK, max_size=3),
    st.sampled_from([{}, {"enum": []}, {"const": None}, {"type": ["string", "null"]}]),
)
SCHEMA = schemas(LEAF_SCHEMA)
#: Schemas that are valid JSON Schema, most of them within what llama.cpp converts.
VALID_SCHEMA = st.recursive(
    st.fixed_dictionaries(
        {"type": st.sampled_from(TYPES)},
        optional={"maxLength": st.integers(0, 1000), "enum": st.lists(st.text(max_size=8))},
    ),
    lambda inner: (
        st.fixed_dictionaries(
            {"type": st.just("object"), "properties": st.dictionaries(st.text(), inner)},
            optional={"required": st.lists(st.text(max_size=8), unique=True)},
        )
        | st.fixed_dictionaries({"type": st.just("array"), "items": inner})
        | st.fixed_dictionaries({"anyOf": st.lists(inner, min_size=1, max_size=3)})
    ),
    max_leaves=6,
)
FORMAT = st.none() | st.just("json") | SCHEMA | JUNK


# -- the backend --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    """One real smollm2 backend, its model loaded by the first check."""
    from pytest_tokrate.backends.llamacpp import LlamaCppBackend
    from pytest_tokrate.backends.models import resolve_model

    backend = LlamaCppBackend(resolve_model("smollm2"), reference=False)
    yield backend
    backend.close()


def engine_builds(engine: Any, request: Any) -> None:
    """What an accepted request must survive: the engine's prompt and grammar building,
    and its description as JSON; the engine refuses only a schema or a too long prompt."""
    json.dumps(describe_request(request), allow_nan=False)
    try:
        engine.check_request(replace(request, options=OPTIONS))
    except UsageError as exc:
        message = str(exc)
        assert message.startswith("format") or "num_ctx" in message, message
        assert "chat template" not in message  # smollm2's template takes any roles


def check_run(**args: Any) -> Any:
    """The pure check of one call: the request, or None when refused with a UsageError."""
    call = {"prompt": None, "messages": None, "system": None, "format": None, "raw": False}
    call.update(args)
    label = call.pop("label", None)
    try:
        request = checked_request("run", **call)
        check_label("tokrate.run() label", label)
    except UsageError as exc:
        assert str(exc).startswith("tokrate.run()"), exc  # it names the argument
        return None
    return request


@fuzz("run_arguments")
@given(data=st.data())
def test_run_arguments(engine: Any, data: st.DataObject) -> None:
    def sometimes(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
        # Mostly good values, so that many examples get past the check to the engine.
        return data.draw(bad if data.draw(st.integers(0, 9)) >= 8 else good)

    chat = data.draw(st.booleans())
    args = {
        "prompt": sometimes(st.none() if chat else WORDS, TEXT | JUNK),
        "messages": sometimes(
            st.lists(GOOD_MESSAGE, min_size=1, max_size=4) if chat else st.none(),
            st.lists(MESSAGE, max_size=3) | JUNK,
        ),
        "system": sometimes(st.none() | WORDS, TEXT | JUNK),
        "format": sometimes(st.none() | st.just("json") | VALID_SCHEMA, FORMAT),
        "raw": sometimes(st.just(False) if chat else st.booleans(), JUNK),
        "label": sometimes(st.none() | WORDS.filter(str.isprintable), TEXT | JUNK),
    }
    request = check_run(**args)
    if request is not None:
        engine_builds(engine, request)


@fuzz("schemas")
@given(format=SCHEMA)
def test_schemas(engine: Any, format: Any) -> None:
    request = check_run(prompt="Give me JSON.", format=format)
    if request is not None:
        engine_builds(engine, request)


def test_the_harness_accepts_good_requests(engine: Any) -> None:
    """Not vacuous: valid arguments pass both checks, and a schema the converter cannot
    handle is the engine's UsageError."""
    schema = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 8}}}
    for args in (
        {"prompt": "Hi", "system": "Be brief.", "format": schema},
        {"messages": [{"role": "user", "content": "Hi"}], "format": "json", "label": "chat"},
        {"prompt": "<|im_start|>user\nHi<|im_end|>\n", "raw": True},
    ):
        request = check_run(**args)
        assert request is not None
        engine.check_request(replace(request, options=OPTIONS))
    request = check_run(prompt="Hi", format={"type": "string", "pattern": "abc"})
    with pytest.raises(UsageError, match=r'^format: .*"\^" and end with "\$"'):
        engine.check_request(replace(request, options=OPTIONS))
    # A boolean subschema is valid JSON Schema the converter cannot walk (found by this
    # module's generative test): the engine's UsageError, not an AttributeError.
    request = check_run(prompt="Hi", format={"properties": {"a": False}})
    with pytest.raises(UsageError, match=r"^format: .*AttributeError"):
        engine.check_request(replace(request, options=OPTIONS))


# -- end to end -----------------------------------------------------------------------------------

CALLS = """
import pytest

@pytest.mark.parametrize("name", ["system_123", "surrogate", "objekt", "pattern", "ok"])
def test_call(tokrate, name):
    args = {
        "ok": dict(prompt="Hi", system="Be brief.", format={"type": "string", "maxLength": 4}),
        "system_123": dict(prompt="Hi", system=123),
        "surrogate": dict(prompt="Hi \\ud800"),
        "objekt": dict(prompt="Hi", format={"type": "objekt"}),
        "pattern": dict(prompt="Hi", format={"type": "string", "pattern": "abc"}),
    }[name]
    tokrate.run(**args)
"""
SUITE = """\
cases:
  - name: yaml_raw_chat
    raw: true
    messages: [{role: user, content: Hi}]
"""


def test_bad_arguments_fail_the_test_before_any_round(pytester: pytest.Pytester) -> None:
    """Four bad calls and a bad YAML case fail with our message, before any round; a
    good call in the same run is measured. (A YAML ``format:`` that is no JSON Schema is
    already a collection error: docs/bad-input.md, row yaml-format.)"""
    pytester.makepyfile(test_calls=CALLS)
    pytester.path.joinpath("tokrate_bad.yaml").write_text(SUITE, encoding="utf-8")
    report = pytester.path / "report.json"
    result = pytester.runpytest(
        *FAST,
        "--tokrate-model=smollm2",
        f"--tokrate-report-json={report}",
    )
    text = output(result)
    result.assert_outcomes(failed=5, passed=1)
    assert_clean(result)
    for fragment in (
        "tokrate.run() system: invalid value 123",
        "tokrate.run() prompt: invalid value 'Hi \\ud800'",
        "tokrate.run() format.type: 'objekt' is not valid under any of the given schemas",
        'format: llama.cpp\'s schema converter says: Pattern must start with "^"',
        "tokrate.run(): raw=True sends a prompt as it is",
    ):
        assert fragment in text, text
    document = json.loads(report.read_text(encoding="utf-8"))
    # Only the good call measured rounds (the proof can fail: a good call is measured).
    measured = [m["test_id"] for m in document["measurements"]]
    assert measured == ["test_calls.py::test_call[smollm2-ok]"], measured
