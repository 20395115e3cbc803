"""Wire details shared by the stand-in servers: Go-style JSON, timestamps, durations."""

from __future__ import annotations

import json
import re
import time
from typing import Any

_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_GO_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")


def go_json(obj: Any) -> bytes:
    """``json.Marshal`` output: compact, key order kept, UTF-8, ``<>&`` escaped."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    if _GO_ESCAPE_RE.search(text):
        text = _GO_ESCAPE_RE.sub(lambda m: _GO_ESCAPES[m.group(0)], text)
    return text.encode("utf-8")


def rfc3339(ns: int | None = None, utc: bool = True) -> str:
    """Go's ``time.RFC3339Nano``: up to 9 fractional digits, trailing zeros trimmed, the
    fraction dropped when zero; ``Z`` for UTC (and for a zero local offset)."""
    ns = time.time_ns() if ns is None else ns
    seconds, frac = divmod(ns, 1_000_000_000)
    if utc:
        parts, offset = time.gmtime(seconds), 0
    else:
        parts = time.localtime(seconds)
        offset = parts.tm_gmtoff or 0
    text = time.strftime("%Y-%m-%dT%H:%M:%S", parts)
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    if offset == 0:
        return text + "Z"
    sign = "+" if offset > 0 else "-"
    hours, minutes = divmod(abs(offset) // 60, 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
            "m": 60_000_000_000, "h": 3_600_000_000_000}  # fmt: skip


def parse_go_duration(text: str) -> int:
    """``time.ParseDuration`` in nanoseconds; raises ValueError with Go's message."""
    original = text
    sign = 1
    if text[:1] in "+-":
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise ValueError(f'time: invalid duration "{original}"')
    total = 0.0
    pos = 0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            raise ValueError(f'time: invalid duration "{original}"')
        total += float(match.group(1)) * _UNIT_NS[match.group(2)]
        pos = match.end()
    return sign * int(total)


def keep_alive_ns(value: Any) -> int | None:
    """``api.Duration``: a number of seconds or a duration string; ``None`` = default;
    negative = forever (returned as -1)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("json: cannot unmarshal bool into Go value of type api.Duration")
    if isinstance(value, (int, float)):
        ns = int(value * 1_000_000_000)
    elif isinstance(value, str):
        ns = parse_go_duration(value)
    else:
        raise ValueError(f"json: cannot unmarshal {type(value).__name__} into api.Duration")
    return -1 if ns < 0 else ns


def human_number(n: int) -> str:
    """Ollama's ``format.HumanNumber`` (parameter sizes such as ``134.52M``)."""
    for unit, scale, digits in (("B", 1e9, 1), ("M", 1e6, 2), ("K", 1e3, 0)):
        if n >= scale:
            value = n / scale
            if value == int(value):
                return f"{int(value)}{unit}"
            return f"{value:.{digits}f}{unit}"
    return str(n)


def gguf_value(text: str) -> Any:
    """llama.cpp hands GGUF metadata over as strings; give numbers back their type."""
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d+(e[-+]?\d+)?", text):
        value = float(text)
        return int(value) if value.is_integer() else value
    if text in ("true", "false"):
        return text == "true"
    return text


__all__ = [
    "gguf_value",
    "go_json",
    "human_number",
    "keep_alive_ns",
    "parse_go_duration",
    "rfc3339",
]
