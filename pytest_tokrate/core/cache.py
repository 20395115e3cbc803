"""The prompt cache in measured rounds: which method defeated it, and whether it held.

A measured round must evaluate its whole prompt, or TTFT and prefill figures describe a
cache hit instead of the model. Each backend defeats the cache its own way without
touching the prompt (``Backend.cache_busting``); the server's own counters then say, per
round, how many prompt tokens were served from a cache. A round that reused more than the
backend's allowance (``Backend.cache_allowance``: tokens a method cannot avoid sharing,
such as a start-of-text token) is marked ``cache_reused`` and reported, never averaged in
silently (:func:`cache_judge`). Pure: no pytest, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from pytest_tokrate.core.measure import Sample

#: Methods that change what the model reads (answers may differ from the exact prompt's).
TEXT_CHANGING = frozenset({"nonce-prefix"})


def method(backend: Any, mode: str) -> str:
    """The method a run used: the backend's own for ``bust``, the nonce line for
    ``nonce``, ``none`` when the cache was allowed."""
    if mode == "nonce":
        return "nonce-prefix"
    if mode == "bust":
        return str(getattr(backend, "cache_busting", "none"))
    return "none"


#: The nonce line sits after the chat template's opening tokens (``<|im_start|>system\n``
#: and ``[run``: 3-6 tokens measured on SmolLM2 through the Ollama stand-in), which a
#: prefix cache still serves; more than this is a real reuse.
NONCE_ALLOWANCE = 16


def allowance(backend: Any, mode: str = "bust") -> int:
    """Cached prompt tokens a method cannot avoid: the backend's own (0 unless it says
    otherwise), or the template tokens before the nonce line."""
    value = getattr(backend, "cache_allowance", 0)
    own = value if isinstance(value, int) and value >= 0 else 0
    return max(own, NONCE_ALLOWANCE) if mode == "nonce" else own


def mark_reuse(samples: Sequence[Sample], busting: bool, allowed: int) -> list[Sample]:
    """Each sample with ``cache_reused`` set: ``True`` when the server served more than
    ``allowed`` prompt tokens from a cache in a round that should have evaluated them all,
    ``None`` when the server does not say (or the cache was allowed)."""
    out = []
    for s in samples:
        cached = s.prompt_tokens_cached
        reused = None if not busting or cached is None else cached > allowed
        out.append(replace(s, cache_reused=reused) if reused != s.cache_reused else s)
    return out


def summary(samples: Sequence[Sample], mode: str, used: str, allowed: int) -> dict[str, Any]:
    """The run's cache record: mode, method, and per-round verification.

    ``held`` is ``True`` when every measured round was verified from the server's counters
    and none reused the cache, ``False`` when one did, ``None`` when the counters do not
    tell (or the cache was allowed).
    """
    verified = [s for s in samples if s.cache_reused is not None]
    reused = [s.index for s in samples if s.cache_reused]
    held: bool | None
    if mode == "allow" or not samples:
        held = None
    elif reused:
        held = False
    else:
        held = True if len(verified) == len(samples) else None
    return {
        "mode": mode,
        "method": used,
        "exact_prompt": used not in TEXT_CHANGING,
        "allowance_tokens": allowed,
        "verified_rounds": len(verified),
        "reused_rounds": reused,
        "held": held,
    }


def cache_judge(measurement: Any, context: Any) -> list[Any]:
    """Warn when measured rounds were served from a prompt cache although it was to be
    defeated, naming the rounds and the tokens; their TTFT describes a cache hit."""
    from pytest_tokrate.core.findings import Finding

    record = measurement.extra.get("cache") or {}
    reused = record.get("reused_rounds") or []
    if not reused:
        return []
    samples = {s.index: s for s in measurement.samples}
    tokens = ", ".join(
        f"round {i + 1}: {samples[i].prompt_tokens_cached} of {samples[i].prompt_tokens}"
        for i in reused
        if i in samples
    )
    label = f" ({measurement.label})" if getattr(measurement, "label", None) else ""
    return [
        Finding(
            "cache-reused",
            "warn",
            f"tokrate: {len(reused)} of {len(measurement.samples)} measured round(s) of "
            f"{context.test_id}{label} on {measurement.model.name} were served partly from "
            f"the server's prompt cache although --tokrate-cache=bust asked to defeat it "
            f"(method {record.get('method')}; cached prompt tokens {tokens}): their TTFT "
            "describes a cache hit (the prefill rate counts only the tokens evaluated). "
            "Check the server's cache settings, or use --tokrate-cache=nonce, which changes "
            "the prompt's first line but defeats any prefix cache.",
            {"reused_rounds": list(reused), "method": record.get("method")},
        )
    ]


__all__ = [
    "NONCE_ALLOWANCE",
    "TEXT_CHANGING",
    "allowance",
    "cache_judge",
    "mark_reuse",
    "method",
    "summary",
]
