"""Option values: parsing, validation and precedence (CLI > call/marker > ini > default).

Pure: no pytest. Every parser raises :class:`UsageError` whose message names the setting,
shows the bad value and says what is accepted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pytest_tokrate.core import numbers
from pytest_tokrate.core.gen_options import KNOWN_OPTIONS, did_you_mean, validate_options
from pytest_tokrate.core.numbers import fail, shown
from pytest_tokrate.core.precedence import HasSource, Setting, Sourced, resolve_layers
from pytest_tokrate.errors import UsageError

BACKENDS = ("auto", "embedded", "ollama", "openai")
#: Prompt cache in measured rounds: ``bust`` defeats it without touching the prompt where the
#: backend can (a KV reset, llama.cpp's ``cache_prompt: false``, vLLM's ``cache_salt``, an
#: eviction request on Ollama); ``nonce`` puts a unique line before the system prompt (it
#: changes what the model reads, so answers may differ); ``allow`` leaves the cache alone.
CACHE_MODES = ("bust", "nonce", "allow")
#: --tokrate-calibrate: time the machine reference around each round (backends/reference.py).
CALIBRATE_MODES = ("on", "off")
MISSING_MODEL_MODES = ("auto", "skip", "error")

DEFAULT_ROUNDS = 5
DEFAULT_WARMUP = 1
#: ``rounds="auto"``: the value, and its default bounds.
AUTO = "auto"
DEFAULT_MAX_ROUNDS = 20
DEFAULT_MIN_ROUNDS = 3
DEFAULT_NUM_PREDICT = 64
DEFAULT_NUM_CTX = 2048
DEFAULT_SEED = 42
DEFAULT_TEMPERATURE = 0.0
DEFAULT_TIMEOUT_S = 120.0
#: Rounds measured when baselines are written (--tokrate-update-baselines): a multiple of
#: the test's own rounds. A baseline is recorded once and compared with every later run,
#: so its precision pays off many times (README, "Does the gate tell the truth?").
DEFAULT_BASELINE_ROUNDS = "4x"

#: Bounds no real use reaches: a loop over ``rounds=10**30`` or a timeout that overflows
#: a clock is refused with the setting's name instead.
MAX_ROUNDS = 100_000
MAX_WARMUP = 1_000
MAX_TIMEOUT_S = 7 * 24 * 3600.0  # one week
#: --tokrate-busy-retries: the most retries of a busy server (back-off doubles each time).
MAX_BUSY_RETRIES = 100
#: ``--tokrate-baseline-rounds=Nx``: the largest multiple.
MAX_BASELINE_MULTIPLE = 100


def _fail(setting: str, value: object, expected: str) -> UsageError:
    return fail(setting, value, expected)


def parse_int(
    setting: str, value: object, minimum: int | None = None, maximum: int | None = None
) -> int:
    """An integer, optionally bounded (:func:`pytest_tokrate.core.numbers.parse_int`)."""
    return numbers.parse_int(setting, value, minimum, maximum)


def parse_float(
    setting: str, value: object, minimum: float | None = None, maximum: float | None = None
) -> float:
    """A finite number, optionally bounded (:func:`pytest_tokrate.core.numbers.parse_float`)."""
    return numbers.parse_float(setting, value, minimum, maximum)


def parse_choice(setting: str, value: object, choices: Iterable[str]) -> str:
    options = tuple(choices)
    text = str(value).strip().lower()
    if text not in options:
        raise _fail(setting, value, "one of " + ", ".join(options))
    return text


def parse_baseline_rounds(setting: str, value: object) -> tuple[str, int]:
    """``4x`` (a multiple of a test's rounds) -> ``("x", 4)``; ``40`` (rounds, at least
    the test's own) -> ``("n", 40)``."""
    expected = "a multiple of each test's rounds such as 4x, or a number of rounds"
    text = value.strip().lower() if isinstance(value, str) else value
    if isinstance(text, str) and text.endswith("x"):
        return ("x", numbers.parse_int(setting, text[:-1], 1, MAX_BASELINE_MULTIPLE, expected))
    if isinstance(text, str) and text.isascii() and not text.isdigit():
        raise _fail(setting, value, expected)  # "lots", "-3": name both forms
    return ("n", numbers.parse_int(setting, text, 1, MAX_ROUNDS, expected))


def baseline_rounds(rounds: int, spec: tuple[str, int]) -> int:
    """The rounds a test measures when its baseline is written (never fewer than its own)."""
    kind, number = spec
    return rounds * number if kind == "x" else max(rounds, number)


def split_pair(text: str, source: str, example: str) -> tuple[str, str]:
    """``KEY=VALUE`` -> ``(key, value)``: the key stripped, the value as given (each
    caller reads it its own way). ``example`` is a valid pair shown when ``=`` is missing."""
    if "=" not in text:
        raise fail(source, text, f"KEY=VALUE, e.g. {example}")
    key, _, value = text.partition("=")
    return key.strip(), value


_Value = TypeVar("_Value")


def parse_pair_lines(
    lines: Iterable[str], source: str, parse_pair: Callable[[str, str], tuple[str, _Value]]
) -> dict[str, _Value]:
    """Several ``KEY=VALUE`` lines (an ini list): blank lines and ``#`` comments skipped,
    a key given again replaces the earlier value."""
    out: dict[str, _Value] = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, value = parse_pair(line, source)
        out[key] = value
    return out


def parse_option_pair(text: str, source: str = "--tokrate-option") -> tuple[str, Any]:
    """Parse ``KEY=VALUE``; the value is read as JSON when it parses, else as a string."""
    key, raw = split_pair(text, source, "num_thread=2")
    raw = raw.strip()
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    coerced = validate_options({key: value}, source)
    return key, coerced[key]


def parse_option_lines(lines: Iterable[str], source: str) -> dict[str, Any]:
    return parse_pair_lines(lines, source, parse_option_pair)


def parse_model_list(value: str, source: str = "--tokrate-model") -> tuple[str, ...]:
    """A comma-separated list of model names; empty items are an error."""
    items = tuple(part.strip() for part in str(value).split(","))
    if not any(items):
        raise UsageError(
            f"{source}: empty model name {shown(value)}: pass a model such as "
            "--tokrate-model=smollm2 (embedded) or --tokrate-model=gemma2:2b (Ollama)."
        )
    if any(not item for item in items):
        raise UsageError(
            f"{source}: empty model name in the list {shown(value)}: separate models with single "
            "commas, e.g. --tokrate-model=smollm2,smollm2-q2_k."
        )
    if len(set(items)) != len(items):
        raise UsageError(f"{source}: a model is listed twice in {shown(value)}: list each once.")
    return items


@dataclass(frozen=True)
class RunSettings:
    """Everything one ``tokrate.run`` call needs, after precedence was applied."""

    #: Measured rounds; with ``auto``, the most that may be measured.
    rounds: int = DEFAULT_ROUNDS
    warmup: int = DEFAULT_WARMUP
    options: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = DEFAULT_TIMEOUT_S
    cache: str = "bust"
    #: ``rounds="auto"``: measure until the gate's verdict is settled (gate/sequential.py),
    #: at least ``min_rounds``, at most ``rounds``.
    auto: bool = False
    min_rounds: int = DEFAULT_MIN_ROUNDS

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rounds": self.rounds,
            "warmup": self.warmup,
            "options": dict(self.options),
            "timeout_s": self.timeout_s,
            "cache": self.cache,
        }
        if self.auto:
            out.update(auto=True, max_rounds=self.rounds, min_rounds=self.min_rounds)
        return out


DEFAULT_OPTIONS: dict[str, Any] = {
    "num_predict": DEFAULT_NUM_PREDICT,
    "num_ctx": DEFAULT_NUM_CTX,
    "temperature": DEFAULT_TEMPERATURE,
    "seed": DEFAULT_SEED,
}


# -- precedence ------------------------------------------------------------------------
# The one mechanism (core/precedence.py) resolves the run settings here, the sweep levels
# in levels.py and the gate's settings in gate/settings.py.


@dataclass(frozen=True)
class Layer:
    """Values given at one level of precedence; ``None`` means "not set here"."""

    source: str
    rounds: object = None
    warmup: object = None
    max_rounds: object = None
    min_rounds: object = None
    timeout: object = None
    cache: object = None
    options: Mapping[str, Any] | None = None
    #: Values of other features at this level (quality ``checks``, ``min_pass_rate``),
    #: resolved by those features; ``resolve()`` ignores them.
    extra: Mapping[str, Any] | None = None


def parse_timeout(setting: str, value: object) -> float:
    """A per-request timeout: seconds > 0, at most a week."""
    out = parse_float(setting, value, maximum=MAX_TIMEOUT_S)
    if out <= 0:
        raise _fail(setting, value, "a number of seconds > 0")
    return out


def parse_rounds(setting: str, value: object) -> int | str:
    """A number of rounds >= 1, or ``auto`` (measure until the verdict is settled)."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    expected = "a whole number of rounds >= 1, or auto"
    return numbers.parse_int(setting, value, 1, MAX_ROUNDS, expected)


def parse_busy_retries(setting: str, value: object) -> int:
    return parse_int(setting, value, 0, MAX_BUSY_RETRIES)


def _bounded(minimum: int, maximum: int) -> Callable[[str, object], int]:
    return lambda setting, value: parse_int(setting, value, minimum, maximum)


_RUN_SETTINGS: tuple[Setting[Any], ...] = (
    Setting("rounds", DEFAULT_ROUNDS, parse_rounds),
    Setting("max_rounds", DEFAULT_MAX_ROUNDS, _bounded(2, MAX_ROUNDS)),
    Setting("min_rounds", DEFAULT_MIN_ROUNDS, _bounded(2, MAX_ROUNDS)),
    Setting("warmup", DEFAULT_WARMUP, _bounded(0, MAX_WARMUP)),
    Setting("timeout", DEFAULT_TIMEOUT_S, parse_timeout),
    Setting("cache", "bust", lambda setting, v: parse_choice(setting, v, CACHE_MODES)),
    # Generation options merge key by key, so ``--tokrate-option num_thread=2`` keeps a
    # marker's ``num_predict``.
    Setting(
        "options",
        DEFAULT_OPTIONS,
        lambda setting, v: validate_options(v, setting),
        lambda below, above: {**below, **above},
    ),
)


def resolve(layers: Iterable[Layer]) -> RunSettings:
    """Merge layers given from lowest to highest precedence, validating each value."""
    values = resolve_layers(layers, _RUN_SETTINGS)
    auto = values["rounds"].value == AUTO
    most, least = values["max_rounds"], values["min_rounds"]
    if auto and least.value > most.value:
        raise UsageError(
            f"rounds=auto: the minimum, {least.value} rounds ({least.source}), is above the "
            f"maximum, {most.value} ({most.source}): raise --tokrate-max-rounds or lower "
            "--tokrate-min-rounds."
        )
    return RunSettings(
        rounds=most.value if auto else values["rounds"].value,
        warmup=values["warmup"].value,
        options=dict(values["options"].value),
        timeout_s=values["timeout"].value,
        cache=values["cache"].value,
        auto=auto,
        min_rounds=least.value,
    )


__all__ = [
    "BACKENDS",
    "CACHE_MODES",
    "CALIBRATE_MODES",
    "DEFAULT_BASELINE_ROUNDS",
    "DEFAULT_OPTIONS",
    "KNOWN_OPTIONS",
    "MAX_BASELINE_MULTIPLE",
    "MAX_BUSY_RETRIES",
    "MAX_ROUNDS",
    "MAX_TIMEOUT_S",
    "MAX_WARMUP",
    "HasSource",
    "Layer",
    "RunSettings",
    "Setting",
    "Sourced",
    "baseline_rounds",
    "did_you_mean",
    "parse_baseline_rounds",
    "parse_busy_retries",
    "parse_choice",
    "parse_float",
    "parse_int",
    "parse_model_list",
    "parse_option_lines",
    "parse_option_pair",
    "parse_pair_lines",
    "parse_rounds",
    "parse_timeout",
    "resolve",
    "resolve_layers",
    "split_pair",
    "validate_options",
]
