"""Numbers as report text, and the report-dictionary lookups every report shares.

One place for "how a missing value looks" ("-"), so the terminal tables, the Markdown
summary and the plots cannot drift apart. Pure: no pytest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pytest_tokrate.quality.text import pct

MISSING = "-"


def number(x: Any, scale: float = 1.0, digits: int = 1) -> str:
    """``x * scale`` with ``digits`` decimals; '-' for None and NaN (a figure not measured)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return MISSING
    return f"{float(x) * scale:.{digits}f}"


def percent(rate: float | None) -> str:
    """A rate in [0, 1] as a whole percentage ("50%"); '-' for None (no quality checks).

    The percentage itself is the quality package's, so pass rates read alike everywhere.
    """
    return MISSING if rate is None else pct(rate)


def labelled_name(test_id: str | None, label: str | None) -> str:
    """The test id with the measurement's label, as every report names a row."""
    name = test_id or "?"
    if label:
        name += f" ({label})"
    return name


def entry_name(entry: Mapping[str, Any]) -> str:
    """:func:`labelled_name` of a report entry (a measurement or a sweep)."""
    return labelled_name(entry.get("test_id"), entry.get("label"))


def summary_stat(entry: Mapping[str, Any], figure: str, stat: str) -> float | None:
    """One statistic of one figure of a report entry (a measurement or a sweep level).

    None when the figure was not measured: a summary of no samples is absent or null.
    """
    value = (entry["summaries"].get(figure) or {}).get(stat)
    return None if value is None else float(value)


__all__ = ["MISSING", "entry_name", "labelled_name", "number", "percent", "summary_stat"]
