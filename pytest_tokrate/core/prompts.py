"""Prompts of a requested length, for prompt-length sweep levels.

The prompt is preceded by neutral, deterministic background notes (no sentence repeats, so
no prefix cache can shortcut them) until the whole is the requested number of cl100k_base
tokens, the common yardstick of :mod:`pytest_tokrate.core.tokens`. The engine's own prompt
token count differs by tokenizer; sweeps report it beside the requested length.
"""

from __future__ import annotations

_ADJ = ("grey", "quiet", "narrow", "bright", "old", "wooden", "distant", "small", "round")
_NOUN = ("stone", "bridge", "lantern", "harbour", "orchard", "window", "mill", "garden")
_PLACE = ("the river", "the hill", "the market", "the station", "the square", "the coast")


def filler(sentences: int) -> str:
    """Deterministic, varied background text (no repeated sentence)."""
    out = []
    for i in range(sentences):
        out.append(
            f"Note {i + 1}: the {_ADJ[i % len(_ADJ)]} {_NOUN[(i // 2) % len(_NOUN)]} "
            f"near {_PLACE[(i // 3) % len(_PLACE)]} was recorded on day {i * 7 % 365 + 1}."
        )
    return " ".join(out)


def prompt_of_length(prompt: str, target_tokens: int) -> str:
    """``prompt`` preceded by background text so the whole is about ``target_tokens``
    cl100k_base tokens (about 4 characters per token when no encoding can load)."""
    from pytest_tokrate.core.tokens import encoding

    enc = encoding()
    question = f"\n\nIgnore the notes above. {prompt}"
    if enc is not None:
        budget = target_tokens - len(enc.encode(question, disallowed_special=()))
        if budget <= 0:
            return prompt
        text = filler(budget // 8 + 2)
        return str(enc.decode(enc.encode(text, disallowed_special=())[:budget])) + question
    budget_chars = 4 * target_tokens - len(question)
    if budget_chars <= 0:
        return prompt
    return filler(budget_chars // 32 + 2)[:budget_chars] + question


__all__ = ["filler", "prompt_of_length"]
