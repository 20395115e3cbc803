"""Reading a declarative suite file: YAML, schema validation, defaults and variables.

:func:`load_suite` turns a ``tokrate_*.yaml`` file into :class:`Case` objects or raises
:class:`SuiteError` listing every problem as ``file:line: where: what, and the fix``.
Pure: no pytest (the collector in :mod:`pytest_tokrate.suite` calls this).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .checks import Check, parse_check
from .config import validate_options
from .errors import TokrateError

_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_SCHEMA: dict[str, Any] | None = None


def suite_schema() -> dict[str, Any]:
    """The JSON Schema of suite files, shipped in the package."""
    global _SCHEMA
    if _SCHEMA is None:
        text = resources.files("pytest_tokrate").joinpath("schemas/suite.schema.json")
        _SCHEMA = json.loads(text.read_text(encoding="utf-8"))
    return _SCHEMA


class SuiteError(Exception):
    """A suite file that cannot be collected; the message lists every problem."""


@dataclass
class Case:
    """One case after merging the suite's defaults and resolving variables."""

    name: str
    line: int
    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    system: str | None = None
    rounds: int | None = None
    warmup: int | None = None
    timeout: float | None = None
    cache: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    format: str | dict[str, Any] | None = None
    raw: bool = False
    checks: list[Check] = field(default_factory=list)
    min_pass_rate: float | str | None = None
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)
    marks: list[Any] = field(default_factory=list)


class _Locator:
    """Line numbers of YAML nodes by JSON path (mapping keys and list indexes)."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.root = root

    def line(self, path: list[Any], key: bool = False) -> int:
        node = self.root
        line = 1 if node is None else node.start_mark.line + 1
        for step in path:
            found = None
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    if isinstance(k, yaml.ScalarNode) and k.value == str(step):
                        found = k if key and step == path[-1] else v
                        break
            elif (
                isinstance(node, yaml.SequenceNode)
                and isinstance(step, int)
                and 0 <= step < len(node.value)
            ):
                found = node.value[step]
            if found is None:
                break
            node = found
            line = node.start_mark.line + 1
        return line

    def duplicates(self) -> Iterator[tuple[int, str]]:
        """(line, key) of every key repeated in one mapping (YAML keeps only the last)."""
        stack = [self.root]
        seen_nodes: set[int] = set()
        while stack:
            node = stack.pop()
            if node is None or id(node) in seen_nodes:
                continue
            seen_nodes.add(id(node))
            if isinstance(node, yaml.MappingNode):
                keys: set[str] = set()
                for k, v in node.value:
                    if isinstance(k, yaml.ScalarNode) and k.value != "<<":
                        if k.value in keys:
                            yield k.start_mark.line + 1, k.value
                        keys.add(k.value)
                    stack.append(v)
            elif isinstance(node, yaml.SequenceNode):
                stack.extend(node.value)


def _path_text(path: list[Any], data: Any) -> str:
    out = ""
    node = data
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
        if isinstance(node, (dict, list)):
            try:
                node = node[step]
            except (KeyError, IndexError, TypeError):
                node = None
            if isinstance(node, dict) and isinstance(node.get("name"), str) and out.endswith("]"):
                out += f" ({node['name']})"
    return out or "(top level)"


def _allowed_keys(path: list[Any]) -> list[str]:
    schema = suite_schema()
    settings = list(schema["$defs"]["settings"]["properties"])
    if not path:
        return list(schema["properties"])
    if path == ["defaults"]:
        return settings
    if len(path) == 2 and path[0] == "cases":
        return [*schema["$defs"]["case"]["properties"], *settings]
    if len(path) >= 2 and path[-2] == "checks":
        return list(schema["$defs"]["check"]["properties"])
    if len(path) >= 2 and path[-2] == "thresholds":
        return list(schema["$defs"]["threshold"]["properties"])
    if len(path) >= 2 and path[-2] == "messages":
        return ["role", "content"]
    return []


def _did_you_mean(word: str, choices: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _schema_problems(data: Any, where: str, locate: _Locator) -> list[tuple[int, str]]:
    from jsonschema import Draft202012Validator

    problems: list[tuple[int, str]] = []
    validator = Draft202012Validator(suite_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        path = list(error.absolute_path)
        at = _path_text(path, data)
        kind = error.validator
        if kind in ("additionalProperties", "unevaluatedProperties") and isinstance(
            error.instance, dict
        ):
            allowed = _allowed_keys(path)
            for key in error.instance:
                if key not in allowed:
                    problems.append(
                        (
                            locate.line([*path, key], key=True),
                            f"{at}: unknown key {key!r}{_did_you_mean(str(key), allowed)}; "
                            f"allowed keys: {', '.join(allowed)}",
                        )
                    )
        elif kind == "enum" and isinstance(error.instance, str):
            choices = [str(c) for c in error.validator_value]
            shown = [c for c in choices if not c.startswith("not-")]
            more = " (each also negated with 'not-')" if len(shown) < len(choices) else ""
            noun = "check type" if len(shown) < len(choices) else "value"
            problems.append(
                (
                    locate.line(path),
                    f"{at}: unknown {noun} {error.instance!r}"
                    f"{_did_you_mean(error.instance, choices)}; "
                    f"use one of {', '.join(shown)}{more}",
                )
            )
        elif kind == "propertyNames":
            problems.append(
                (locate.line(path), f"{at}: bad key {error.instance!r}: {error.message}")
            )
        else:
            problems.append((locate.line(path), f"{at}: {error.message}"))
    return problems


def load_suite(path: Path, shown_as: str | None = None) -> list[Case]:
    """Parse, validate and expand one suite file; raises :class:`SuiteError` whose lines
    start with ``shown_as`` (default: the path) and the line number."""
    where = shown_as or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{where}: cannot read the suite file ({exc}).") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f"{mark.line + 1}:{mark.column + 1}" if mark is not None else "?"
        context = f" ({exc.context})" if exc.context else ""
        raise SuiteError(f"{where}:{line}: YAML syntax error: {exc.problem}{context}.") from None
    except yaml.YAMLError as exc:
        raise SuiteError(f"{where}: YAML error: {exc}.") from None
    if data is None:
        raise SuiteError(
            f"{where}: the file is empty: add a `cases:` list (see the README, "
            "'Declarative suites')."
        )
    locate = _Locator(root)
    problems = [
        (line, f"key {key!r} appears twice in one mapping") for line, key in locate.duplicates()
    ]
    problems += _schema_problems(data, where, locate)
    cases: list[Case] = []
    if not problems:
        cases, problems = _build_cases(data, path, locate)
    if problems:
        lines = [f"{where}:{line}: {message}" for line, message in sorted(problems)[:20]]
        if len(problems) > 20:
            lines.append(f"... and {len(problems) - 20} more problem(s)")
        raise SuiteError("\n".join(lines))
    return cases


def _build_cases(
    data: dict[str, Any], path: Path, locate: _Locator
) -> tuple[list[Case], list[tuple[int, str]]]:
    problems: list[tuple[int, str]] = []
    base_dir = path.parent
    defaults = data.get("defaults") or {}
    top_vars = _load_vars(data.get("vars") or {}, ["vars"], base_dir, locate, problems)
    default_checks = _checks(data, ["defaults", "checks"], path, locate, problems)
    cases: list[Case] = []
    names: dict[str, int] = {}
    for i, raw in enumerate(data["cases"]):
        at = ["cases", i]
        line = locate.line(at)
        name = raw["name"]
        if name in names:
            problems.append(
                (
                    locate.line([*at, "name"]),
                    f"case name {name!r} is already used on line {names[name]}: names must be "
                    "unique in a file",
                )
            )
        names.setdefault(name, line)
        merged = {**defaults, **raw}
        if ("prompt" in raw) == ("messages" in raw):
            problems.append((line, f"case {name!r}: give exactly one of `prompt` or `messages`"))
            continue
        variables = {
            **top_vars,
            **_load_vars(raw.get("vars") or {}, [*at, "vars"], base_dir, locate, problems),
        }
        try:
            options = validate_options(
                {**(defaults.get("options") or {}), **(raw.get("options") or {})},
                f"case {name!r} options",
            )
        except TokrateError as exc:
            problems.append(
                (
                    locate.line([*at, "options"] if "options" in raw else ["defaults", "options"]),
                    str(exc),
                )
            )
            continue
        case = Case(
            name=name,
            line=line,
            system=_fill(merged.get("system"), variables, [*at, "system"], locate, problems),
            rounds=merged.get("rounds"),
            warmup=merged.get("warmup"),
            timeout=merged.get("timeout"),
            cache=merged.get("cache"),
            options=options,
            format=merged.get("format"),
            raw=bool(merged.get("raw", False)),
            checks=[*default_checks, *_checks(data, [*at, "checks"], path, locate, problems)],
            min_pass_rate=merged.get("min_pass_rate"),
            thresholds={**(defaults.get("thresholds") or {}), **(raw.get("thresholds") or {})},
            marks=[*(defaults.get("marks") or []), *(raw.get("marks") or [])],
        )
        if "prompt" in raw:
            case.prompt = _fill(raw["prompt"], variables, [*at, "prompt"], locate, problems)
        else:
            case.messages = [
                {
                    "role": m["role"],
                    "content": _fill(
                        m["content"], variables, [*at, "messages", j], locate, problems
                    )
                    or "",
                }
                for j, m in enumerate(raw["messages"])
            ]
        if case.min_pass_rate is not None:
            from .checks import parse_min_pass_rate

            try:
                parse_min_pass_rate(f"case {name!r}", case.min_pass_rate)
            except TokrateError as exc:
                problems.append((locate.line([*at, "min_pass_rate"]), str(exc)))
        for figure, bound in case.thresholds.items():
            for key in ("min", "max"):
                value = bound.get(key)
                # .nan passes the schema's "number" but makes every comparison false:
                # the threshold would never fail.
                if isinstance(value, float) and not math.isfinite(value):
                    where = [*at, "thresholds", figure, key]
                    if figure not in (raw.get("thresholds") or {}):
                        where = ["defaults", "thresholds", figure, key]
                    problems.append(
                        (
                            locate.line(where),
                            f"case {name!r}: thresholds.{figure}.{key}: {value!r} is not a "
                            "finite number; give a bound such as 10 or 0.5",
                        )
                    )
        cases.append(case)
    return cases, problems


def _load_vars(
    raw: Mapping[str, Any],
    at: list[Any],
    base_dir: Path,
    locate: _Locator,
    problems: list[tuple[int, str]],
) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in raw.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if text.startswith("file://"):
            file = base_dir / text[len("file://") :]
            try:
                text = file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(
                    (
                        locate.line([*at, key]),
                        f"variable {key!r}: cannot read {str(file)!r} ({exc.__class__.__name__}): "
                        "give a path relative to the suite file",
                    )
                )
                continue
        out[key] = text
    return out


def _fill(
    text: str | None,
    variables: Mapping[str, str],
    at: list[Any],
    locate: _Locator,
    problems: list[tuple[int, str]],
) -> str | None:
    if text is None:
        return None
    missing = sorted({m.group(1) for m in _VAR.finditer(text)} - set(variables))
    if missing:
        known = ", ".join(sorted(variables)) or "none defined"
        problems.append(
            (
                locate.line(at),
                f"unknown variable(s) {', '.join('{{' + m + '}}' for m in missing)}: define "
                f"them under `vars:` (known: {known})",
            )
        )
        return text
    return _VAR.sub(lambda m: variables[m.group(1)], text)


def _checks(
    data: Any, at: list[Any], path: Path, locate: _Locator, problems: list[tuple[int, str]]
) -> list[Check]:
    items: Any = data
    for step in at:
        items = items.get(step) if isinstance(items, dict) else items[step]
        if items is None:
            return []
    out = []
    for j, item in enumerate(items):
        here = [*at, j]
        try:
            out.append(parse_check(item, _path_text(here, data), path.parent))
        except TokrateError as exc:
            problems.append((locate.line(here), str(exc)))
    return out


__all__ = ["Case", "SuiteError", "load_suite", "suite_schema"]
