"""``python`` checks: user callables, ``file://`` and ``module:function`` references,
inline expressions, and how their return values are read.

Loaded by :mod:`pytest_tokrate.quality.checks` only when a ``python`` check is defined.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.util
import json
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pytest_tokrate.errors import CheckDefinitionError, did_you_mean
from pytest_tokrate.quality.text import exception_text, short, short_repr
from pytest_tokrate.quality.types import (
    DEFAULT_SCORE_THRESHOLD,
    VALUE_HINTS,
    Evaluator,
    Observation,
    RoundContext,
)


def python_evaluator(func: Callable[..., Any], threshold: float) -> Evaluator:
    takes_context = accepts_two_args(func)

    def run(text: str, context: RoundContext) -> Observation:
        out = func(text, context) if takes_context else func(text)
        return interpret_return(out, threshold)

    return run


def interpret_return(out: Any, threshold: float = DEFAULT_SCORE_THRESHOLD) -> Observation:
    """What a ``python`` check may return: a bool, a score in [0, 1] (passes at
    ``threshold``), ``(bool or score, reason)``, or ``{"pass": ..., "score": ...,
    "reason": ...}``."""
    reason = ""
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], str):
        out, reason = out
    if isinstance(out, Mapping):
        ok = out.get("pass", out.get("passed"))
        score = out.get("score")
        reason = str(out.get("reason") or reason)
        if ok is None and isinstance(score, (int, float)) and not isinstance(score, bool):
            ok = score >= threshold
        if not isinstance(ok, bool):
            raise TypeError(f"returned {short_repr(out)} without a boolean 'pass' or a 'score'")
        return Observation(ok, reason or ("passed" if ok else "failed"), _float_or_none(score))
    if isinstance(out, bool):
        return Observation(out, reason or ("returned True" if out else "returned False"))
    if isinstance(out, (int, float)):
        score = float(out)
        ok = score >= threshold
        text = f"score {score:.3g} {'>=' if ok else '<'} threshold {threshold:g}"
        return Observation(ok, f"{reason} ({text})" if reason else text, score)
    raise TypeError(
        f"returned {short_repr(out)}: return True/False, a score from 0 to 1, "
        "(result, reason) or {'pass': ..., 'reason': ...}"
    )


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


# -- python callables ------------------------------------------------------------------

_MODULE_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_FILE_MODULES: dict[str, Any] = {}


def load_callable(value: Any, where: str, base_dir: Path | None) -> Callable[..., Any]:
    if callable(value):
        return value  # type: ignore[no-any-return]
    if not isinstance(value, str) or not value.strip():
        raise CheckDefinitionError(f"{where}: value {value!r} must be{VALUE_HINTS['python'][1:]}.")
    text = value.strip()
    if text.startswith("file://"):
        return _from_file(text[len("file://") :], where, base_dir)
    if _MODULE_REF.match(text):
        module_name, _, attr = text.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise CheckDefinitionError(
                f"{where}: cannot import {module_name!r} ({exc}): check the module path, or "
                "use 'file://path/to/checks.py:function' relative to the suite file."
            ) from None
        return _attr(module, attr, text, where)
    return _expression(text, where)


def _split_file_ref(ref: str, base_dir: Path | None) -> tuple[Path, str]:
    """``checks.py:fn`` -> (the file's path, ``fn``); a bare path names ``get_assert``."""
    path_text, attr = ref, "get_assert"  # promptfoo's default function name
    head, sep, tail = ref.rpartition(":")
    if sep and tail.isidentifier():
        path_text, attr = head, tail
    path = Path(path_text)
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return path, attr


def file_reference(value: Any, base_dir: Path | None) -> Path | None:
    """The Python file a ``file://...`` check value names (None for any other value), so
    a suite can confine it to its directory tree before anything is imported."""
    if not isinstance(value, str) or not value.strip().startswith("file://"):
        return None
    return _split_file_ref(value.strip()[len("file://") :], base_dir)[0]


def _from_file(ref: str, where: str, base_dir: Path | None) -> Callable[..., Any]:
    path, attr = _split_file_ref(ref, base_dir)
    if not path.is_file():
        raise CheckDefinitionError(
            f"{where}: python file {str(path)!r} does not exist: give a path relative to the "
            "suite file, e.g. 'file://checks.py:my_check'."
        )
    key = str(path.resolve())
    module = _FILE_MODULES.get(key)
    if module is None:
        name = f"_tokrate_checks_{len(_FILE_MODULES)}_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise CheckDefinitionError(f"{where}: cannot load {str(path)!r} as a Python module.")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise CheckDefinitionError(
                f"{where}: importing {str(path)!r} failed: {exception_text(exc)}."
            ) from None
        _FILE_MODULES[key] = module
    return _attr(module, attr, f"file://{ref}", where)


def _attr(module: Any, attr: str, ref: str, where: str) -> Callable[..., Any]:
    func = getattr(module, attr, None)
    if not callable(func):
        names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise CheckDefinitionError(
            f"{where}: {ref!r} names no function {attr!r}{did_you_mean(attr, names)}."
        )
    return func  # type: ignore[no-any-return]


def _expression(text: str, where: str) -> Callable[..., Any]:
    try:
        code = compile(text, f"<check {text!r}>", "eval")
    except SyntaxError as exc:
        raise CheckDefinitionError(
            f"{where}: {text!r} is neither 'file://path.py:function', 'module:function' nor a "
            f"valid Python expression ({exc.msg}): an expression sees `output` and `context`, "
            'e.g. "len(output.split()) < 50".'
        ) from None

    def evaluate(output: str, context: RoundContext) -> Any:
        # One namespace (not globals + locals), so generator expressions see `output`.
        names = {"__builtins__": builtins, "output": output, "context": context}
        return eval(code, {**names, "json": json, "re": re})

    evaluate.__name__ = short(text, 50)
    return evaluate


def accepts_two_args(func: Callable[..., Any]) -> bool:
    import inspect

    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return False
    try:
        sig.bind("output", None)
    except TypeError:
        return False
    return True


__all__ = [
    "accepts_two_args",
    "file_reference",
    "interpret_return",
    "load_callable",
    "python_evaluator",
]
