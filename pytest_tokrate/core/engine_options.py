"""Load-time options of a llama.cpp engine, spelled as llama.cpp's tools spell them. Pure.

``flash_attn`` takes ``-fa``'s values (auto, on, off and the usual true/false words);
``type_k``/``type_v`` take the ggml type names ``-ctk``/``-ctv`` accept (common/arg.cpp).
"""

from __future__ import annotations

from pytest_tokrate.core.numbers import fail

FLASH_ATTN_MODES = ("auto", "on", "off")
KV_CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
_FLASH_WORDS: dict[object, str] = {
    **dict.fromkeys((True, "1", "true", "yes", "enabled"), "on"),
    **dict.fromkeys((False, "0", "false", "no", "disabled"), "off"),
}


def parse_flash_attn(setting: str, value: object) -> str:
    """``auto``, ``on`` or ``off``."""
    text = value if isinstance(value, bool) else str(value).strip().lower()
    out = _FLASH_WORDS.get(text, text)
    if out not in FLASH_ATTN_MODES:
        raise fail(setting, value, "auto, on or off (true/false accepted)")
    return str(out)


def parse_kv_type(setting: str, value: object) -> str:
    """A KV cache type name, lower case."""
    text = str(value).strip().lower()
    if isinstance(value, bool) or text not in KV_CACHE_TYPES:
        raise fail(setting, value, f"one of {', '.join(KV_CACHE_TYPES)}")
    return text


__all__ = ["FLASH_ATTN_MODES", "KV_CACHE_TYPES", "parse_flash_attn", "parse_kv_type"]
