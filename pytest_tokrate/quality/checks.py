"""Quality checks: what a good answer is, judged on every measured round.

The vocabulary follows promptfoo's assertion names where they fit: ``equals``,
``contains``, ``icontains``, ``contains-any``, ``icontains-any``, ``contains-all``,
``icontains-all``, ``starts-with``, ``regex``, ``is-json``, ``contains-json``, plus
``jsonschema``, length bounds (``max-tokens``, ``min-tokens``, ``max-words``,
``min-words``) and ``python`` (a callable returning pass/fail or a score, with a reason).
Any type may be negated with a ``not-`` prefix.

A check is defined by a dict (``{"type": "icontains", "value": "australian"}``), a bare
type name for checks without a value (``"is-json"``), or a Python callable. Definitions
are parsed once, before any round runs, so a bad regex or schema costs no model time.
This module parses them into :class:`~pytest_tokrate.quality.types.Check` objects (the
types live in :mod:`~pytest_tokrate.quality.types`) and resolves the minimum pass rate.

Pure: no pytest; ``jsonschema`` is imported only when a schema check is defined.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_tokrate.core.numbers import NumberError, fail, parse_float
from pytest_tokrate.errors import CheckDefinitionError, did_you_mean
from pytest_tokrate.quality.text import callable_name, short, short_repr
from pytest_tokrate.quality.types import (
    CHECK_TYPES,
    DEFAULT_SCORE_THRESHOLD,
    VALUE_HINTS,
    Check,
    Evaluator,
)

CHECK_KEYS = ("type", "value", "threshold", "name")
DEFAULT_MIN_PASS_RATE = 1.0


# -- parsing ---------------------------------------------------------------------------


def parse_checks(
    items: Sequence[Any] | None, where: str, base_dir: Path | None = None
) -> list[Check]:
    """Parse check definitions; errors name ``where`` (the test), the check and the fix."""
    if items is None:
        return []
    if isinstance(items, (str, Mapping)) or callable(items) or not isinstance(items, Sequence):
        raise CheckDefinitionError(
            f"{where}: checks must be a list, got {short_repr(items)}: write "
            "checks=[{'type': 'icontains', 'value': 'paris'}]."
        )
    # Every bad check is reported at once, numbered as in the list (``checks[1]`` is the
    # second), the way YAML suites number theirs.
    checks: list[Check] = []
    problems: list[str] = []
    for i, item in enumerate(items):
        try:
            checks.append(parse_check(item, f"{where}[{i}]", base_dir))
        except CheckDefinitionError as exc:
            problems.append(str(exc))
    if problems:
        raise CheckDefinitionError("\n".join(problems))
    return checks


def parse_check(item: Any, where: str, base_dir: Path | None = None) -> Check:
    if isinstance(item, Check):
        return item
    if callable(item):
        return _build("python", False, item, None, None, where, base_dir)
    if isinstance(item, str):
        spec: Mapping[str, Any] = {"type": item}
    elif isinstance(item, Mapping):
        spec = item
    else:
        raise CheckDefinitionError(
            f"{where}: {short_repr(item)} is not a check: use a dict such as "
            "{'type': 'contains', 'value': 'Paris'}, a type name such as 'is-json', or a "
            "callable."
        )
    unknown = [str(k) for k in spec if k not in CHECK_KEYS]
    if unknown:
        hint = did_you_mean(unknown[0], CHECK_KEYS)
        raise CheckDefinitionError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}{hint}: "
            f"a check takes {', '.join(CHECK_KEYS)}."
        )
    raw_type = spec.get("type")
    if not isinstance(raw_type, str) or not raw_type:
        raise CheckDefinitionError(
            f"{where}: {short_repr(dict(spec))} has no 'type': add one of "
            f"{', '.join(CHECK_TYPES)} (any of them negated with 'not-')."
        )
    negate = raw_type.startswith("not-")
    kind = raw_type[4:] if negate else raw_type
    if kind not in CHECK_TYPES:
        known = [*CHECK_TYPES, *(f"not-{t}" for t in CHECK_TYPES)]
        raise CheckDefinitionError(
            f"{where}: unknown check type {raw_type!r}{did_you_mean(raw_type, known)}; known "
            f"types: {', '.join(CHECK_TYPES)} (any of them negated with 'not-')."
        )
    where = f"{where} ({raw_type})"
    has_value = "value" in spec and spec["value"] is not None
    if CHECK_TYPES[kind] == "required" and not has_value:
        raise CheckDefinitionError(f"{where}: needs a 'value'{VALUE_HINTS.get(kind, '')}.")
    threshold = spec.get("threshold")
    if threshold is not None:
        if kind != "python":
            raise CheckDefinitionError(
                f"{where}: 'threshold' applies to python checks that return a score; "
                "remove it here."
            )
        threshold = _unit_float(threshold, f"{where}: threshold")
    name = spec.get("name")
    if name is not None and not isinstance(name, str):
        raise CheckDefinitionError(f"{where}: 'name' must be a string, got {name!r}.")
    return _build(kind, negate, spec.get("value"), threshold, name, where, base_dir)


def _build(
    kind: str,
    negate: bool,
    value: Any,
    threshold: float | None,
    name: str | None,
    where: str,
    base_dir: Path | None,
) -> Check:
    from pytest_tokrate.quality import matchers as m  # the evaluators, loaded with the first check

    evaluator: Evaluator
    if kind in ("contains", "icontains", "starts-with"):
        text = _string(value, where)
        evaluator = (
            m.starts_with(text) if kind == "starts-with" else m.contains(text, kind[0] == "i")
        )
        shown = json.dumps(text, ensure_ascii=False)
    elif kind.endswith(("-any", "-all")):
        words = _string_list(value, where)
        evaluator = m.contains_many(words, kind.startswith("i"), kind.endswith("-all"))
        shown = json.dumps(words, ensure_ascii=False)
    elif kind == "equals":
        if not isinstance(value, (str, dict, list)):
            raise CheckDefinitionError(
                f"{where}: value {value!r} must be a string, or a dict/list compared as JSON."
            )
        evaluator = m.equals(value)
        shown = json.dumps(value, ensure_ascii=False)
    elif kind == "regex":
        pattern = _regex(value, where)
        evaluator = m.regex_search(pattern)
        shown = json.dumps(pattern.pattern, ensure_ascii=False)
    elif kind in ("is-json", "contains-json", "jsonschema"):
        validator = _schema_validator(value, where) if value is not None else None
        evaluator = m.json_check(validator, anywhere=kind == "contains-json")
        shown = "" if value is None else "<schema>"
    elif kind in ("max-tokens", "min-tokens", "max-words", "min-words"):
        bound = _count(value, where)
        evaluator = m.length(bound, kind.startswith("max"), kind.endswith("tokens"))
        shown = str(bound)
    else:  # python
        from pytest_tokrate.quality.pycheck import load_callable, python_evaluator

        func = load_callable(value, where, base_dir)
        score_at = threshold if threshold is not None else DEFAULT_SCORE_THRESHOLD
        evaluator = python_evaluator(func, score_at)
        shown = callable_name(func)
    label = name or short(f"{'not-' if negate else ''}{kind} {shown}".strip(), 70)
    return Check(kind, negate, value, label, evaluator, threshold)


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or value == "":
        raise CheckDefinitionError(f"{where}: value {value!r} must be a non-empty string.")
    return value


def _string_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise CheckDefinitionError(
            f"{where}: value {short_repr(value)} must be a non-empty list of strings, "
            "e.g. ['Sydney', 'Melbourne']."
        )
    return list(value)


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CheckDefinitionError(f"{where}: value {value!r} must be a whole number >= 0.")
    return value


def _unit_float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise CheckDefinitionError(f"{where}: {value!r} must be a number from 0 to 1.")
    return float(value)


def _regex(value: Any, where: str) -> re.Pattern[str]:
    text = _string(value, where)
    try:
        return re.compile(text)
    except re.error as exc:
        raise CheckDefinitionError(
            f"{where}: bad regular expression {text!r}: {exc} (Python `re` syntax; use "
            "(?i) for case-insensitive matching)."
        ) from None


def _schema_validator(schema: Any, where: str) -> Any:
    if not isinstance(schema, (dict, bool)):
        raise CheckDefinitionError(
            f"{where}: the JSON Schema must be an object, got {short_repr(schema)}."
        )
    from jsonschema import exceptions, validators

    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)  # type: ignore[arg-type]  # booleans are schemas too
    except exceptions.SchemaError as exc:
        at = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise CheckDefinitionError(
            f"{where}: invalid JSON Schema at {at}: {exc.message}. Fix the schema "
            "(see https://json-schema.org/understanding-json-schema)."
        ) from None
    return cls(schema)


# -- precedence of the minimum pass rate -----------------------------------------------


def parse_min_pass_rate(source: str, value: object) -> float:
    """A share of rounds: a number from 0 to 1, or a percentage such as ``"80%"``."""
    expected = "a pass rate from 0 to 1 (or a percentage such as 80%)"
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text.endswith("%"):
        try:
            return parse_float(source, text[:-1], 0, 100, expected=expected) / 100
        except NumberError:  # the message shows the value as given, with its %
            raise fail(source, value, expected) from None
    try:
        return parse_float(source, value, 0, 1, expected=expected)
    except NumberError:
        raise fail(source, value, expected) from None


def resolve_min_pass_rate(layers: Sequence[tuple[str, object]]) -> tuple[float, str]:
    """The minimum pass rate from ``(source, value)`` pairs, lowest precedence first."""
    rate, source = DEFAULT_MIN_PASS_RATE, "default: every round"
    for where, value in layers:
        if value is not None:
            rate, source = parse_min_pass_rate(f"{where} min_pass_rate", value), where
    return rate, source


__all__ = [
    "DEFAULT_MIN_PASS_RATE",
    "parse_check",
    "parse_checks",
    "parse_min_pass_rate",
    "resolve_min_pass_rate",
]
