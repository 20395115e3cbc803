"""The evaluators behind the built-in check types (see :mod:`pytest_tokrate.quality.checks`).

Each factory takes a parsed check value and returns ``(answer, RoundContext) ->
Observation``; an observation states the facts found (``found 'Paris' at char 12``)
before any ``not-`` negation, so one reason reads right either way.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pytest_tokrate.quality.text import around, quoted_list, short
from pytest_tokrate.quality.types import Evaluator, Observation, RoundContext


def contains(needle: str, ignore_case: bool) -> Evaluator:
    def run(text: str, _: RoundContext) -> Observation:
        hay, key = (text.lower(), needle.lower()) if ignore_case else (text, needle)
        at = hay.find(key)
        if at < 0:
            return Observation(False, f"{needle!r} not found")
        found = text[at : at + len(needle)]
        return Observation(True, f"found {found!r} at char {at}: {around(text, at, len(needle))}")

    return run


def contains_many(needles: list[str], ignore_case: bool, need_all: bool) -> Evaluator:
    def run(text: str, _: RoundContext) -> Observation:
        hay = text.lower() if ignore_case else text
        found = [n for n in needles if (n.lower() if ignore_case else n) in hay]
        missing = [n for n in needles if n not in found]
        if need_all:
            if missing:
                return Observation(False, f"missing {quoted_list(missing)}")
            return Observation(True, f"found all of {quoted_list(needles)}")
        if found:
            return Observation(True, f"found {quoted_list(found)}")
        return Observation(False, f"none of {quoted_list(needles)} found")

    return run


def starts_with(prefix: str) -> Evaluator:
    def run(text: str, _: RoundContext) -> Observation:
        start = text.lstrip()
        if start.startswith(prefix):
            return Observation(True, f"starts with {prefix!r}")
        return Observation(False, f"starts with {short(start, len(prefix) + 20)!r}")

    return run


def equals(expected: str | dict[str, Any] | list[Any]) -> Evaluator:
    def run(text: str, _: RoundContext) -> Observation:
        if isinstance(expected, str):
            ok = text.strip() == expected.strip()
            return Observation(ok, "equal" if ok else f"differs from {short(expected, 60)!r}")
        parsed, error = parse_json_answer(text)
        if error:
            return Observation(False, error)
        ok = parsed == expected
        return Observation(ok, "equal JSON" if ok else "JSON differs from the expected value")

    return run


def regex_search(pattern: re.Pattern[str]) -> Evaluator:
    def run(text: str, _: RoundContext) -> Observation:
        m = pattern.search(text)
        if m is None:
            return Observation(False, f"no match for /{pattern.pattern}/")
        hit = m.group(0)
        return Observation(
            True, f"matched {hit!r} at char {m.start()}: {around(text, m.start(), len(hit))}"
        )

    return run


def parse_json_answer(text: str, anywhere: bool = False) -> tuple[Any, str | None]:
    """The JSON value of an answer (surrounding whitespace and a Markdown code fence
    are ignored), or ``(None, reason)``. ``anywhere`` finds the first JSON object or
    array inside surrounding prose."""
    body = text.strip()
    fenced = re.fullmatch(r"```[\w-]*\s*\n?(.*?)\n?```", body, re.DOTALL)
    if fenced:
        body = fenced.group(1).strip()
    try:
        return json.loads(body), None
    except ValueError as exc:
        if not anywhere:
            return None, f"not valid JSON: {exc}"
    decoder = json.JSONDecoder()
    for m in re.finditer(r"[\[{]", text):
        try:
            value, _ = decoder.raw_decode(text, m.start())
        except ValueError:
            continue
        return value, None
    return None, "no JSON object or array found"


def json_check(validator: Any, anywhere: bool) -> Evaluator:
    def run(text: str, _: RoundContext) -> Observation:
        value, error = parse_json_answer(text, anywhere)
        if error:
            return Observation(False, error)
        if validator is None:
            return Observation(True, "valid JSON")
        from jsonschema.exceptions import best_match

        found = best_match(validator.iter_errors(value))
        if found is None:
            return Observation(True, "valid JSON matching the schema")
        at = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in found.absolute_path)
        return Observation(False, f"schema violation at ${at}: {short(found.message, 120)}")

    return run


def length(bound: int, is_max: bool, tokens: bool) -> Evaluator:
    unit = "tokens" if tokens else "words"

    def run(text: str, context: RoundContext) -> Observation:
        count = context.sample.output_tokens if tokens else len(text.split())
        if count is None:
            raise ValueError("the backend reported no token count for this round")
        ok = count <= bound if is_max else count >= bound
        relation = ("<=" if ok else ">") if is_max else (">=" if ok else "<")
        return Observation(ok, f"{count} {unit} {relation} {bound}")

    return run


__all__ = [
    "contains",
    "contains_many",
    "equals",
    "json_check",
    "length",
    "parse_json_answer",
    "regex_search",
    "starts_with",
]
