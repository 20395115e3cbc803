"""Findings about a measurement (quality bar, regression gate) and how they fail a test.

A *judge* looks at one :class:`~pytest_tokrate.core.result.Measurement` after the test body
ran and returns :class:`Finding` objects. The glue fails the test item when any finding
has severity ``"fail"``, and shows ``"warn"`` findings as warnings. Pure: no pytest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_tokrate.core.result import Measurement

#: "skip" marks the test skipped after its body ran (a baseline that is not comparable).
SEVERITIES = ("fail", "skip", "warn", "info")


@dataclass(frozen=True)
class Finding:
    """One verdict: ``kind`` names the judge's topic (``quality``, ``regression``,
    ``stale-baseline``, ``not-comparable``, ``no-baseline``, ...)."""

    kind: str
    severity: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "message": self.message,
            "data": self.data,
        }


@dataclass(frozen=True)
class JudgeContext:
    """What a judge may need beyond the measurement: the test id and the test's
    merged per-test settings (marker keyword arguments, ini and CLI values)."""

    test_id: str
    marker: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)


Judge = Callable[[Measurement, JudgeContext], list[Finding]]


def failures(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "fail"]


def failure_message(findings: list[Finding]) -> str:
    """The text a failing test shows: each failing finding, separated by a blank line."""
    return "\n\n".join(f.message for f in failures(findings))


__all__ = ["Finding", "Judge", "JudgeContext", "failure_message", "failures"]
