"""Option values: parsing, validation and precedence (CLI > call/marker > ini > default).

Pure: no pytest. Every parser raises :class:`UsageError` whose message names the setting,
shows the bad value and says what is accepted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pytest_tokrate.core.engine_options import parse_flash_attn, parse_kv_type
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

# Generation options understood by Ollama (api.Options / api.Runner), with their types.
# Each backend maps what it supports; the rest are passed through where possible.
_INT, _FLOAT, _BOOL, _STOP, _ANY = "integer", "number", "boolean", "list of strings", "any"
_FLASH, _KV = "flash attention", "KV cache type"  # llama.cpp's, see core/engine_options.py
KNOWN_OPTIONS: dict[str, str] = {
    "num_predict": _INT,
    "num_ctx": _INT,
    "num_thread": _INT,
    "num_batch": _INT,
    "num_ubatch": _INT,
    "flash_attn": _FLASH,
    "type_k": _KV,
    "type_v": _KV,
    "num_gpu": _INT,
    "main_gpu": _INT,
    "num_keep": _INT,
    "seed": _INT,
    "temperature": _FLOAT,
    "top_k": _INT,
    "top_p": _FLOAT,
    "min_p": _FLOAT,
    "typical_p": _FLOAT,
    "repeat_last_n": _INT,
    "repeat_penalty": _FLOAT,
    "presence_penalty": _FLOAT,
    "frequency_penalty": _FLOAT,
    "stop": _STOP,
    "use_mmap": _BOOL,
    "keep_alive": _ANY,
}


def _fail(setting: str, value: object, expected: str) -> UsageError:
    return UsageError(f"{setting}: invalid value {value!r}: expected {expected}.")


def parse_int(setting: str, value: object, minimum: int | None = None) -> int:
    """An integer, optionally bounded below; accepts int or decimal strings."""
    if isinstance(value, bool):
        raise _fail(setting, value, "an integer")
    if isinstance(value, int):
        out = value
    elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        out = int(value)
    else:
        raise _fail(setting, value, "an integer")
    if minimum is not None and out < minimum:
        raise _fail(setting, value, f"an integer >= {minimum}")
    return out


def parse_float(setting: str, value: object, minimum: float | None = None) -> float:
    if isinstance(value, bool):
        raise _fail(setting, value, "a number")
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _fail(setting, value, "a number") from None
    if out != out or out in (float("inf"), float("-inf")):
        raise _fail(setting, value, "a finite number")
    if minimum is not None and out < minimum:
        raise _fail(setting, value, f"a number >= {minimum}")
    return out


def parse_choice(setting: str, value: object, choices: Iterable[str]) -> str:
    options = tuple(choices)
    text = str(value).strip().lower()
    if text not in options:
        raise _fail(setting, value, "one of " + ", ".join(options))
    return text


def parse_baseline_rounds(setting: str, value: object) -> tuple[str, int]:
    """``4x`` (a multiple of a test's rounds) -> ``("x", 4)``; ``40`` (rounds, at least
    the test's own) -> ``("n", 40)``."""
    text = str(value).strip().lower()
    match = re.fullmatch(r"(\d+)\s*(x?)", text) if not isinstance(value, bool) else None
    if match is None or int(match.group(1)) < 1:
        raise _fail(
            setting, value, "a multiple of each test's rounds such as 4x, or a number of rounds"
        )
    return ("x" if match.group(2) else "n", int(match.group(1)))


def baseline_rounds(rounds: int, spec: tuple[str, int]) -> int:
    """The rounds a test measures when its baseline is written (never fewer than its own)."""
    kind, number = spec
    return rounds * number if kind == "x" else max(rounds, number)


def _coerce_option_value(key: str, value: object) -> object:
    kind = KNOWN_OPTIONS[key]
    setting = f"option {key!r}"
    if kind == _INT:
        if key == "num_predict":
            out = parse_int(setting, value)
            if out == 0 or out < -2:
                raise _fail(setting, value, "a generation length >= 1 (or -1 for unbounded)")
            return out
        minimum = {"num_ctx": 1, "num_thread": 0, "num_batch": 1, "num_ubatch": 1}.get(key)
        return parse_int(setting, value, minimum)
    if kind in (_FLASH, _KV):
        return (parse_flash_attn if kind == _FLASH else parse_kv_type)(setting, value)
    if kind == _FLOAT:
        return parse_float(setting, value, 0.0)
    if kind == _BOOL:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise _fail(setting, value, "true or false")
    if kind == _STOP:
        if isinstance(value, str):
            return [value]
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return list(value)
        raise _fail(setting, value, "a string or a list of strings")
    return value


def validate_options(options: Mapping[str, Any], source: str = "options") -> dict[str, Any]:
    """Check keys and value types of generation options; returns coerced copies."""
    if not isinstance(options, Mapping):
        raise UsageError(
            f"{source}: invalid value {options!r}: expected a mapping such as "
            "{'num_predict': 64, 'temperature': 0}."
        )
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key not in KNOWN_OPTIONS:
            hint = did_you_mean(str(key), KNOWN_OPTIONS)
            raise UsageError(
                f"{source}: unknown generation option {key!r}.{hint} Known options: "
                + ", ".join(sorted(KNOWN_OPTIONS))
                + "."
            )
        out[key] = _coerce_option_value(key, value)
    return out


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the closest of ``choices``, or ``""``."""
    import difflib  # only on error paths: keeps plugin start-up cheap

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def split_pair(text: str, source: str, example: str) -> tuple[str, str]:
    """``KEY=VALUE`` -> ``(key, value)``: the key stripped, the value as given (each
    caller reads it its own way). ``example`` is a valid pair shown when ``=`` is missing."""
    if "=" not in text:
        raise UsageError(f"{source}: invalid value {text!r}: expected KEY=VALUE, e.g. {example}.")
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
            f"{source}: empty model name {value!r}: pass a model such as "
            "--tokrate-model=smollm2 (embedded) or --tokrate-model=gemma2:2b (Ollama)."
        )
    if any(not item for item in items):
        raise UsageError(
            f"{source}: empty model name in the list {value!r}: separate models with single "
            "commas, e.g. --tokrate-model=smollm2,smollm2-q2_k."
        )
    if len(set(items)) != len(items):
        raise UsageError(f"{source}: a model is listed twice in {value!r}: list each once.")
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


def _parse_timeout(setting: str, value: object) -> float:
    out = parse_float(setting, value)
    if out <= 0:
        raise _fail(setting, value, "a number of seconds > 0")
    return out


def parse_rounds(setting: str, value: object) -> int | str:
    """A number of rounds >= 1, or ``auto`` (measure until the verdict is settled)."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    try:
        return parse_int(setting, value, minimum=1)
    except UsageError:
        raise _fail(setting, value, "a whole number of rounds >= 1, or auto") from None


_RUN_SETTINGS: tuple[Setting[Any], ...] = (
    Setting("rounds", DEFAULT_ROUNDS, parse_rounds),
    Setting("max_rounds", DEFAULT_MAX_ROUNDS, lambda setting, v: parse_int(setting, v, minimum=2)),
    Setting("min_rounds", DEFAULT_MIN_ROUNDS, lambda setting, v: parse_int(setting, v, minimum=2)),
    Setting("warmup", DEFAULT_WARMUP, lambda setting, v: parse_int(setting, v, minimum=0)),
    Setting("timeout", DEFAULT_TIMEOUT_S, _parse_timeout),
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
    "HasSource",
    "Layer",
    "RunSettings",
    "Setting",
    "Sourced",
    "baseline_rounds",
    "did_you_mean",
    "parse_baseline_rounds",
    "parse_choice",
    "parse_float",
    "parse_int",
    "parse_model_list",
    "parse_option_lines",
    "parse_option_pair",
    "parse_pair_lines",
    "resolve",
    "resolve_layers",
    "split_pair",
    "validate_options",
]
