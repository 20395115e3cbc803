"""Markdown building blocks: escaping, fenced blocks and tables.

Shared by the Markdown summary (:mod:`.markdown`) and the gate's section (:mod:`.gate`);
its own module so that the summary can include the gate's section without an import
cycle. Pure: no pytest.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~#])")


def md_escape(text: Any, limit: int = 200) -> str:
    """Make any text (test ids, model names, model output) safe inside a Markdown table
    cell: HTML and Markdown syntax neutralised, one line, at most ``limit`` characters."""
    s = " ".join(str(text).split())
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", s)


def md_fence(text: str) -> str:
    """A fenced code block that no backtick run inside ``text`` can close."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: int = 2) -> list[str]:
    """A table whose first ``right`` columns align left and the rest right (numbers)."""
    align = [":--" if i < right else "--:" for i in range(len(header))]
    return [md_row(header), md_row(align), *(md_row(r) for r in rows)]


__all__ = ["md_escape", "md_fence", "md_row", "md_table"]
