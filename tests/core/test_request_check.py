"""The arguments of ``tokrate.run()`` / ``tokrate.sweep()`` are checked before any round:
each bad value is a UsageError naming the argument, showing the value and the fix."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_tokrate.backends.base import Message, Request
from pytest_tokrate.core.request_check import check_label, checked_request
from pytest_tokrate.errors import UsageError


def check(**given: Any) -> Request:
    args: dict[str, Any] = {
        "prompt": None,
        "messages": None,
        "system": None,
        "format": None,
        "raw": False,
    }
    args.update(given)
    return checked_request("run", **args)


USER = [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(
    ("given", "fragments"),
    [
        ({}, ["tokrate.run() needs exactly one of prompt='...' or messages=[...]"]),
        ({"prompt": "Hi", "messages": USER}, ["exactly one of"]),
        ({"prompt": 5}, ["tokrate.run() prompt: invalid value 5", "as a string"]),
        ({"prompt": ""}, ["prompt: invalid value ''", "an empty one measures nothing"]),
        ({"prompt": " \n\t"}, ["prompt: invalid value ' \\n\\t'", "some text in it"]),
        ({"prompt": "Hi \ud800"}, ["prompt: invalid value 'Hi \\ud800'", "lone surrogate"]),
        ({"prompt": "Hi", "system": 123}, ["tokrate.run() system: invalid value 123"]),
        ({"prompt": "Hi", "system": ""}, ["system: invalid value ''", "leave system out"]),
        ({"prompt": "Hi", "system": "\udfff"}, ["system: invalid value", "lone surrogate"]),
        ({"messages": []}, ["messages=[]: give at least one message"]),
        ({"messages": "Hi"}, ["messages: invalid value 'Hi'", "a list of"]),
        ({"messages": [{"content": "Hi"}]}, ["each message needs 'role' and 'content'"]),
        (
            {"messages": [{"role": "user", "content": "Hi", "images": []}]},
            ["messages[0]", "no other key (found 'images')"],
        ),
        (
            {"messages": [{"role": "user", "content": None}]},
            ["messages[0].content: invalid value None", "as a string"],
        ),
        (
            {"messages": [{"role": "user", "content": {"a": 1}}]},
            ["messages[0].content: invalid value {'a': 1}"],
        ),
        (
            {"messages": [*USER, {"role": "wizard", "content": "hi"}]},
            ["messages[1].role: invalid value 'wizard'", "'system', 'user', 'assistant'"],
        ),
        ({"messages": [{"role": "usr", "content": "hi"}]}, ["did you mean 'user'?"]),
        ({"messages": [{"role": "tool", "content": "4"}]}, ["role: invalid value 'tool'"]),
        (
            {"messages": [{"role": "system", "content": "Be brief."}, *USER], "system": "x"},
            ["messages[0] is a system message and system= is also given"],
        ),
        ({"prompt": "Hi", "raw": "yes"}, ["tokrate.run() raw: invalid value 'yes'", "True or"]),
        ({"prompt": "Hi", "raw": 1}, ["raw: invalid value 1"]),
        ({"messages": USER, "raw": True}, ["raw=True", "not messages=[...]"]),
        ({"prompt": "Hi", "system": "s", "raw": True}, ["raw=True", "no place for a system"]),
        ({"prompt": "Hi", "format": ""}, ["format: invalid value ''", "'json' or a JSON Schema"]),
        ({"prompt": "Hi", "format": "yaml"}, ["format: invalid value 'yaml'"]),
        ({"prompt": "Hi", "format": True}, ["format: invalid value True"]),
        (
            {"prompt": "Hi", "format": {"type": "objekt"}},
            ["format.type: 'objekt' is not valid under any of the given schemas", "fix the"],
        ),
        (
            {"prompt": "Hi", "format": {"type": "object", "properties": {"a": {"type": 5}}}},
            ["format.properties.a.type: 5 is not valid under any of the given schemas"],
        ),
        (
            {"prompt": "Hi", "format": {"type": "object", "required": "a"}},
            ["format.required: 'a' is not of type 'array'"],
        ),
        ({"prompt": "Hi", "format": {"minimum": float("nan")}}, ["format.minimum: invalid"]),
        ({"prompt": "Hi", "format": {"enum": [10**40]}}, ["format.enum[0]", "18 digits"]),
        ({"prompt": "Hi", "format": {1: "a"}}, ["format key: invalid value 1"]),
        ({"prompt": "Hi", "format": {"enum": (1, 2)}}, ["format.enum: invalid value (1, 2)"]),
        ({"prompt": "Hi", "format": {"$schema": ["x"]}}, ["format.$schema: invalid value"]),
    ],
)
def test_bad_arguments_name_the_argument_and_value(
    given: dict[str, Any], fragments: list[str]
) -> None:
    with pytest.raises(UsageError) as caught:
        check(**given)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_deep_schemas_are_refused_before_recursion() -> None:
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(5000):
        deep = {"items": deep}
    with pytest.raises(UsageError, match="nests more than 64 levels"):
        check(prompt="Hi", format=deep)


def test_a_huge_value_is_named_not_printed() -> None:
    with pytest.raises(UsageError) as caught:
        check(prompt="Hi", system=["x" * 10_000])
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize(
    ("given", "request_"),
    [
        ({"prompt": "Hi"}, Request(prompt="Hi")),
        (
            {"prompt": "Hi", "system": "Be brief.", "format": "json"},
            Request(prompt="Hi", system="Be brief.", format="json"),
        ),
        (
            {"prompt": "<|im_start|>user\nHi", "raw": True},
            Request(prompt="<|im_start|>user\nHi", raw=True),
        ),
        (
            {"messages": [{"role": "system", "content": ""}, Message("user", "Hi")]},
            Request(messages=(Message("system", ""), Message("user", "Hi"))),
        ),
        (
            {"prompt": "Hi", "format": {"type": "object", "required": ["a"]}},
            Request(prompt="Hi", format={"type": "object", "required": ["a"]}),
        ),
        (
            {"prompt": "Hi", "format": {"$schema": "http://json-schema.org/draft-07/schema#"}},
            Request(prompt="Hi", format={"$schema": "http://json-schema.org/draft-07/schema#"}),
        ),
    ],
)
def test_good_arguments_make_the_request(given: dict[str, Any], request_: Request) -> None:
    assert check(**given) == request_


def test_the_draft_named_by_dollar_schema_is_used() -> None:
    # Draft 4 wants a boolean exclusiveMaximum; 2020-12 a number.
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", "maximum": 3}
    check(prompt="Hi", format={**draft4, "exclusiveMaximum": True})
    with pytest.raises(UsageError, match=r"format\.exclusiveMaximum"):
        check(prompt="Hi", format={"maximum": 3, "exclusiveMaximum": True})


@pytest.mark.parametrize(
    ("label", "fragment"),
    [
        (5, "label: invalid value 5"),
        ("", "or no label= at all"),
        ("a\nb", "without control characters ('\\n')"),
        ("\ud800", "lone surrogate"),
    ],
)
def test_bad_labels(label: object, fragment: str) -> None:
    with pytest.raises(UsageError, match=None) as caught:
        check_label("tokrate.run() label", label)
    assert fragment in str(caught.value)


def test_good_labels() -> None:
    assert check_label("x", None) is None
    assert check_label("x", "long prompt, 8 threads") == "long prompt, 8 threads"
