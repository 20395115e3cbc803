"""Custom quality checks for the example suite.

A check receives the answer text (and, if it takes a second argument, a context with
``round``, ``sample``, ``prompt``, ``model`` ...) and returns True/False, a score from 0
to 1, ``(result, reason)`` or ``{"pass": ..., "score": ..., "reason": ...}``. The YAML
suite refers to these as ``file://quality_checks.py:founded_in_1975``.
"""

from __future__ import annotations

import json
from typing import Any


def founded_in_1975(output: str, context: Any) -> tuple[bool, str]:
    """The JSON answer gives the club's founding year from the article."""
    facts = json.loads(output)  # a round whose answer is not JSON fails with the error
    founded = facts.get("founded")
    return founded == 1975, f"founded = {founded!r} (the article says 1975)"


def not_repetitive(output: str) -> tuple[float, str]:
    """Share of distinct word trigrams: 1.0 never repeats, near 0 loops on one phrase.

    Returned as a score; the suite sets the passing threshold.
    """
    words = output.lower().split()
    trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    if not trigrams:
        return 0.0, "fewer than three words"
    score = len(set(trigrams)) / len(trigrams)
    return score, f"{len(set(trigrams))} distinct of {len(trigrams)} word trigrams"
