"""Option parsing, validation and precedence (``config.py``), without pytest's glue."""

from __future__ import annotations

import pytest

from pytest_tokrate.core import settings as config
from pytest_tokrate.core.settings import (
    DEFAULT_OPTIONS,
    Layer,
    parse_choice,
    parse_float,
    parse_int,
    parse_model_list,
    parse_option_lines,
    parse_option_pair,
    resolve,
    validate_options,
)
from pytest_tokrate.errors import UsageError


def test_parse_int_accepts_ints_and_decimal_strings() -> None:
    assert parse_int("x", 3) == 3
    assert parse_int("x", " 12 ") == 12
    assert parse_int("x", "-2") == -2


@pytest.mark.parametrize("value", ["1.5", "ten", "", True, None, 2.0])
def test_parse_int_rejects_non_integers(value: object) -> None:
    with pytest.raises(UsageError, match=r"x: invalid value .*: expected an integer\."):
        parse_int("x", value)


def test_parse_int_minimum_is_named_in_the_message() -> None:
    with pytest.raises(UsageError) as exc:
        parse_int("--tokrate-rounds", "0", minimum=1)
    assert str(exc.value) == "--tokrate-rounds: invalid value '0': expected an integer >= 1."


@pytest.mark.parametrize("value", ["nan", "inf", "abc", None])
def test_parse_float_rejects_non_finite_and_text(value: object) -> None:
    with pytest.raises(UsageError, match="invalid value"):
        parse_float("t", value)


def test_parse_choice_normalises_case() -> None:
    assert parse_choice("c", " BUST ", ("bust", "allow")) == "bust"
    with pytest.raises(UsageError, match="expected one of bust, allow"):
        parse_choice("c", "never", ("bust", "allow"))


def test_validate_options_coerces_types() -> None:
    out = validate_options(
        {"num_predict": "16", "temperature": "0.7", "stop": "\n", "use_mmap": "off", "seed": 7}
    )
    assert out == {
        "num_predict": 16,
        "temperature": 0.7,
        "stop": ["\n"],
        "use_mmap": False,
        "seed": 7,
    }


def test_unknown_option_suggests_the_close_name() -> None:
    with pytest.raises(UsageError) as exc:
        validate_options({"num_predcit": 3}, "ini tokrate_options")
    message = str(exc.value)
    assert message.startswith("ini tokrate_options: unknown generation option 'num_predcit'.")
    assert "Did you mean 'num_predict'?" in message


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"num_predict": 0}, "a generation length from 1 to 16777216 (or -1 for unbounded)"),
        ({"num_ctx": 0}, "an integer >= 1"),
        (
            {"temperature": -1},
            "options: option 'temperature': invalid value -1: expected a number >= 0.",
        ),
        ({"stop": [1, 2]}, "a string or a list of strings"),
        ({"use_mmap": "maybe"}, "true or false"),
    ],
)
def test_invalid_option_values(options: dict[str, object], fragment: str) -> None:
    with pytest.raises(UsageError, match="invalid value") as exc:
        validate_options(options)
    assert fragment in str(exc.value)


def test_options_must_be_a_mapping() -> None:
    with pytest.raises(UsageError, match="expected a mapping"):
        validate_options(["num_predict", 3])  # type: ignore[arg-type]


def test_option_pair_reads_json_values_else_strings() -> None:
    assert parse_option_pair("num_thread=2") == ("num_thread", 2)
    assert parse_option_pair('stop=["a", "b"]') == ("stop", ["a", "b"])
    assert parse_option_pair("stop=END") == ("stop", ["END"])
    with pytest.raises(UsageError, match=r"expected KEY=VALUE, e\.g\. num_thread=2"):
        parse_option_pair("num_thread")


def test_option_lines_skip_blanks_and_comments() -> None:
    lines = ["", "# fast", "num_predict = 8", "  temperature=0.5  "]
    assert parse_option_lines(lines, "ini") == {"num_predict": 8, "temperature": 0.5}


def test_model_list() -> None:
    assert parse_model_list("smollm2, smollm2-q2_k") == ("smollm2", "smollm2-q2_k")
    for bad, fragment in [
        ("", "empty model name"),
        ("a,,b", "empty model name in the list"),
        ("a,a", "listed twice"),
    ]:
        with pytest.raises(UsageError, match=fragment):
            parse_model_list(bad)


def test_defaults_are_deterministic() -> None:
    settings = resolve([])
    assert settings.rounds == 5
    assert settings.warmup == 1
    assert settings.cache == "bust"
    assert settings.timeout_s == 120.0
    assert settings.options == DEFAULT_OPTIONS
    assert settings.options["temperature"] == 0.0
    assert settings.options["seed"] == 42
    assert settings.options["num_ctx"] == 2048


def test_precedence_later_layers_win_and_options_merge_by_key() -> None:
    ini = Layer("ini", rounds="2", warmup="3", options={"num_predict": 8, "num_thread": 1})
    marker = Layer("marker", rounds=4, options={"num_predict": 16})
    cli = Layer("command line", warmup=0, options={"num_thread": 2})
    settings = resolve([ini, marker, cli])
    assert settings.rounds == 4  # marker over ini
    assert settings.warmup == 0  # command line over ini
    assert settings.options["num_predict"] == 16  # marker over ini
    assert settings.options["num_thread"] == 2  # command line over ini
    assert settings.options["seed"] == 42  # default kept


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (
            Layer("ini", rounds=0),
            "ini rounds: invalid value 0: expected a whole number of rounds >= 1, or auto.",
        ),
        (Layer("m", max_rounds=1), "m max_rounds: invalid value 1: expected an integer >= 2."),
        (Layer("m", warmup=-1), "m warmup: invalid value -1: expected an integer >= 0."),
        (Layer("m", timeout=0), "m timeout: invalid value 0: expected a number of seconds > 0."),
        (
            Layer("m", cache="off"),
            "m cache: invalid value 'off': expected one of bust, nonce, allow.",
        ),
    ],
)
def test_resolve_names_the_layer_and_value(layer: Layer, message: str) -> None:
    with pytest.raises(UsageError) as exc:
        resolve([layer])
    assert str(exc.value) == message


def test_settings_to_dict_is_plain_data() -> None:
    d = resolve([Layer("x", rounds=3)]).to_dict()
    assert d["rounds"] == 3
    assert d["options"]["temperature"] == 0.0


@pytest.mark.parametrize(
    ("value", "rounds", "expected"),
    [("4x", 5, 20), (" 2X ", 10, 20), ("1x", 3, 3), ("40", 10, 40), ("3", 5, 5), (7, 7, 7)],
)
def test_baseline_rounds(value: object, rounds: int, expected: int) -> None:
    spec = config.parse_baseline_rounds("--tokrate-baseline-rounds", value)
    assert config.baseline_rounds(rounds, spec) == expected


@pytest.mark.parametrize("value", ["0", "0x", "x", "-2", "four", "4.5x", True, ""])
def test_bad_baseline_rounds_name_the_value(value: object) -> None:
    with pytest.raises(UsageError, match=r"--tokrate-baseline-rounds: invalid value .* 4x"):
        config.parse_baseline_rounds("--tokrate-baseline-rounds", value)


def test_auto_rounds_resolve_to_bounds_that_precedence_sets() -> None:
    auto = resolve([Layer("ini", rounds="auto"), Layer("cli", max_rounds="12")])
    assert (auto.auto, auto.rounds, auto.min_rounds) == (True, 12, 3)
    assert auto.to_dict()["auto"] is True and auto.to_dict()["max_rounds"] == 12
    fixed = resolve([Layer("ini", rounds="auto"), Layer("cli", rounds=7)])
    assert (fixed.auto, fixed.rounds) == (False, 7)
    assert "auto" not in fixed.to_dict()
    with pytest.raises(UsageError, match="the minimum, 9 rounds \\(m\\), is above the maximum"):
        resolve([Layer("m", rounds="AUTO", min_rounds=9, max_rounds=4)])


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"top_p": 5}, "option 'top_p': invalid value 5: expected a number from 0 to 1."),
        ({"min_p": -0.1}, "option 'min_p': invalid value -0.1: expected a number >= 0."),
        ({"typical_p": "1.5"}, "expected a number from 0 to 1."),
        ({"seed": 2**32}, "option 'seed': invalid value 4294967296: expected an integer from -1"),
        ({"seed": -2}, "option 'seed': invalid value -2: expected an integer >= -1."),
        ({"temperature": "1e300"}, "expected a number from 0 to 100."),
        ({"temperature": float("inf")}, "expected a finite number."),
        ({"num_ctx": "²"}, "written with the ASCII digits 0-9"),
    ],
)
def test_option_values_are_bounded(options: dict[str, object], fragment: str) -> None:
    with pytest.raises(UsageError) as exc:
        validate_options(options, "ini tokrate_options")
    assert str(exc.value).startswith("ini tokrate_options: option ")
    assert fragment in str(exc.value)


def test_seed_keeps_its_whole_uint32_range_and_minus_one() -> None:
    # llama.cpp's seed is a uint32; -1 (LLAMA_DEFAULT_SEED, 0xFFFFFFFF) means random.
    assert validate_options({"seed": 2**32 - 1}) == {"seed": 4294967295}
    assert validate_options({"seed": "-1"}) == {"seed": -1}


@pytest.mark.parametrize(
    ("layer", "fragment"),
    [
        (Layer("m", rounds=10**30), "m rounds: invalid value (an integer of 31 digits): expected "),
        (Layer("m", rounds="100001"), "expected an integer from 1 to 100000."),
        (
            Layer("m", warmup=1001),
            "m warmup: invalid value 1001: expected an integer from 0 to 1000.",
        ),
        (
            Layer("m", timeout="1e300"),
            "m timeout: invalid value '1e300': expected a number <= 604800.",
        ),
        (
            Layer("m", timeout=float("nan")),
            "m timeout: invalid value nan: expected a finite number.",
        ),
        (
            Layer("m", max_rounds="²"),
            "m max_rounds: invalid value '²': expected an integer, written",
        ),
    ],
)
def test_run_settings_are_bounded(layer: Layer, fragment: str) -> None:
    with pytest.raises(UsageError) as exc:
        resolve([layer])
    assert fragment in str(exc.value)
