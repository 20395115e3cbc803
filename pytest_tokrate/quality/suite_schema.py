"""The suite file's JSON Schema, and the problems it finds in a file, located by line.

:func:`schema_problems` words each schema error as ``where: what, and the fix`` (unknown
keys with a did-you-mean hint and the allowed keys); :class:`Locator` maps a JSON path
back to its line in the YAML text. Used by :mod:`pytest_tokrate.quality.suite`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

import yaml

from pytest_tokrate.errors import did_you_mean

_SCHEMA: dict[str, Any] | None = None


def suite_schema() -> dict[str, Any]:
    """The JSON Schema of suite files, shipped in the package."""
    global _SCHEMA
    if _SCHEMA is None:
        text = resources.files("pytest_tokrate").joinpath("schemas/suite.schema.json")
        _SCHEMA = json.loads(text.read_text(encoding="utf-8"))
    return _SCHEMA


class Locator:
    """Line numbers of YAML nodes by JSON path (mapping keys and list indexes)."""

    def __init__(self, root: yaml.Node | None, data: Any = None) -> None:
        self.root = root
        #: The parsed document, for messages that name a case (``path_text``).
        self.data = data

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


def path_text(path: list[Any], data: Any) -> str:
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


def schema_problems(data: Any, where: str, locate: Locator) -> list[tuple[int, str]]:
    from jsonschema import Draft202012Validator

    problems: list[tuple[int, str]] = []
    validator = Draft202012Validator(suite_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        path = list(error.absolute_path)
        at = path_text(path, data)
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
                            f"{at}: unknown key {key!r}{did_you_mean(str(key), allowed)}; "
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
                    f"{did_you_mean(error.instance, choices)}; "
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


__all__ = ["Locator", "path_text", "schema_problems", "suite_schema"]
