"""Parsers of the gate's option values: tolerances, metric lists, modes, a number of
tokens. Pure; each error names the option (``source``), repeats the bad value and says
what is expected.

Shared by the pytest options, the ini file, ``@pytest.mark.tokrate`` and the console
script, so a value means the same wherever it is written.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from pytest_tokrate.errors import UsageError
from pytest_tokrate.gate.metrics import METRICS

GATE_MODES = ("enforce", "report", "off")
MISSING_MODES = ("warn", "fail")
MISMATCH_MODES = ("warn", "skip", "fail")
STALE_MODES = ("warn", "fail")


def _bad(source: str, value: object, expected: str) -> UsageError:
    return UsageError(f"{source}: invalid value {value!r}: expected {expected}.")


def parse_fraction(source: str, value: object) -> float:
    """``10%``, ``0.1`` or ``0`` -> 0.1; a bare number of 1 or more must carry ``%``."""
    if isinstance(value, bool):
        raise _bad(source, value, "a percentage such as 10% or a fraction such as 0.1")
    text = str(value).strip()
    percent = text.endswith("%")
    try:
        number = float(text[:-1] if percent else text)
    except ValueError:
        raise _bad(source, value, "a percentage such as 10% or a fraction such as 0.1") from None
    if math.isnan(number) or number < 0:
        raise _bad(source, value, "a percentage >= 0")
    if percent:
        number /= 100.0
    elif number >= 1:
        raise _bad(source, value, f"{number:g}% written with a percent sign, or a fraction < 1")
    if number >= 1:
        raise _bad(source, value, "a tolerance below 100%")
    return number


def parse_tolerance(value: object, source: str) -> dict[str, float]:
    """``10%`` (every speed metric), ``ttft=25%,pass_rate=0``, or a dict of those.

    The key ``*`` holds a value that applies to every speed metric.
    """
    if isinstance(value, Mapping):
        items: list[tuple[str, object]] = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        items = [("*", value)]
    else:
        items = []
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, raw = part.partition("=")
            items.append((key.strip(), raw) if sep else ("*", key))
        if not items:
            raise _bad(source, value, "a tolerance such as 10% or decode_tps=10%,ttft=25%")
    out: dict[str, float] = {}
    for key, raw_value in items:
        if key != "*" and key not in METRICS:
            raise UsageError(
                f"{source}: unknown metric {key!r} in tolerance {value!r}: use one of "
                f"{', '.join(METRICS)}."
            )
        out[key] = parse_fraction(f"{source} ({key})" if key != "*" else source, raw_value)
    return out


def parse_metrics(value: object, source: str) -> tuple[str, ...]:
    """Comma-separated metric names (or a list); ``none`` gates nothing."""
    if isinstance(value, str):
        names = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, Iterable):
        names = [str(v).strip() for v in value]
    else:
        raise _bad(source, value, "metric names separated by commas, e.g. decode_tps,ttft")
    if names == ["none"]:
        return ()
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise _bad(source, value, f"metric names from {', '.join(METRICS)} (or none)")
    return tuple(dict.fromkeys(names))


def parse_min_tokens(value: object, source: str) -> int:
    """A number of tokens >= 1 (``--tokrate-min-decode-tokens``)."""
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise _bad(source, value, "a whole number of tokens >= 1, such as 32")
    return int(text)


def parse_mode(value: object, source: str, choices: Sequence[str]) -> str:
    text = str(value).strip().lower()
    if text not in choices:
        raise _bad(source, value, "one of " + ", ".join(choices))
    return text


__all__ = [
    "GATE_MODES",
    "MISMATCH_MODES",
    "MISSING_MODES",
    "STALE_MODES",
    "parse_fraction",
    "parse_metrics",
    "parse_min_tokens",
    "parse_mode",
    "parse_tolerance",
]
