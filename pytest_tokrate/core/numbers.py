"""The one strict reader of numbers given by a user: command line, ini, marker, YAML and
``tokrate.run()`` arguments. Pure.

Accepted: a Python ``int`` or ``float`` (never ``bool``), or a string of ASCII characters
in decimal notation. Refused, with a :class:`UsageError` naming the setting, showing the
value (cut short when long) and saying what is expected: digits of other scripts (``²``,
``٣``, which ``str.isdigit()`` and ``int()`` let through or choke on), more digits than any
setting needs (Python's own digit-limit error names nothing), ``nan``, infinities, and
values outside the setting's bounds.
"""

from __future__ import annotations

import math
import re

from pytest_tokrate.errors import UsageError

#: The most digits an integer may have (any count, seed or size fits in 18).
MAX_INT_DIGITS = 18
#: An integer without a bound of its own stays below this (it also bounds Python ints
#: given directly, e.g. ``rounds=10**30`` in a marker).
INT_LIMIT = 10**MAX_INT_DIGITS
#: The longest string read as a float; longer ones are refused before ``float()`` runs.
MAX_FLOAT_CHARS = 64
#: How much of a long value an error message shows.
SHOWN_CHARS = 40

_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
#: What ``str.strip()`` would remove that is plain ASCII (other spaces are refused).
_SPACE = " \t\r\n"


def shown(value: object) -> str:
    """``repr(value)``, cut to its first characters when long (a 5,000-digit value is
    named, not printed)."""
    if isinstance(value, str) and len(value) > SHOWN_CHARS:
        return f"{value[:SHOWN_CHARS]!r}… ({len(value)} characters)"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= INT_LIMIT:
        # str() of an int past 4,300 digits raises: count the digits by logarithm.
        return f"(an integer of {int(math.log10(abs(value))) + 1} digits)"
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # a container of a huge int, or nested too deep
        return f"a {type(value).__name__} too large to show"
    if len(text) > SHOWN_CHARS + 2:
        return f"{text[:SHOWN_CHARS]}… ({len(text)} characters)"
    return text


class NumberError(UsageError):
    """A bad value; ``expected`` says what the setting takes, for callers that word the
    message their own way."""

    def __init__(self, message: str, expected: str) -> None:
        super().__init__(message)
        self.expected = expected


def fail(setting: str, value: object, expected: str) -> NumberError:
    """The error of a bad value: ``<setting>: invalid value <value>: expected <...>.``"""
    return NumberError(f"{setting}: invalid value {shown(value)}: expected {expected}.", expected)


def number_text(number: float) -> str:
    """``4294967295``, ``604800``, ``0.001``: whole bounds without an exponent."""
    if isinstance(number, int) or (number.is_integer() and abs(number) < INT_LIMIT):
        return str(int(number))
    return f"{number:g}"


def _what(value: object, expected: str) -> str:
    """What is expected, with a word on digits when the text has others (``²``, ``٣``)."""
    if isinstance(value, str) and not value.isascii():
        return f"{expected}, written with the ASCII digits 0-9"
    return expected


def _in_range(
    setting: str,
    value: object,
    number: float,
    bounds: tuple[float | None, float | None],
    kind: str,
    expected: str | None,
) -> None:
    """Refuse ``number`` outside ``bounds``: below the minimum, the message says what the
    setting takes (``expected``, else ``kind >= minimum``); above the maximum, both bounds."""
    minimum, maximum = bounds
    if minimum is not None and number < minimum:
        raise fail(setting, value, expected or f"{kind} >= {number_text(minimum)}")
    if maximum is not None and number > maximum:
        low = "" if minimum is None else f" from {number_text(minimum)}"
        to = " to " if low else " <= "
        raise fail(setting, value, f"{kind}{low}{to}{number_text(maximum)}")


def parse_int(
    setting: str,
    value: object,
    minimum: int | None = None,
    maximum: int | None = None,
    expected: str | None = None,
    kind: str = "an integer",
) -> int:
    """An integer within ``[minimum, maximum]`` from an ``int`` or a string of ASCII digits
    (surrounding spaces allowed). ``expected`` replaces the description of what is
    accepted (``kind`` and its minimum) when the value is no integer or below the minimum."""
    if isinstance(value, str):
        text = value.strip(_SPACE)
        number = int(text) if _INT.fullmatch(text) and len(text) <= MAX_INT_DIGITS + 1 else None
        if number is None and _INT.fullmatch(text):
            # Too many digits for any setting: refused below without computing it.
            number = -INT_LIMIT if text.startswith("-") else INT_LIMIT
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        number = None
    if number is None:
        raise fail(setting, value, _what(value, expected or kind))
    _in_range(setting, value, number, (minimum, maximum), kind, expected)
    if abs(number) >= INT_LIMIT:
        raise fail(setting, value, f"{kind} of at most {MAX_INT_DIGITS} digits")
    return number


def parse_float(
    setting: str,
    value: object,
    minimum: float | None = None,
    maximum: float | None = None,
    expected: str | None = None,
    kind: str = "a number",
) -> float:
    """A finite number within ``[minimum, maximum]`` from an ``int``, a ``float`` or a
    string in decimal or exponent notation (``0.5``, ``.5``, ``5e-1``, ``nan`` refused)."""
    number: float | None = None
    if isinstance(value, str):
        text = value.strip(_SPACE)
        if len(text) <= MAX_FLOAT_CHARS and _FLOAT.fullmatch(text):
            number = float(text)  # 1e400 reads as infinity, refused below
        elif text.lstrip("+-").lower() in ("nan", "inf", "infinity"):
            number = math.nan
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int too large for a float
            number = math.inf
    if number is None:
        raise fail(setting, value, _what(value, expected or kind))
    if not math.isfinite(number):
        raise fail(setting, value, f"a finite {kind.removeprefix('a ')}")
    _in_range(setting, value, number, (minimum, maximum), kind, expected)
    return number


__all__ = [
    "INT_LIMIT",
    "MAX_FLOAT_CHARS",
    "MAX_INT_DIGITS",
    "NumberError",
    "fail",
    "number_text",
    "parse_float",
    "parse_int",
    "shown",
]
