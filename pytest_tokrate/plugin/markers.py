"""The ``@pytest.mark.tokrate(...)`` arguments of a test, read in one place.

pytest's ``get_closest_marker`` returns one marker and silently drops any other, so two
``tokrate`` markers stacked on one function lost one of them. Here:

- two or more ``tokrate`` markers at one level (stacked decorators on a function, two in
  a module's ``pytestmark`` list, two in one ``pytest.param(marks=...)``) are a usage
  error naming each one's arguments: merge them into one;
- markers at different levels merge, the closer one winning key by key (module < class <
  function < ``pytest.param``), as a value set closer to the test should: a module's
  ``pytestmark = pytest.mark.tokrate(rounds=3)`` applies to every test in it, and a test's
  own ``@pytest.mark.tokrate(num_predict=8)`` adds to it. ``options={...}`` merge key by key
  too, like every layer's generation options.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from pytest_tokrate.errors import UsageError

NAME = "tokrate"


def _call(mark: pytest.Mark) -> str:
    """``@pytest.mark.tokrate(rounds=3, warmup=0)``, as the user wrote it."""
    args = [repr(a) for a in mark.args] + [f"{k}={v!r}" for k, v in mark.kwargs.items()]
    return f"@pytest.mark.tokrate({', '.join(args)})"


def _same(marks: Sequence[pytest.Mark], stored: object) -> list[pytest.Mark]:
    """Those of ``marks`` stored in ``stored`` (a ``pytestmark`` value or a list of marks):
    pytest keeps the very ``Mark`` objects, so identity tells where each came from."""
    items = stored if isinstance(stored, (list, tuple)) else [stored]
    ids = {id(getattr(item, "mark", item)) for item in items}
    return [m for m in marks if id(m) in ids]


def _levels(node: pytest.Item) -> Iterator[tuple[str, list[pytest.Mark]]]:
    """The ``tokrate`` markers of each level around ``node``, farthest first: module,
    each class (base classes first), the function's decorators, its ``pytest.param``."""
    for level in node.listchain():
        own = [m for m in level.own_markers if m.name == NAME]
        if not own:
            continue
        if level is node:
            params = _same(own, getattr(getattr(node, "callspec", None), "marks", []))
            yield "function", [m for m in own if all(m is not p for p in params)]
            yield "pytest.param", params
        elif isinstance(level, pytest.Class):
            for klass in reversed(level.obj.__mro__):
                yield f"class {klass.__name__}", _same(own, klass.__dict__.get("pytestmark", []))
        else:
            yield type(level).__name__.lower(), own


def _merge(below: dict[str, Any], mark: pytest.Mark) -> dict[str, Any]:
    out = {**below, **mark.kwargs}
    if isinstance(below.get("options"), dict) and isinstance(mark.kwargs.get("options"), dict):
        out["options"] = {**below["options"], **mark.kwargs["options"]}
    return out


def marker_kwargs(node: pytest.Item, where: str) -> dict[str, Any] | None:
    """The merged keyword arguments of the test's ``tokrate`` markers, ``None`` without
    any; a :class:`UsageError` for two at one level or for positional arguments."""
    merged: dict[str, Any] | None = None
    for level, marks in _levels(node):
        if len(marks) > 1:
            calls = " and ".join(_call(m) for m in marks)
            raise UsageError(
                f"{where}: {len(marks)} tokrate markers on one {level}: {calls}; only one "
                "would apply: merge them into one @pytest.mark.tokrate(...)."
            )
        for mark in marks:
            _positional(mark, where)
            merged = _merge(merged or {}, mark)
    return merged


def _positional(mark: pytest.Mark, where: str) -> None:
    if mark.args:
        raise UsageError(
            f"{where}: @pytest.mark.tokrate takes keyword arguments only, got {mark.args!r}."
        )


__all__ = ["marker_kwargs"]
