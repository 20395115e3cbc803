"""Small text helpers shared by check reasons, check errors and the pass-rate messages.

Pure and dependency-free, so every module of :mod:`pytest_tokrate.quality` (and the
reports that word its results) can import it without an import cycle.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def short(text: str, limit: int) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def around(text: str, at: int, length: int, margin: int = 30) -> str:
    """The quoted context of a hit at ``text[at:at+length]``, ``…`` where it was cut."""
    start, end = max(0, at - margin), min(len(text), at + length + margin)
    snippet = " ".join(text[start:end].split())
    return f'"{"…" if start else ""}{snippet}{"…" if end < len(text) else ""}"'


def quoted_list(items: Sequence[str]) -> str:
    return ", ".join(repr(i) for i in items)


def exception_text(exc: BaseException) -> str:
    """``TypeName: message``, or the bare type name when the message is empty."""
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def callable_name(func: Any) -> str:
    return str(getattr(func, "__name__", None) or func)


def pct(rate: float) -> str:
    """A share as a whole percentage (``80%``); ``-`` for NaN (no rounds)."""
    return "-" if math.isnan(rate) else f"{rate * 100:.0f}%"


__all__ = [
    "around",
    "callable_name",
    "exception_text",
    "pct",
    "quoted_list",
    "short",
    "short_repr",
]
