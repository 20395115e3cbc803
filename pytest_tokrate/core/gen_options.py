"""Generation options (``num_predict``, ``temperature``, ``seed``, ...): the known keys,
their types and bounds, and the check every layer's options go through. Pure.

Numbers are read by :mod:`.numbers` within bounds no real use exceeds, so a value that
the engine would truncate (a seed above 2**32) or loop on is refused with its name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pytest_tokrate.core.engine_options import parse_flash_attn, parse_kv_type
from pytest_tokrate.core.numbers import fail, parse_float, parse_int, shown
from pytest_tokrate.errors import UsageError

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

#: A token count no model reaches (16 Mi tokens of context).
MAX_TOKENS = 2**24
#: llama.cpp's seed is a uint32; -1 (stored as 0xFFFFFFFF, LLAMA_DEFAULT_SEED) draws a
#: random one, as does that value itself.
SEED_RANGE = (-1, 2**32 - 1)
#: ``(minimum, maximum)`` of each numeric option. Probabilities lie in [0, 1]; OpenAI
#: documents the two penalties in [-2, 2]; the rest are far above any real use.
BOUNDS: dict[str, tuple[float, float]] = {
    "num_predict": (-2, MAX_TOKENS),  # -1: unbounded, -2: fill the context (Ollama)
    "num_ctx": (1, MAX_TOKENS),
    "num_thread": (0, 4096),  # 0: the engine's choice
    "num_batch": (1, MAX_TOKENS),
    "num_ubatch": (1, MAX_TOKENS),
    "num_gpu": (-1, 100_000),  # layers offloaded; -1: all (Ollama)
    "main_gpu": (0, 1024),
    "num_keep": (-1, MAX_TOKENS),  # -1: keep all
    "seed": SEED_RANGE,
    "temperature": (0.0, 100.0),
    "top_k": (0, MAX_TOKENS),  # 0: off
    "top_p": (0.0, 1.0),
    "min_p": (0.0, 1.0),
    "typical_p": (0.0, 1.0),
    "repeat_last_n": (-1, MAX_TOKENS),  # -1: the context size, 0: off
    "repeat_penalty": (0.0, 100.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _number(key: str, setting: str, value: object) -> object:
    low, high = BOUNDS[key]
    if key == "num_predict":
        out = parse_int(setting, value, int(low), int(high), _NUM_PREDICT)
        if out == 0:
            raise fail(setting, value, _NUM_PREDICT)
        return out
    if KNOWN_OPTIONS[key] == _INT:
        return parse_int(setting, value, int(low), int(high))
    return parse_float(setting, value, low, high)


_NUM_PREDICT = f"a generation length from 1 to {MAX_TOKENS} (or -1 for unbounded)"


def _coerce_option_value(key: str, value: object, source: str) -> object:
    kind = KNOWN_OPTIONS[key]
    setting = f"{source}: option {key!r}"
    if key in BOUNDS:
        return _number(key, setting, value)
    if kind in (_FLASH, _KV):
        return (parse_flash_attn if kind == _FLASH else parse_kv_type)(setting, value)
    if kind == _BOOL:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise fail(setting, value, "true or false")
    if kind == _STOP:
        if isinstance(value, str):
            return [value]
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return list(value)
        raise fail(setting, value, "a string or a list of strings")
    return value


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the closest of ``choices``, or ``""``."""
    import difflib  # only on error paths: keeps plugin start-up cheap

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def validate_options(options: Mapping[str, Any], source: str = "options") -> dict[str, Any]:
    """Check keys and value types of generation options; returns coerced copies."""
    if not isinstance(options, Mapping):
        raise UsageError(
            f"{source}: invalid value {shown(options)}: expected a mapping such as "
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
        out[key] = _coerce_option_value(key, value, source)
    return out


__all__ = [
    "BOUNDS",
    "KNOWN_OPTIONS",
    "MAX_TOKENS",
    "SEED_RANGE",
    "did_you_mean",
    "validate_options",
]
