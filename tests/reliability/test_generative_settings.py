"""Hypothesis over every way a setting is given: each ``--tokrate-*`` option's argparse
type (enumerated from the options table, so a new option is covered), the ini readers,
the marker's layers, and the parsers behind them (tolerances, levels, server settings,
generation options as ``KEY=VALUE`` and as a dict).

Inputs: random text, unicode digits (``²``, ``٣``), 5,000-digit strings, huge and
negative integers, NaN and infinities, ``1e300`` and ``1e400``, and values of the wrong
type. Each example must end in a value or a documented error (:class:`UsageError`, or
argparse's :class:`ArgumentTypeError` carrying our message), naming the setting, with
a message of bounded length; never another exception.

Derandomized with a fixed number of examples; ``TOKRATE_FUZZ_SCALE=10`` multiplies them.
A few end-to-end runs prove the exit code and message of known cases.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from reliability_support import FUZZ_SCALE, assert_clean, fuzz_settings, output

from pytest_tokrate.backends.server_settings import parse_server_setting
from pytest_tokrate.core.gen_options import BOUNDS, KNOWN_OPTIONS, validate_options
from pytest_tokrate.core.levels import LevelLayer, parse_levels, parse_requests
from pytest_tokrate.core.settings import (
    Layer,
    parse_baseline_rounds,
    parse_busy_retries,
    parse_option_lines,
    parse_option_pair,
    resolve,
)
from pytest_tokrate.errors import UsageError
from pytest_tokrate.gate.parsers import parse_tolerance
from pytest_tokrate.gate.settings import marker_gate_layer, parse_layer, parse_other_load
from pytest_tokrate.plugin import options as plugin_options
from pytest_tokrate.plugin.fixture import marker_layer
from pytest_tokrate.plugin.session_config import ini_flag

SCALE = FUZZ_SCALE
EXAMPLES = {
    "cli_types": 300,
    "ini_readers": 200,
    "marker_layers": 200,
    "parsers": 300,
}
#: The number of generative examples this module runs (for the closing note of the issue).
TOTAL_EXAMPLES = sum(EXAMPLES.values()) * SCALE
#: No message may grow with the value: long values are cut short.
MAX_MESSAGE = 1500


def fuzz(name: str) -> Any:
    return fuzz_settings(EXAMPLES[name])


NUMBERISH = st.sampled_from(
    ["²", "٣", "1²", "1e300", "1e400", "-1e400", "inf", "-inf", "nan", "NaN%", "inf%", "1_0",
     "0x10", "-1", "0", "4294967296", "-0", " 7 ", "10%", "1.5", ".5", "5.", "auto", "off",
     "4x", "²x", "1" * 5000, "9" * 19, "1e-400", "\u00a05", "5\x00", "true", "maybe"]
)  # fmt: skip
TEXT_VALUES = (
    NUMBERISH
    | st.text(max_size=40)
    | st.text(alphabet=st.characters(categories=("Nd", "No")), min_size=1, max_size=8)
    | st.integers(min_value=0, max_value=10**6).map(str)
)
RAW_VALUES = (
    TEXT_VALUES
    | st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.sampled_from([10**5000, -(10**400), 2**32, 2**32 - 1, -1, 0, 1])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.lists(st.integers(min_value=-5, max_value=2000), max_size=4)
    | st.dictionaries(st.sampled_from(["*", "ttft", "decode_tps", "x"]), NUMBERISH, max_size=2)
)


def _documented(call: Callable[[], object], names: tuple[str, ...]) -> None:
    """``call()`` returns, or raises a documented error naming one of ``names``."""
    try:
        call()
    except (UsageError, argparse.ArgumentTypeError) as exc:
        message = str(exc)
        assert len(message) < MAX_MESSAGE, message[:300]
        assert isinstance(exc, argparse.ArgumentTypeError) or any(n in message for n in names), (
            message
        )


# -- (a) every command-line option's type ------------------------------------------------------

CLI_TYPES: dict[str, Callable[[str], object]] = {
    f"--tokrate-{name}": plugin_options._argparse_type(type_)
    for name, _ini, _help, type_ in plugin_options._OPTIONS
    if type_ is not None
}
CLI_TYPES["--tokrate-option"] = plugin_options._argparse_type(parse_option_pair)
CLI_TYPES["--tokrate-server-setting"] = plugin_options._argparse_type(
    plugin_options._server_setting_option
)


def test_every_valued_option_is_fuzzed() -> None:
    valued = {f"--tokrate-{n}" for n, _i, _h, t in plugin_options._OPTIONS if t is not None}
    assert valued <= set(CLI_TYPES)
    assert len(CLI_TYPES) >= 30


@fuzz("cli_types")
@given(
    option=st.sampled_from(sorted(CLI_TYPES)),
    value=TEXT_VALUES,
    key=st.sampled_from([*KNOWN_OPTIONS, "num_parallel", "context_length", "OLLAMA_NUM_PARALLEL"]),
)
def test_command_line_types_end_in_a_value_or_our_message(
    option: str, value: str, key: str
) -> None:
    pair = option in ("--tokrate-option", "--tokrate-server-setting")
    text = f"{key}={value}" if pair else value
    _documented(lambda: CLI_TYPES[option](text), (option,))


# -- (b) the ini readers ---------------------------------------------------------------------


class _Ini:
    """The one thing :func:`ini_flag` reads from a ``pytest.Config``: ``getini``."""

    def __init__(self, value: str) -> None:
        self.value = value

    def getini(self, name: str) -> str:
        return self.value


def _ini_calls(name: str, text: str) -> dict[str, Callable[[], object]]:
    source = f"ini tokrate_{name}"
    return {
        "flag": lambda: ini_flag(_Ini(text), "tokrate_update_baselines"),  # type: ignore[arg-type]
        "run": lambda: resolve([Layer("ini", **{name: text})]),
        "options": lambda: parse_option_lines([f"{name}={text}", text], "ini tokrate_options"),
        "gate": lambda: parse_layer("ini", {name: text}, "ini tokrate_"),
        "levels": lambda: LevelLayer.from_mapping("ini", {name: text}).validate(),
        "baseline_rounds": lambda: parse_baseline_rounds(source, text),
        "busy_retries": lambda: parse_busy_retries(source, text),
        "other_load": lambda: parse_other_load(text, source),
    }


INI_NAMES = {
    "flag": ["update_baselines"],
    "run": ["rounds", "warmup", "max_rounds", "min_rounds", "timeout", "cache"],
    "options": [*KNOWN_OPTIONS],
    "gate": ["tolerance", "min_decode_tokens", "gate_metrics", "accept_tradeoff", "gate"],
    "levels": ["concurrency", "gen_lengths", "prompt_lengths", "requests"],
    "baseline_rounds": ["baseline_rounds"],
    "busy_retries": ["busy_retries"],
    "other_load": ["other_load"],
}
INI_CASES = [(reader, name) for reader, names in INI_NAMES.items() for name in names]


@fuzz("ini_readers")
@given(case=st.sampled_from(INI_CASES), text=TEXT_VALUES)
def test_ini_values_end_in_a_value_or_our_message(case: tuple[str, str], text: str) -> None:
    reader, name = case
    names = ("ini", "tokrate_", name, "option")
    _documented(_ini_calls(name, text)[reader], names)


# -- (c) the marker's layers -------------------------------------------------------------------

MARKER_KEYS = ["rounds", "warmup", "max_rounds", "min_rounds", "timeout", "cache", "tolerance",
               "min_decode_tokens", "concurrency", "requests", *BOUNDS]  # fmt: skip


@fuzz("marker_layers")
@given(kwargs=st.dictionaries(st.sampled_from(MARKER_KEYS), RAW_VALUES, min_size=1, max_size=3))
def test_marker_values_end_in_a_value_or_our_message(kwargs: dict[str, Any]) -> None:
    where = "tests/test_x.py::test_x"

    def run_layers() -> None:
        layer = marker_layer({k: v for k, v in kwargs.items() if k not in _GATE_AND_LEVELS}, where)
        resolve([layer])
        marker_gate_layer(kwargs, where)
        levels = {k: v for k, v in kwargs.items() if k in ("concurrency", "requests")}
        LevelLayer.from_mapping(f"{where} @pytest.mark.tokrate", levels).validate()

    _documented(run_layers, (where,))


_GATE_AND_LEVELS = {"tolerance", "min_decode_tokens", "concurrency", "requests"}


# -- (d) the parsers behind them -------------------------------------------------------------

#: Parsers of text (``KEY=VALUE`` items, as the command line and ini give them).
TEXT_PARSERS: dict[str, Callable[[str], object]] = {
    "server": lambda v: parse_server_setting(f"num_parallel={v}", "--tokrate-server-setting"),
    "server_env": lambda v: parse_server_setting(
        f"OLLAMA_CONTEXT_LENGTH={v}", "--tokrate-server-setting"
    ),
    "option_pair": lambda v: parse_option_pair(f"seed={v}", "--tokrate-option"),
    "option_pair_p": lambda v: parse_option_pair(f"top_p={v}", "--tokrate-option"),
}
#: Parsers of any value (a marker's, a YAML suite's, a ``tokrate.run()`` argument's).
PARSERS: dict[str, Callable[[Any], object]] = {
    "tolerance": lambda v: parse_tolerance(v, "--tokrate-tolerance"),
    "levels": lambda v: parse_levels("--tokrate-concurrency", v, "concurrency"),
    "gen_lengths": lambda v: parse_levels("--tokrate-gen-lengths", v, "gen_lengths"),
    "requests": lambda v: parse_requests("--tokrate-requests", v),
    "option_dict": lambda v: validate_options({"top_p": v, "seed": v}, "--tokrate-option"),
    "option_any": lambda v: validate_options(v, "--tokrate-option"),
}
PARSE_CASES = [(name, False) for name in PARSERS] + [(name, True) for name in TEXT_PARSERS]


@fuzz("parsers")
@given(case=st.sampled_from(PARSE_CASES), data=st.data())
def test_parsers_end_in_a_value_or_our_message(case: tuple[str, bool], data: Any) -> None:
    name, text = case
    value = data.draw(TEXT_VALUES if text else RAW_VALUES)

    def call() -> object:
        return TEXT_PARSERS[name](value) if text else PARSERS[name](value)

    _documented(call, ("--tokrate-",))


@pytest.mark.parametrize("key", sorted(BOUNDS))
def test_accepted_option_values_stay_within_their_bounds(key: str) -> None:
    low, high = BOUNDS[key]
    for value in (low, high, "1e300", 2**40, -(2**40), "nan"):
        try:
            out = validate_options({key: value})[key]
        except UsageError:
            continue
        assert low <= out <= high


# -- end to end ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "ini", "fragment"),
    [
        (["--tokrate-timeout=1e300"], "",
         "argument --tokrate-timeout: invalid value '1e300': expected a number <= 604800."),
        (["--tokrate-rounds=²"], "",
         "argument --tokrate-rounds: invalid value '²': expected a whole number of rounds >= 1, "
         "or auto, written with the ASCII digits 0-9."),
        ([], "tokrate_update_baselines = maybe",
         "ini tokrate_update_baselines: invalid value 'maybe': expected true or false"),
    ],
)  # fmt: skip
def test_known_cases_are_usage_errors(
    pytester: pytest.Pytester, args: list[str], ini: str, fragment: str
) -> None:
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_uses(tokrate):\n    pass\n")
    result = pytester.runpytest_subprocess("--tokrate-model=smollm2", *args, timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output(result)
    assert fragment in output(result)
    assert_clean(result)
