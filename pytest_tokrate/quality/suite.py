"""Reading a declarative suite file: YAML, schema validation, defaults and variables.

:func:`load_suite` turns a ``tokrate_*.yaml`` file into :class:`Case` objects or raises
:class:`SuiteError` listing every problem as ``file:line: where: what, and the fix``.
Pure: no pytest (the collector in :mod:`pytest_tokrate.plugin.collector` calls this).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_tokrate.core.request_check import check_format
from pytest_tokrate.core.settings import Layer, resolve, validate_options
from pytest_tokrate.errors import TokrateError
from pytest_tokrate.quality.checks import parse_check, parse_min_pass_rate
from pytest_tokrate.quality.pycheck import file_reference
from pytest_tokrate.quality.suite_schema import Locator, path_text, schema_problems
from pytest_tokrate.quality.suite_vars import OPT_IN, SuiteTexts, fill, load_vars
from pytest_tokrate.quality.suite_yaml import SuiteError, load_yaml, read_suite_text
from pytest_tokrate.quality.types import Check


@dataclass
class Case:
    """One case after merging the suite's defaults and resolving variables."""

    name: str
    line: int
    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    system: str | None = None
    rounds: int | str | None = None
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


def load_suite(path: Path, shown_as: str | None = None) -> list[Case]:
    """Parse, validate and expand one suite file; raises :class:`SuiteError` whose lines
    start with ``shown_as`` (default: the path) and the line number."""
    where = shown_as or str(path)
    # Bounded: a regular file of a few MB, nesting and YAML aliases limited (suite_yaml).
    root, data = load_yaml(read_suite_text(path, where), where)
    if data is None:
        raise SuiteError(
            f"{where}: the file is empty: add a `cases:` list (see the README, "
            "'Declarative suites')."
        )
    locate = Locator(root, data)
    problems = [
        (line, f"key {key!r} appears twice in one mapping") for line, key in locate.duplicates()
    ]
    problems += schema_problems(data, where, locate)
    cases: list[Case] = []
    if not problems:
        cases, problems = _build_cases(data, path, locate)
    else:
        # Every problem at once: what the schema found, and what building the parts it
        # left valid finds (variables, regexes, files, schemas), not a second pass later.
        problems += _problems_beyond_schema(data, path, locate, problems)
    if problems:
        lines = [f"{where}:{line}: {message}" for line, message in sorted(problems)[:20]]
        if len(problems) > 20:
            lines.append(f"... and {len(problems) - 20} more problem(s)")
        raise SuiteError("\n".join(lines))
    return cases


def _problems_beyond_schema(
    data: Any, path: Path, locate: Locator, found: list[tuple[int, str]]
) -> list[tuple[int, str]]:
    """Problems of the cases the schema left whole, when it found problems elsewhere: only
    cases without a schema problem on their lines are built (a broken one could not be),
    with the file's own parts (vars, defaults) only when those are whole too."""
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        return []
    cases = data["cases"]
    starts = [locate.line(["cases", i]) for i in range(len(cases))] + [10**9]
    bad = {line for line, _ in found}
    whole = [
        i
        for i, raw in enumerate(cases)
        if isinstance(raw, dict)
        and isinstance(raw.get("name"), str)
        and not any(starts[i] <= line < starts[i + 1] for line in bad)
    ]
    if any(line < starts[0] for line in bad):  # vars or defaults are broken: skip them
        data = {"cases": cases, OPT_IN: data.get(OPT_IN)}
    problems: list[tuple[int, str]] = []
    try:
        _, problems = _build_cases(data, path, locate, set(whole))
    except (KeyError, TypeError, AttributeError, ValueError, IndexError):
        return []  # a shape the schema already reported; nothing more to add
    return problems


@dataclass
class _FileScope:
    """What every case of one suite file shares, and the problems found so far.

    Each builder appends to ``problems`` instead of raising, so one run of the loader
    reports every problem of the file.
    """

    data: dict[str, Any]
    path: Path
    locate: Locator
    problems: list[tuple[int, str]]
    defaults: dict[str, Any]
    texts: SuiteTexts
    variables: dict[str, str]
    checks: list[Check]


def _build_cases(
    data: dict[str, Any], path: Path, locate: Locator, only: set[int] | None = None
) -> tuple[list[Case], list[tuple[int, str]]]:
    """The cases of a valid file; ``only``: the indexes of the cases to build when the
    others are broken (default: all)."""
    problems: list[tuple[int, str]] = []
    texts = SuiteTexts(path.parent, allow_outside=data.get(OPT_IN) is True)
    scope = _FileScope(
        data,
        path,
        locate,
        problems,
        defaults=data.get("defaults") or {},
        texts=texts,
        variables=load_vars(data.get("vars") or {}, ["vars"], texts, locate, problems),
        checks=_checks(data, ["defaults", "checks"], texts, locate, problems),
    )
    cases: list[Case] = []
    first_lines: dict[str, int] = {}
    for i, raw in enumerate(data["cases"]):
        if only is not None and i not in only:
            continue
        _note_duplicate_name(raw["name"], ["cases", i], first_lines, scope)
        case = _build_case(raw, ["cases", i], scope)
        if case is not None:
            cases.append(case)
    return cases, problems


def _note_duplicate_name(
    name: str, at: list[Any], first_lines: dict[str, int], scope: _FileScope
) -> None:
    """Record a case name used twice; ``first_lines`` maps each name to its first line."""
    if name in first_lines:
        scope.problems.append(
            (
                scope.locate.line([*at, "name"]),
                f"case name {name!r} is already used on line {first_lines[name]}: names must "
                "be unique in a file",
            )
        )
    first_lines.setdefault(name, scope.locate.line(at))


def _build_case(raw: dict[str, Any], at: list[Any], scope: _FileScope) -> Case | None:
    """One case merged with the defaults; None when its prompt or options are unusable."""
    name, line = raw["name"], scope.locate.line(at)
    defaults, problems = scope.defaults, scope.problems
    if ("prompt" in raw) == ("messages" in raw):
        problems.append((line, f"case {name!r}: give exactly one of `prompt` or `messages`"))
        return None
    own_vars = load_vars(raw.get("vars") or {}, [*at, "vars"], scope.texts, scope.locate, problems)
    variables = {**scope.variables, **own_vars}
    options = _case_options(raw, at, scope)
    if options is None:
        return None
    merged = {**defaults, **raw}
    case = Case(
        name=name,
        line=line,
        system=_fill(merged.get("system"), variables, [*at, "system"], scope),
        rounds=merged.get("rounds"),
        warmup=merged.get("warmup"),
        timeout=merged.get("timeout"),
        cache=merged.get("cache"),
        options=options,
        format=merged.get("format"),
        raw=bool(merged.get("raw", False)),
        checks=[
            *scope.checks,
            *_checks(scope.data, [*at, "checks"], scope.texts, scope.locate, problems),
        ],
        min_pass_rate=merged.get("min_pass_rate"),
        thresholds={**(defaults.get("thresholds") or {}), **(raw.get("thresholds") or {})},
        marks=[*(defaults.get("marks") or []), *(raw.get("marks") or [])],
    )
    _fill_conversation(case, raw, variables, at, scope)
    _check_settings(case, at, scope)
    _check_min_pass_rate(case, at, scope)
    _check_thresholds(case, raw, at, scope)
    _check_marks(case, raw, at, scope)
    return case


def _case_options(raw: dict[str, Any], at: list[Any], scope: _FileScope) -> dict[str, Any] | None:
    """The defaults' options updated by the case's, validated; None (a problem) if bad."""
    try:
        return validate_options(
            {**(scope.defaults.get("options") or {}), **(raw.get("options") or {})},
            f"case {raw['name']!r} options",
        )
    except TokrateError as exc:
        where = [*at, "options"] if "options" in raw else ["defaults", "options"]
        scope.problems.append((scope.locate.line(where), str(exc)))
        return None


def _fill_conversation(
    case: Case, raw: dict[str, Any], variables: Mapping[str, str], at: list[Any], scope: _FileScope
) -> None:
    """Set the case's prompt, or its messages, with the variables filled in."""
    if "prompt" in raw:
        case.prompt = _fill(raw["prompt"], variables, [*at, "prompt"], scope)
        return
    case.messages = [
        {
            "role": m["role"],
            "content": _fill(m["content"], variables, [*at, "messages", j], scope) or "",
        }
        for j, m in enumerate(raw["messages"])
    ]


def _check_marks(case: Case, raw: dict[str, Any], at: list[Any], scope: _FileScope) -> None:
    """A mark whose condition is a string would be evaluated by pytest as Python code:
    nothing from a suite file is run (only the ``python`` checks a user names)."""
    for mark in case.marks:
        if not isinstance(mark, dict):
            continue
        for name, kwargs in mark.items():
            condition = (kwargs or {}).get("condition")
            if isinstance(condition, str):
                where = [*at, "marks"] if "marks" in raw else ["defaults", "marks"]
                scope.problems.append(
                    (
                        scope.locate.line(where),
                        f"{path_text(where, scope.locate.data)}: {name} condition "
                        f"{condition!r} is a string, which pytest would run as Python code; "
                        "a suite never runs code from its file: give true or false, or use "
                        "`skip` with a reason (or select cases with -k / -m)",
                    )
                )


def _check_settings(case: Case, at: list[Any], scope: _FileScope) -> None:
    """Rounds, warm-up and timeout read by the resolver every other layer uses, so a case
    asking for 10**30 rounds is a collection error, not a run that never ends; ``format``
    checked as ``tokrate.run()`` checks it."""
    try:
        resolve([Layer(f"case {case.name!r}", case.rounds, case.warmup, timeout=case.timeout)])
    except TokrateError as exc:
        scope.problems.append((scope.locate.line(at), str(exc)))
    try:  # the same check as tokrate.run(format=...), here at collection
        check_format(f"case {case.name!r} format", case.format)
    except TokrateError as exc:
        scope.problems.append((scope.locate.line([*at, "format"]), str(exc)))


def _check_min_pass_rate(case: Case, at: list[Any], scope: _FileScope) -> None:
    if case.min_pass_rate is None:
        return
    try:
        parse_min_pass_rate(f"case {case.name!r}", case.min_pass_rate)
    except TokrateError as exc:
        scope.problems.append((scope.locate.line([*at, "min_pass_rate"]), str(exc)))


def _check_thresholds(case: Case, raw: dict[str, Any], at: list[Any], scope: _FileScope) -> None:
    for figure, bound in case.thresholds.items():
        for key in ("min", "max"):
            value = bound.get(key)
            # .nan passes the schema's "number" but makes every comparison false:
            # the threshold would never fail.
            if isinstance(value, float) and not math.isfinite(value):
                where = [*at, "thresholds", figure, key]
                if figure not in (raw.get("thresholds") or {}):
                    where = ["defaults", "thresholds", figure, key]
                scope.problems.append(
                    (
                        scope.locate.line(where),
                        f"case {case.name!r}: thresholds.{figure}.{key}: {value!r} is not a "
                        "finite number; give a bound such as 10 or 0.5",
                    )
                )


def _fill(
    text: str | None, variables: Mapping[str, str], at: list[Any], scope: _FileScope
) -> str | None:
    return fill(text, variables, at, scope.texts, scope.locate, scope.problems)


def _checks(
    data: Any, at: list[Any], texts: SuiteTexts, locate: Locator, problems: list[tuple[int, str]]
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
            _confine_python_file(item, path_text(here, data), texts)
            out.append(parse_check(item, path_text(here, data), texts.base_dir))
        except (TokrateError, ValueError) as exc:
            problems.append((locate.line(here), str(exc)))
    return out


def _confine_python_file(item: Any, where: str, texts: SuiteTexts) -> None:
    """A ``python`` check's ``file://`` module is read (and run) only from the suite's
    directory tree, as variables' files are, unless the suite opts in."""
    value = item.get("value") if isinstance(item, dict) else None
    file = file_reference(value, texts.base_dir)
    if file is not None:
        texts.inside(f"{where}: {str(value).strip()}", file)


__all__ = ["Case", "SuiteError", "load_suite"]
