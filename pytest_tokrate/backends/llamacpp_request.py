"""A request as the embedded engine takes it: the prompt through the model's chat template,
its tokens within the context, and the grammar of ``format=``, built from ``"json"`` or a
JSON Schema by llama-cpp-python's converter, then parsed by llama.cpp.

A schema can be valid JSON Schema and still be beyond the converter (``"pattern"`` without
``^...$``, an unresolvable ``$ref``) or beyond llama.cpp's grammar parser. The parser's
failures are not errors in Python: it returns no sampler (and ``Llama.generate`` then
crashes the process), or, for a long repetition (``maxLength: 20000``), overflows its stack
and kills the process outright; a huge one (``minLength: 10**9``) makes the converter build
gigabytes of text. So repetition counts are bounded first, and the grammar is parsed once
before any round, each problem a :class:`UsageError` naming ``format``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable
from typing import Any

from pytest_tokrate.errors import UsageError

#: The largest repetition count (string length, item count, ``{n}`` in a pattern) the
#: embedded engine takes in a schema. Up to 1,000 every shape tried parsed (nested ones
#: included); from 2,000 llama.cpp refuses long strings, from about 15,000 its parser crashes.
MAX_REPEAT = 1000
_COUNT_KEYS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
_QUANTIFIER = re.compile(r"\{\s*([0-9]+)\s*(?:,\s*([0-9]*)\s*)?\}")


def templated(render: Callable[[], str], model: str) -> str:
    """The prompt text the chat template renders; its failures are a :class:`UsageError`."""
    try:
        return render()
    # The template is a program shipped in the model file: it may raise anything (Jinja's
    # TemplateError through raise_exception, TypeError, ...) for messages it does not
    # take, such as roles that do not alternate.
    except Exception as exc:
        raise UsageError(
            f"the chat template of {model} cannot format this request "
            f"({type(exc).__name__}: {str(exc)[:200]}): check the messages' roles and order "
            "(many templates want one system message first, then user and assistant in "
            "turn), or send a prompt with raw=True."
        ) from None


def fit_tokens(tokens: list[int], n_ctx: int) -> list[int]:
    if len(tokens) >= n_ctx:
        raise UsageError(
            f"the prompt has {len(tokens)} tokens but num_ctx is {n_ctx}: raise num_ctx "
            "(e.g. --tokrate-num-ctx) or shorten the prompt."
        )
    return tokens


def _refuse(where: str, problem: str) -> UsageError:
    return UsageError(
        f"{where}: {problem}; the embedded engine (llama.cpp) cannot constrain the answer to "
        "this schema: simplify the schema, or use format='json'."
    )


def _counts(where: str, node: Any) -> None:
    """Refuse repetition counts above :data:`MAX_REPEAT` anywhere in the schema."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            _counts(f"{where}[{i}]", item)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        at = f"{where}.{key}"
        if key in _COUNT_KEYS and isinstance(value, int) and value > MAX_REPEAT:
            raise _refuse(at, f"{value} is more than the {MAX_REPEAT} repetitions it spells out")
        if key == "pattern" and isinstance(value, str):
            for match in _QUANTIFIER.finditer(value):
                numbers = [g for g in match.groups() if g]
                if any(len(g) > 4 or int(g) > MAX_REPEAT for g in numbers):
                    raise _refuse(
                        at,
                        f"the repetition {match.group(0)!r} is more than the {MAX_REPEAT} "
                        "repetitions it spells out",
                    )
        _counts(at, value)


def build_grammar(fmt: str | dict[str, Any] | None) -> Any:
    """The ``LlamaGrammar`` of a format (``None`` without one); converter complaints are
    a :class:`UsageError` naming ``format``."""
    if fmt is None or fmt == "":
        return None
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    if fmt == "json":
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    if not isinstance(fmt, dict):
        raise UsageError(
            f"format={fmt!r} is not supported: use 'json' or a JSON Schema object (a dict)."
        )
    _counts("format", fmt)
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
            return LlamaGrammar.from_json_schema(json.dumps(fmt), verbose=False)
    # The converter is Python walking the user's schema: it says what it does not support
    # by assertions and ValueError (messages naming the part); a $ref cycle or a deep
    # schema ends in RecursionError, and shapes it never expected in others (a boolean
    # subschema, {"properties": {"a": false}}, raises AttributeError; found by the
    # generative suite). Whatever it raises is that schema's, not a bug to show as one.
    except Exception as exc:
        detail = str(exc) if isinstance(exc, (AssertionError, ValueError)) else ""
        detail = detail or f"{type(exc).__name__}: {exc}"
        raise _refuse("format", f"llama.cpp's schema converter says: {detail[:300]}") from None


def check_grammar(llama_cpp: Any, vocab: Any, grammar: Any) -> None:
    """Parse the grammar with llama.cpp as a round's sampler would, then free it."""
    if grammar is None:
        return
    sampler = llama_cpp.llama_sampler_init_grammar(
        vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
    )
    if not sampler:  # a NULL pointer: the parser refused the grammar
        raise _refuse(
            "format",
            "llama.cpp's grammar parser refused the grammar built from it (its complaint is "
            "printed on stderr)",
        )
    llama_cpp.llama_sampler_free(sampler)


__all__ = ["MAX_REPEAT", "build_grammar", "check_grammar", "fit_tokens", "templated"]
