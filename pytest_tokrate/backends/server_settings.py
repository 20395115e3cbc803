"""Server settings a user declares (``--tokrate-server-setting KEY=VALUE``). Pure.

A client cannot see how the server was started (``OLLAMA_KV_CACHE_TYPE``,
``OLLAMA_FLASH_ATTENTION``, ``OLLAMA_NUM_PARALLEL``, ...), yet those settings move the
figures. Declared values are validated, normalised and recorded with every result (and
in the baseline fingerprint), so two runs with different settings are never compared as
if they were alike. Keys may be given in our spelling or as Ollama's environment variable
names; keys starting with ``x_`` are recorded as given, for settings of other servers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from pytest_tokrate.core.numbers import NumberError, parse_int, shown
from pytest_tokrate.core.settings import did_you_mean, parse_pair_lines, split_pair
from pytest_tokrate.errors import UsageError

_FLASH = {
    "auto": "auto", "": "auto",
    "1": "on", "on": "on", "true": "on", "yes": "on", "enabled": "on",
    "0": "off", "off": "off", "false": "off", "no": "off", "disabled": "off",
}  # fmt: skip
_KV_TYPES = {
    "f16": "f16",
    "fp16": "f16",
    "q8_0": "q8_0",
    "q8": "q8_0",
    "q4_0": "q4_0",
    "q4": "q4_0",
}

#: Ollama environment variable names -> our keys.
ENV_NAMES = {
    "OLLAMA_KV_CACHE_TYPE": "kv_cache_type",
    "OLLAMA_FLASH_ATTENTION": "flash_attention",
    "OLLAMA_NUM_PARALLEL": "num_parallel",
    "OLLAMA_CONTEXT_LENGTH": "context_length",
    "OLLAMA_MAX_QUEUE": "max_queue",
    "OLLAMA_MAX_LOADED_MODELS": "max_loaded_models",
    "OLLAMA_KEEP_ALIVE": "keep_alive",
}


def _choice(table: dict[str, str], expected: str) -> Callable[[str, str], str]:
    def parse(key: str, text: str) -> str:
        value = table.get(text.strip().lower())
        if value is None:
            raise ValueError(expected)
        return value

    return parse


def _count(minimum: int, maximum: int) -> Callable[[str, str], int]:
    def parse(key: str, text: str) -> int:
        try:  # ASCII digits only: "²" passes str.isdigit() but not int()
            return parse_int(key, text, minimum, maximum)
        except NumberError as exc:
            raise ValueError(exc.expected) from None

    return parse


def _text(key: str, text: str) -> str:
    if not text.strip():
        raise ValueError("a non-empty value")
    return text.strip()


KNOWN: dict[str, Callable[[str, str], object]] = {
    "kv_cache_type": _choice(_KV_TYPES, "f16, q8_0 or q4_0"),
    "flash_attention": _choice(_FLASH, "auto, on or off (1/0, true/false)"),
    "num_parallel": _count(1, 4096),
    "context_length": _count(1, 2**24),
    "max_queue": _count(1, 10**6),
    "max_loaded_models": _count(0, 1024),
    "keep_alive": _text,
    "num_gpu_layers": _count(0, 100_000),
    "gpu": _text,
}


def parse_server_setting(text: str, source: str = "--tokrate-server-setting") -> tuple[str, object]:
    """``KEY=VALUE`` -> the normalised pair; :class:`UsageError` names the bad value."""
    raw_key, value = split_pair(text, source, "kv_cache_type=q8_0")
    key = ENV_NAMES.get(raw_key.upper(), raw_key.lower())
    parse = KNOWN.get(key, _text if key.startswith("x_") and len(key) > 2 else None)
    if parse is None:
        hint = did_you_mean(key, [*KNOWN, *ENV_NAMES])
        raise UsageError(
            f"{source}: unknown server setting {raw_key!r}.{hint} Known: "
            + ", ".join(sorted(KNOWN))
            + " (or Ollama's variable names such as OLLAMA_KV_CACHE_TYPE); prefix other "
            "settings with x_ to record them as given."
        )
    try:
        return key, parse(key, value)
    except ValueError as exc:
        raise UsageError(
            f"{source}: invalid value {shown(value)} for server setting {key!r}: expected {exc}."
        ) from None


def parse_server_settings(items: Iterable[str], source: str) -> dict[str, object]:
    """Several ``KEY=VALUE`` items (blank lines and ``#`` comments skipped); later wins."""
    return parse_pair_lines(items, source, parse_server_setting)


#: Options the embedded engine applies when it creates a context; a server fixes them when
#: it starts, so a request cannot change them: how to set (and declare) each instead.
SERVER_START_OPTIONS: dict[str, dict[str, str]] = {
    "flash_attn": {
        "ollama": "start Ollama with OLLAMA_FLASH_ATTENTION=1 (or 0) and declare it with "
        "--tokrate-server-setting flash_attention=on",
        "openai": "start llama-server with -fa on (or off) and declare it with "
        "--tokrate-server-setting x_flash_attn=on",
    },
    "type_k": {
        "ollama": "start Ollama with OLLAMA_KV_CACHE_TYPE=q8_0 and declare it with "
        "--tokrate-server-setting kv_cache_type=q8_0",
        "openai": "start llama-server with -ctk q8_0 and declare it with "
        "--tokrate-server-setting x_cache_type_k=q8_0",
    },
    "type_v": {
        "ollama": "start Ollama with OLLAMA_KV_CACHE_TYPE=q8_0 and declare it with "
        "--tokrate-server-setting kv_cache_type=q8_0",
        "openai": "start llama-server with -ctv q8_0 and declare it with "
        "--tokrate-server-setting x_cache_type_v=q8_0",
    },
    "num_ubatch": {
        "ollama": "Ollama does not expose it",
        "openai": "start llama-server with -ub N and declare it with "
        "--tokrate-server-setting x_ubatch_size=N",
    },
}


def refuse_server_start_options(options: Mapping[str, object], backend: str) -> None:
    """A :class:`UsageError` when a test sets, for a server, an option only the server's
    start can set (it would be sent and ignored, yet named as the test's configuration)."""
    for key in SERVER_START_OPTIONS:
        if key in options and backend in SERVER_START_OPTIONS[key]:
            raise UsageError(
                f"option {key}={options[key]!r} cannot be set per request on the {backend} "
                f"backend (the server fixes it when it starts): "
                f"{SERVER_START_OPTIONS[key][backend]}, and remove the option."
            )


__all__ = [
    "ENV_NAMES",
    "KNOWN",
    "SERVER_START_OPTIONS",
    "parse_server_setting",
    "parse_server_settings",
    "refuse_server_start_options",
]
