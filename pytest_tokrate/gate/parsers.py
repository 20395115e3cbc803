"""Parsers of the gate's option values: tolerances, metric lists, modes, a number of
tokens. Pure; each error names the option (``source``), repeats the bad value and says
what is expected.

Shared by the pytest options, the ini file, ``@pytest.mark.tokrate`` and the console
script, so a value means the same wherever it is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pytest_tokrate.core.numbers import NumberError, fail, parse_float, parse_int, shown
from pytest_tokrate.errors import UsageError
from pytest_tokrate.gate.metrics import METRICS

GATE_MODES = ("enforce", "report", "off")
MISSING_MODES = ("warn", "fail")
MISMATCH_MODES = ("warn", "skip", "fail")
STALE_MODES = ("warn", "fail")
UNSETTLED_MODES = ("warn", "fail")


def _bad(source: str, value: object, expected: str) -> UsageError:
    return fail(source, value, expected)


def parse_fraction(source: str, value: object) -> float:
    """``10%``, ``0.1`` or ``0`` -> 0.1; a bare number of 1 or more must carry ``%``."""
    expected = "a percentage such as 10% or a fraction such as 0.1"
    if isinstance(value, bool):
        raise _bad(source, value, expected)
    raw, percent = value, False
    if isinstance(value, str):
        percent = value.strip().endswith("%")
        raw = value.strip().removesuffix("%")
    # inf, nan, 1e400 and digits of other scripts are refused here, naming the value.
    try:
        number = parse_float(source, raw, expected=expected)
    except NumberError as exc:  # show the value as given, "%" included
        raise _bad(source, value, exc.expected) from None
    if number < 0:
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
                f"{source}: unknown metric {key!r} in tolerance {shown(value)}: use one of "
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


#: A bound on --tokrate-min-decode-tokens (a context holds no more).
MAX_MIN_TOKENS = 2**24


def parse_min_tokens(value: object, source: str) -> int:
    """A number of tokens >= 1 (``--tokrate-min-decode-tokens``)."""
    expected = "a whole number of tokens >= 1, such as 32"
    return parse_int(source, value, 1, MAX_MIN_TOKENS, expected, "a whole number of tokens")


def parse_mode(value: object, source: str, choices: Sequence[str]) -> str:
    text = str(value).strip().lower()
    if text not in choices:
        raise _bad(source, value, "one of " + ", ".join(choices))
    return text


@dataclass(frozen=True)
class TradeoffPolicy:
    """A pass-rate drop the project accepts for a speed gain, when the model or its
    quantization changed: ``5 points for decode_tps +30%`` accepts a drop of up to 5
    points if decode tok/s is at least 30% higher (significantly, at the gate's alpha)."""

    max_drop: float  # points as a fraction: 0.05 = 5 points
    metric: str
    min_gain: float  # relative, in the metric's good direction

    def __str__(self) -> str:
        sign = "+" if METRICS[self.metric][3] else "-"
        return f"{self.max_drop * 100:g} points for {self.metric} {sign}{self.min_gain * 100:g}%"


_POLICY = re.compile(
    r"(?P<drop>[0-9]+(?:\.[0-9]+)?)\s*(?:points?|pts?)\s+for\s+(?P<metric>[a-z0-9_]+)\s*"
    r"(?P<sign>[+-])\s*(?P<gain>[0-9]+(?:\.[0-9]+)?)\s*%",
    re.ASCII,
)
_POLICY_EXAMPLE = "'5 points for decode_tps +30%' (or 'none'); several separated by ';'"


def _policy(part: str, value: object, source: str) -> TradeoffPolicy:
    match = _POLICY.fullmatch(part.strip())
    if match is None:
        raise _bad(source, value, _POLICY_EXAMPLE)
    metric = match["metric"]
    if metric not in METRICS or metric == "pass_rate":
        speed = ", ".join(m for m in METRICS if m != "pass_rate")
        raise UsageError(
            f"{source}: unknown speed metric {metric!r} in {shown(value)}: use one of {speed}."
        )
    higher = METRICS[metric][3]
    if (match["sign"] == "+") != higher:
        good = "+ (higher is better)" if higher else "- (lower is better)"
        raise UsageError(
            f"{source}: {metric} {match['sign']}{match['gain']}% in {shown(value)} asks for a "
            "worse "
            f"{metric}: write the gain with {good}, e.g. "
            f"'5 points for {metric} {'+' if higher else '-'}30%'."
        )
    drop, gain = float(match["drop"]) / 100.0, float(match["gain"]) / 100.0
    if not (0 < drop <= 1 and 0 < gain < 100):
        raise _bad(source, value, "a drop of 0 to 100 points and a gain above 0%")
    return TradeoffPolicy(drop, metric, gain)


def parse_tradeoff(value: object, source: str) -> tuple[TradeoffPolicy, ...]:
    """Trade-off policies (``--tokrate-accept-tradeoff``); ``none`` accepts no drop."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise _bad(source, value, _POLICY_EXAMPLE)
    if value.strip().lower() in ("none", "off"):
        return ()
    parts = [p for p in value.split(";") if p.strip()]
    if not parts:
        raise _bad(source, value, _POLICY_EXAMPLE)
    return tuple(_policy(part, value, source) for part in parts)


__all__ = [
    "GATE_MODES",
    "MISMATCH_MODES",
    "MISSING_MODES",
    "STALE_MODES",
    "UNSETTLED_MODES",
    "TradeoffPolicy",
    "parse_fraction",
    "parse_metrics",
    "parse_min_tokens",
    "parse_mode",
    "parse_tolerance",
    "parse_tradeoff",
]
