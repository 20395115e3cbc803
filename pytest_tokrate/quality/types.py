"""The check types and what judging a check on one round works with and gives.

:data:`CHECK_TYPES` names the built-in types; a parsed :class:`Check` runs its
:data:`Evaluator` on an answer and a :class:`RoundContext`. The evaluator returns an
:class:`Observation` (the facts found, before any ``not-`` negation); :meth:`Check.run`
applies the negation and labels it as a :class:`CheckResult`.

The parser (:mod:`~pytest_tokrate.quality.checks`), the built-in evaluators
(:mod:`~pytest_tokrate.quality.matchers`) and ``python`` checks
(:mod:`~pytest_tokrate.quality.pycheck`) all import this module, and it imports none of
them, so they form no import cycle.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_tokrate.quality.text import callable_name, exception_text

if TYPE_CHECKING:
    from pytest_tokrate.core.measure import Sample

#: Check types and whether their ``value`` is "required" or "optional".
CHECK_TYPES: dict[str, str] = {
    "equals": "required",
    "contains": "required",
    "icontains": "required",
    "contains-any": "required",
    "icontains-any": "required",
    "contains-all": "required",
    "icontains-all": "required",
    "starts-with": "required",
    "regex": "required",
    "is-json": "optional",
    "contains-json": "optional",
    "jsonschema": "required",
    "max-tokens": "required",
    "min-tokens": "required",
    "max-words": "required",
    "min-words": "required",
    "python": "required",
}
#: What a ``python`` check's score must reach to pass when the check sets no threshold.
DEFAULT_SCORE_THRESHOLD = 0.5

#: The end of "needs a 'value'..." per check type: what the value should be.
VALUE_HINTS = {
    "equals": ", the expected answer",
    "contains": ", the text to look for",
    "icontains": ", the text to look for (any case)",
    "contains-any": ", a list of strings",
    "icontains-any": ", a list of strings",
    "contains-all": ", a list of strings",
    "icontains-all": ", a list of strings",
    "starts-with": ", the expected start",
    "regex": ", a Python regular expression",
    "jsonschema": ", a JSON Schema object",
    "max-tokens": ", a number of tokens",
    "min-tokens": ", a number of tokens",
    "max-words": ", a number of words",
    "min-words": ", a number of words",
    "python": (
        ": a callable, 'file://checks.py:function', 'package.module:function' or an "
        "expression using `output`"
    ),
}


@dataclass(frozen=True)
class RoundContext:
    """What a ``python`` check sees besides the answer text."""

    round: int  # 0-based index of the measured round
    sample: Sample
    prompt: str | None = None
    system: str | None = None
    model: str | None = None
    test_id: str | None = None

    @property
    def output_tokens(self) -> int | None:
        return self.sample.output_tokens

    @property
    def words(self) -> int:
        return self.sample.words


@dataclass(frozen=True)
class Observation:
    """What an evaluator found in one answer: the facts, before any ``not-`` negation."""

    ok: bool
    reason: str
    score: float | None = None


Evaluator = Callable[[str, RoundContext], Observation]


@dataclass(frozen=True)
class CheckResult:
    """One check judged on one round: negation applied, under the check's label."""

    check: str
    passed: bool
    score: float | None
    reason: str
    error: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "passed": self.passed,
            "score": self.score,
            "reason": self.reason,
            "error": self.error,
        }


@dataclass(frozen=True)
class Check:
    """A parsed check: ``kind`` without the ``not-`` prefix, ``negate`` for the prefix."""

    kind: str
    negate: bool
    value: Any
    label: str
    evaluator: Evaluator = field(repr=False, compare=False)
    threshold: float | None = None

    @property
    def type(self) -> str:
        return f"not-{self.kind}" if self.negate else self.kind

    def run(self, text: str, context: RoundContext) -> CheckResult:
        """Evaluate on one answer; an exception fails this round only, with its text."""
        try:
            observed = self.evaluator(text, context)
        except Exception as exc:  # a user's callable may raise anything
            return CheckResult(self.label, False, None, exception_text(exc), error=True)
        passed = observed.ok != self.negate
        return CheckResult(self.label, passed, observed.score, observed.reason)

    def describe(self) -> dict[str, Any]:
        value = self.value
        if callable(value):
            value = callable_name(value)
        return {"type": self.type, "value": _jsonable(value), "label": self.label}


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


__all__ = [
    "CHECK_TYPES",
    "DEFAULT_SCORE_THRESHOLD",
    "VALUE_HINTS",
    "Check",
    "CheckResult",
    "Evaluator",
    "Observation",
    "RoundContext",
]
