"""The one strict number reader (``core/numbers.py``): ASCII digits, finite, bounded, and
a message that names the setting, shows the value (cut short) and says what is expected."""

from __future__ import annotations

import pytest

from pytest_tokrate.core.numbers import (
    MAX_INT_DIGITS,
    NumberError,
    parse_float,
    parse_int,
    shown,
)
from pytest_tokrate.errors import UsageError


@pytest.mark.parametrize(
    ("value", "out"),
    [(3, 3), (" 12 ", 12), ("-2", -2), ("+7", 7), ("9" * MAX_INT_DIGITS, int("9" * 18))],
)
def test_int_accepts_ints_and_ascii_digit_strings(value: object, out: int) -> None:
    assert parse_int("x", value) == out


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("²", "an integer, written with the ASCII digits 0-9."),
        ("٣", "an integer, written with the ASCII digits 0-9."),
        ("1_000", "an integer."),
        ("1.5", "an integer."),
        (2.0, "an integer."),
        (True, "an integer."),
        (None, "an integer."),
        ("", "an integer."),
        ("1" * 19, f"an integer of at most {MAX_INT_DIGITS} digits."),
        (10**30, f"an integer of at most {MAX_INT_DIGITS} digits."),
    ],
)
def test_int_refuses_what_is_not_a_plain_integer(value: object, expected: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_int("--tokrate-x", value)
    assert str(info.value) == f"--tokrate-x: invalid value {shown(value)}: expected {expected}"


def test_int_bounds_are_said_in_the_message() -> None:
    with pytest.raises(UsageError, match=r"^r: invalid value '0': expected an integer >= 1\.$"):
        parse_int("r", "0", 1, 100)
    with pytest.raises(
        UsageError, match=r"^r: invalid value 101: expected an integer from 1 to 100\.$"
    ):
        parse_int("r", 101, 1, 100)
    with pytest.raises(UsageError, match=r"expected an integer <= 4294967295\.$"):
        parse_int("seed", 2**32, maximum=2**32 - 1)
    with pytest.raises(UsageError, match=r"^r: invalid value 0: expected some rounds\.$"):
        parse_int("r", 0, 1, 100, expected="some rounds")


def test_a_huge_value_is_named_not_printed() -> None:
    digits = "1" * 5000  # past Python's own 4,300-digit limit of int()
    with pytest.raises(UsageError) as info:
        parse_int("--tokrate-rounds", digits, 1, 100_000)
    message = str(info.value)
    assert message == (
        f"--tokrate-rounds: invalid value {digits[:40]!r}… (5000 characters): "
        "expected an integer from 1 to 100000."
    )
    with pytest.raises(UsageError, match=r"invalid value \(an integer of 5001 digits\)"):
        parse_int("r", 10**5000, 1, 10)
    with pytest.raises(UsageError, match="of at most 18 digits"):
        parse_int("r", "-" + "9" * 30, maximum=10)  # below any bound: not read as -10**18


@pytest.mark.parametrize(
    ("value", "out"),
    [(1, 1.0), (0.5, 0.5), (".5", 0.5), ("5.", 5.0), (" 1e-3 ", 0.001), ("-2E2", -200.0)],
)
def test_float_accepts_decimal_and_exponent_notation(value: object, out: float) -> None:
    assert parse_float("x", value) == out


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("nan", "a finite number"),
        ("-inf", "a finite number"),
        ("Infinity", "a finite number"),
        (float("nan"), "a finite number"),
        ("1e400", "a finite number"),  # float() reads it as infinity
        (10**400, "a finite number"),  # float() raises OverflowError
        ("٣.5", "a number, written with the ASCII digits 0-9"),
        ("0x10", "a number"),
        ("1" * 100, "a number"),
        (True, "a number"),
        ([1], "a number"),
    ],
)
def test_float_refuses_non_finite_and_non_numbers(value: object, expected: str) -> None:
    with pytest.raises(NumberError) as info:
        parse_float("t", value)
    assert str(info.value).endswith(f": expected {expected}.")
    assert info.value.expected == expected


def test_float_bounds() -> None:
    assert parse_float("t", "604800", 0, 604800.0) == 604800.0
    with pytest.raises(
        UsageError, match=r"^t: invalid value '1e300': expected a number from 0\.001 to 604800\.$"
    ):
        parse_float("t", "1e300", 0.001, 604800.0)
    with pytest.raises(UsageError, match=r"expected a number >= 0\.$"):
        parse_float("t", -1, 0.0)


def test_shown_cuts_long_values() -> None:
    assert shown("abc") == "'abc'"
    assert shown("x" * 41) == f"{'x' * 40!r}… (41 characters)"
    assert shown(["y" * 100]).endswith("… (104 characters)")
