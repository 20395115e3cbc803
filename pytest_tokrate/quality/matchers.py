"""The evaluators behind the built-in check types (see :mod:`pytest_tokrate.checks`).

Each factory takes a parsed check value and returns ``(answer, RoundContext) ->
Verdict``; a verdict states the facts found (``found 'Paris' at char 12``) before any
``not-`` negation, so one reason reads right either way.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .checks import Evaluator, RoundContext, Verdict, _around, _list, _short


def contains(needle: str, ignore_case: bool) -> Evaluator:
    def run(text: str, _: RoundContext) -> Verdict:
        hay, key = (text.lower(), needle.lower()) if ignore_case else (text, needle)
        at = hay.find(key)
        if at < 0:
            return Verdict(False, f"{needle!r} not found")
        found = text[at : at + len(needle)]
        return Verdict(True, f"found {found!r} at char {at}: {_around(text, at, len(needle))}")

    return run


def contains_many(needles: list[str], ignore_case: bool, need_all: bool) -> Evaluator:
    def run(text: str, _: RoundContext) -> Verdict:
        hay = text.lower() if ignore_case else text
        found = [n for n in needles if (n.lower() if ignore_case else n) in hay]
        missing = [n for n in needles if n not in found]
        if need_all:
            if missing:
                return Verdict(False, f"missing {_list(missing)}")
            return Verdict(True, f"found all of {_list(needles)}")
        if found:
            return Verdict(True, f"found {_list(found)}")
        return Verdict(False, f"none of {_list(needles)} found")

    return run


def starts_with(prefix: str) -> Evaluator:
    def run(text: str, _: RoundContext) -> Verdict:
        start = text.lstrip()
        if start.startswith(prefix):
            return Verdict(True, f"starts with {prefix!r}")
        return Verdict(False, f"starts with {_short(start, len(prefix) + 20)!r}")

    return run


def equals(expected: str | dict[str, Any] | list[Any]) -> Evaluator:
    def run(text: str, _: RoundContext) -> Verdict:
        if isinstance(expected, str):
            ok = text.strip() == expected.strip()
            return Verdict(ok, "equal" if ok else f"differs from {_short(expected, 60)!r}")
        parsed, error = parse_json_answer(text)
        if error:
            return Verdict(False, error)
        ok = parsed == expected
        return Verdict(ok, "equal JSON" if ok else "JSON differs from the expected value")

    return run


def regex_search(pattern: re.Pattern[str]) -> Evaluator:
    def run(text: str, _: RoundContext) -> Verdict:
        m = pattern.search(text)
        if m is None:
            return Verdict(False, f"no match for /{pattern.pattern}/")
        hit = m.group(0)
        return Verdict(
            True, f"matched {hit!r} at char {m.start()}: {_around(text, m.start(), len(hit))}"
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
    def run(text: str, _: RoundContext) -> Verdict:
        value, error = parse_json_answer(text, anywhere)
        if error:
            return Verdict(False, error)
        if validator is None:
            return Verdict(True, "valid JSON")
        from jsonschema.exceptions import best_match

        found = best_match(validator.iter_errors(value))
        if found is None:
            return Verdict(True, "valid JSON matching the schema")
        at = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in found.absolute_path)
        return Verdict(False, f"schema violation at ${at}: {_short(found.message, 120)}")

    return run


def length(bound: int, is_max: bool, tokens: bool) -> Evaluator:
    unit = "tokens" if tokens else "words"

    def run(text: str, context: RoundContext) -> Verdict:
        count = context.sample.output_tokens if tokens else len(text.split())
        if count is None:
            raise ValueError("the backend reported no token count for this round")
        ok = count <= bound if is_max else count >= bound
        relation = ("<=" if ok else ">") if is_max else (">=" if ok else "<")
        return Verdict(ok, f"{count} {unit} {relation} {bound}")

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
