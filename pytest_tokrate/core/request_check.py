"""The arguments of one ``tokrate.run()`` or ``tokrate.sweep()`` call, checked before any
round and turned into a :class:`~pytest_tokrate.backends.base.Request`. Pure.

Every value a test (or a YAML case, which runs through the same call) gives is checked
here once, so that nothing reaches an engine to be sent as the text ``"None"``, dropped
without a word, or refused minutes later by a chat template or a grammar builder:

- ``prompt``: text with something in it; ``system``: ``None`` or such text;
- ``messages``: a non-empty list of ``{"role": ..., "content": ...}`` dicts (or
  :class:`Message` objects), the role one of :data:`ROLES`, the content a string;
- text of every kind encodable as UTF-8 (a lone surrogate is not);
- ``raw``: ``True`` or ``False``; ``raw=True`` only with a prompt and no system prompt
  (raw mode has no chat template, so no place for either);
- ``format``: ``None``, ``"json"`` or a valid JSON Schema given as plain JSON (the error
  names the place in the schema, ``format.properties.a.type``);
- ``label``: ``None`` or a one-line name.

What only an engine knows (its chat template, what its grammar converter supports) is
checked by the backend's optional ``check_request`` (``backends/base.py``), also before
any round.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_tokrate.backends.base import Message, Request
from pytest_tokrate.core.numbers import INT_LIMIT, shown
from pytest_tokrate.errors import UsageError, did_you_mean

#: The roles every backend sends as they are (Ollama, OpenAI-compatible servers, chat
#: templates). ``tool`` is left out: a tool message needs a ``tool_call_id`` (OpenAI) or a
#: ``tool_name`` (Ollama) that :class:`Message` does not carry.
ROLES = ("system", "user", "assistant")
#: How deep a ``format`` schema may nest (real schemas stay far below; deeper input would
#: exhaust the recursion of the validators and of the grammar converter).
MAX_FORMAT_DEPTH = 64
SCHEMA_HELP = "see https://json-schema.org/understanding-json-schema"


def _fail(where: str, value: object, expected: str) -> UsageError:
    return UsageError(f"{where}: invalid value {shown(value)}: expected {expected}.")


def _encodable(where: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError(
            f"{where}: invalid value {shown(text)}: it holds a lone surrogate "
            f"{text[exc.start]!r} at index {exc.start}, which is not text and cannot be sent "
            "as UTF-8: remove it (text decoded with errors='surrogateescape' or "
            "'surrogatepass' carries them; decode with errors='replace' instead)."
        ) from None


def check_text(
    where: str, value: object, what: str, blank: str = "an empty one measures nothing"
) -> str:
    """``value`` as text to send: a string, not empty or blank, encodable as UTF-8."""
    if not isinstance(value, str):
        raise _fail(where, value, f"{what} as a string")
    if not value.strip():
        raise _fail(where, value, f"{what} with some text in it ({blank})")
    _encodable(where, value)
    return value


def check_messages(where: str, messages: object, system: str | None) -> tuple[Message, ...]:
    """Chat messages as :class:`Message` objects."""
    if not isinstance(messages, (list, tuple)):
        raise _fail(where, messages, "a list of {'role': ..., 'content': ...} dicts")
    if not messages:
        raise UsageError(f"{where}=[]: give at least one message, or pass a prompt instead.")
    out = []
    for i, item in enumerate(messages):
        at = f"{where}[{i}]"
        if isinstance(item, Message):
            role, content = item.role, item.content
        elif isinstance(item, Mapping) and set(item) == {"role", "content"}:
            role, content = item["role"], item["content"]
        else:
            extra = (
                sorted(map(str, set(item) - {"role", "content"}))
                if isinstance(item, Mapping)
                else []
            )
            also = f" and no other key (found {', '.join(map(repr, extra))})" if extra else ""
            raise UsageError(
                f"{at} = {shown(item)}: each message needs 'role' and 'content'{also}, "
                "e.g. {'role': 'user', 'content': 'Hi'}."
            )
        if role not in ROLES:
            hint = did_you_mean(role, ROLES) if isinstance(role, str) else ""
            raise _fail(f"{at}.role", role, f"one of {', '.join(map(repr, ROLES))}{hint}")
        if not isinstance(content, str):
            raise _fail(f"{at}.content", content, "the message's text as a string")
        _encodable(f"{at}.content", content)
        if role == "system" and system is not None:
            raise UsageError(
                f"{at} is a system message and system= is also given: give the system "
                "prompt once, either as system='...' or as a {'role': 'system'} message."
            )
        out.append(Message(role=role, content=content))
    return tuple(out)


def _schema_path(path: Sequence[object]) -> str:
    return "".join(f".{p}" if isinstance(p, str) and p.isidentifier() else f"[{p!r}]" for p in path)


def _plain_json(where: str, value: object, depth: int = 0) -> None:
    """Refuse what JSON cannot carry (the schema is sent as JSON, hashed into baselines
    and written in reports): non-string keys, NaN, huge integers, tuples, objects."""
    if depth > MAX_FORMAT_DEPTH:
        raise UsageError(
            f"{where}: the schema nests more than {MAX_FORMAT_DEPTH} levels deep: flatten it "
            "(use $defs and $ref for shared parts)."
        )
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _fail(f"{where} key", key, "a string (JSON object keys are strings)")
            _encodable(f"{where} key", key)
            _plain_json(f"{where}{_schema_path([key])}", item, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _plain_json(f"{where}[{i}]", item, depth + 1)
    elif isinstance(value, str):
        _encodable(where, value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise _fail(where, value, "a finite number (JSON has no NaN or infinity)")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= INT_LIMIT:
        raise _fail(where, value, f"an integer of at most {len(str(INT_LIMIT)) - 1} digits")
    elif value is not None and not isinstance(value, (bool, int, float)):
        raise _fail(where, value, "JSON: a dict, list, string, number, boolean or None")


def check_format(where: str, fmt: object) -> str | dict[str, Any] | None:
    """``None``, ``"json"``, or a dict that is a valid JSON Schema (draft 2020-12 unless
    its ``$schema`` names another draft)."""
    if fmt is None or fmt == "json":
        return fmt
    if not isinstance(fmt, dict):
        raise _fail(where, fmt, "'json' or a JSON Schema object (a dict), or no format")
    _plain_json(where, fmt)
    if "$schema" in fmt and not isinstance(fmt["$schema"], str):
        raise _fail(f"{where}.$schema", fmt["$schema"], "the URI of a JSON Schema draft")
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match
    from jsonschema.validators import validator_for

    cls = validator_for(fmt, default=Draft202012Validator)
    error = best_match(cls(cls.META_SCHEMA).iter_errors(fmt))
    if error is not None:
        raise UsageError(
            f"{where}{_schema_path(list(error.absolute_path))}: {error.message}: "
            f"format= must be a valid JSON Schema; fix the schema ({SCHEMA_HELP})."
        )
    return fmt


def check_label(where: str, label: object) -> str | None:
    """``None`` or a one-line name (it keys the run in reports and baselines)."""
    if label is None:
        return None
    text = check_text(where, label, "a name for the run", "or no label= at all")
    control = next((c for c in text if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        raise _fail(where, label, f"a one-line name, without control characters ({control!r})")
    return text


def checked_request(
    method: str,
    *,
    prompt: object,
    messages: object,
    system: object,
    format: object,
    raw: object,
) -> Request:
    """The request of one ``tokrate.<method>()`` call, every argument checked."""
    call = f"tokrate.{method}()"
    if (prompt is None) == (messages is None):
        raise UsageError(
            f"{call} needs exactly one of prompt='...' or messages=[...]; got "
            f"prompt={shown(prompt)} and messages={shown(messages)}."
        )
    if not isinstance(raw, bool):
        raise _fail(f"{call} raw", raw, "True or False")
    text = None if prompt is None else check_text(f"{call} prompt", prompt, "the prompt")
    sys_text = (
        None
        if system is None
        else check_text(
            f"{call} system",
            system,
            "a system prompt",
            "or none: leave system out, or send messages=[{'role': 'system', 'content': ''}, "
            "...] for an empty one",
        )
    )
    if raw and messages is not None:
        raise UsageError(
            f"{call}: raw=True sends a prompt as it is, with no chat template, so it takes "
            "prompt='...', not messages=[...]: give the whole templated text as prompt=, "
            "or drop raw=True."
        )
    if raw and system is not None:
        raise UsageError(
            f"{call}: raw=True has no chat template and so no place for a system prompt "
            f"(system={shown(system)}; Ollama ignores it in raw mode): put the system text "
            "into the prompt itself, or drop raw=True."
        )
    chat = None if messages is None else check_messages(f"{call} messages", messages, sys_text)
    schema = check_format(f"{call} format", format)
    return Request(prompt=text, messages=chat, system=sys_text, format=schema, raw=raw)


__all__ = [
    "MAX_FORMAT_DEPTH",
    "ROLES",
    "check_format",
    "check_label",
    "check_messages",
    "check_text",
    "checked_request",
]
