"""The quality bar: checks run on every measured round, the pass rate, and the finding
when it falls below the minimum.

:func:`evaluate` runs parsed checks (see :mod:`pytest_tokrate.quality.checks`) on each sample of
a measurement and returns a :class:`QualityResult`, which the ``tokrate`` fixture puts on
``Measurement.quality``. :func:`quality_judge` turns a pass rate below the minimum into a
failing :class:`~pytest_tokrate.core.findings.Finding` whose message says which check failed,
on which rounds, with the (shortened) answers and the reason. Pure: no pytest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_tokrate.core.findings import Finding, JudgeContext
from pytest_tokrate.core.result import Measurement
from pytest_tokrate.core.stats import wilson_interval
from pytest_tokrate.quality.checks import (
    DEFAULT_MIN_PASS_RATE,
    parse_checks,
    resolve_min_pass_rate,
)
from pytest_tokrate.quality.text import pct
from pytest_tokrate.quality.types import Check, CheckResult, RoundContext

if TYPE_CHECKING:
    from pytest_tokrate.backends.base import Request
    from pytest_tokrate.core.measure import Sample
    from pytest_tokrate.core.settings import Layer

#: Distinct answers shown per failing check, and their length in characters.
SHOWN_ANSWERS = 3
ANSWER_CHARS = 100


@dataclass(frozen=True)
class RoundOutcome:
    """Every check's result on one measured round."""

    index: int
    text: str
    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "passed": self.passed,
            "results": [r.to_dict() for r in self.results],
        }


@dataclass(frozen=True)
class QualityResult:
    """Per-round outcomes of a measurement's checks and the pass rate over rounds."""

    checks: tuple[Check, ...]
    rounds: tuple[RoundOutcome, ...]
    min_pass_rate: float = 1.0
    min_pass_rate_source: str = "default: every round"

    @property
    def total(self) -> int:
        return len(self.rounds)

    @property
    def passed_rounds(self) -> int:
        return sum(1 for r in self.rounds if r.passed)

    @property
    def pass_rate(self) -> float:
        """Share of rounds that passed every check (NaN without rounds)."""
        return self.passed_rounds / self.total if self.total else float("nan")

    @property
    def pass_rate_ci95(self) -> tuple[float, float]:
        """Wilson 95% interval of the pass rate."""
        return wilson_interval(self.passed_rounds, self.total)

    @property
    def meets_minimum(self) -> bool:
        """Whether the pass rate reaches the minimum (a tiny tolerance for k/n vs 0.8)."""
        if not self.total:
            return False
        return self.passed_rounds >= self.min_pass_rate * self.total - 1e-9

    def failed_rounds(self, position: int) -> list[RoundOutcome]:
        """Rounds in which the check at ``position`` (in ``checks``) failed."""
        return [r for r in self.rounds if not r.results[position].passed]

    @property
    def definitions(self) -> list[dict[str, Any]]:
        """What was checked (type, value, label): part of the test's definition."""
        return [c.describe() for c in self.checks]

    def to_dict(self) -> dict[str, Any]:
        """Plain data: ``passed`` of ``total`` rounds passed every check; ``checks`` maps
        each check's label to its own counts; ``per_round`` holds every outcome."""
        low, high = self.pass_rate_ci95
        checks: dict[str, Any] = {}
        for position, check in enumerate(self.checks):
            label = check.label
            while label in checks:
                label += " (again)"
            failed = len(self.failed_rounds(position))
            checks[label] = {
                **check.describe(),
                "passed": self.total - failed,
                "total": self.total,
            }
        return {
            "pass_rate": self.pass_rate if self.total else None,
            "passed": self.passed_rounds,
            "total": self.total,
            "pass_rate_ci95": [low, high] if self.total else None,
            "min_pass_rate": self.min_pass_rate,
            "min_pass_rate_source": self.min_pass_rate_source,
            "meets_minimum": self.meets_minimum,
            "checks": checks,
            "per_round": [r.to_dict() for r in self.rounds],
        }

    def failure_lines(self, model: str | None = None, label: str | None = None) -> list[str]:
        """A compact explanation: the rate, then each failing check with its rounds,
        answers and reasons, then the checks that always passed (one line)."""
        what = f" ({label})" if label else ""
        on = f" on {model}" if model else ""
        lines = [
            f"tokrate quality{what}: {self.passed_rounds} of {self.total} rounds passed "
            f"({pct(self.pass_rate)}){on}; minimum {pct(self.min_pass_rate)} "
            f"({self.min_pass_rate_source})"
        ]
        if not self.total:
            lines.append("  no measured round to judge")
            return lines
        always = []
        for position, check in enumerate(self.checks):
            failed = self.failed_rounds(position)
            if not failed:
                always.append(check.label)
                continue
            lines.append(
                f"  {check.label}: failed in {_rounds(r.index for r in failed)} "
                f"({len(failed)} of {self.total})"
            )
            lines.extend(_answer_lines(position, failed))
        if always:
            lines.append(f"  passed in every round: {'; '.join(always)}")
        return lines


def _answer_lines(position: int, failed: Sequence[RoundOutcome]) -> list[str]:
    """Group failed rounds by (answer, reason) so identical rounds print once."""
    groups: dict[tuple[str, str], list[int]] = {}
    for outcome in failed:
        result = outcome.results[position]
        groups.setdefault((outcome.text, result.reason), []).append(outcome.index)
    lines = []
    for (text, reason), indexes in list(groups.items())[:SHOWN_ANSWERS]:
        lines.append(f"    {_rounds(indexes)}: {_quote(text)}")
        lines.append(f"      -> {reason}")
    if len(groups) > SHOWN_ANSWERS:
        lines.append(f"    ... {len(groups) - SHOWN_ANSWERS} more distinct answer(s)")
    return lines


def evaluate(
    checks: Sequence[Check],
    samples: Sequence[Sample],
    *,
    min_pass_rate: float = 1.0,
    min_pass_rate_source: str = "default: every round",
    prompt: str | None = None,
    system: str | None = None,
    model: str | None = None,
    test_id: str | None = None,
) -> QualityResult:
    """Run every check on every sample (a check that raises fails that round only)."""
    rounds = []
    for sample in samples:
        context = RoundContext(
            round=sample.index,
            sample=sample,
            prompt=prompt,
            system=system,
            model=model,
            test_id=test_id,
        )
        results = tuple(check.run(sample.text, context) for check in checks)
        rounds.append(RoundOutcome(sample.index, sample.text, results))
    return QualityResult(tuple(checks), tuple(rounds), min_pass_rate, min_pass_rate_source)


@dataclass(frozen=True)
class QualityPlan:
    """The checks and minimum pass rate of one ``tokrate.run``, parsed before it runs."""

    test_id: str
    checks: tuple[Check, ...]
    min_pass_rate: float = DEFAULT_MIN_PASS_RATE
    min_pass_rate_source: str = "default: every round"

    @classmethod
    def build(
        cls,
        test_id: str,
        layers: Sequence[Layer | None],
        call_checks: Sequence[Any] | None,
        call_min_pass_rate: object = None,
        call_source: str = "tokrate.run()",
        base_dir: Path | None = None,
    ) -> QualityPlan | None:
        """``layers`` are ``[ini, marker, command line]``: the marker's checks come first,
        then the call's; the minimum pass rate follows CLI > call > marker > ini > 1.0."""
        ini, marker, cli = layers
        marker_extra = dict((marker.extra or {}) if marker is not None else {})
        checks = [
            *parse_checks(marker_extra.get("checks"), f"{test_id}: @pytest.mark.tokrate checks"),
            *parse_checks(call_checks, f"{test_id}: {call_source} checks", base_dir),
        ]
        rate, source = resolve_min_pass_rate(
            [
                ("ini tokrate_min_pass_rate", _extra(ini, "min_pass_rate")),
                ("@pytest.mark.tokrate", marker_extra.get("min_pass_rate")),
                (call_source, call_min_pass_rate),
                ("--tokrate-min-pass-rate", _extra(cli, "min_pass_rate")),
            ]
        )
        if not checks:
            return None
        return cls(test_id, tuple(checks), rate, source)

    def evaluate(self, measurement: Measurement, request: Request) -> QualityResult:
        return evaluate(
            self.checks,
            measurement.samples,
            min_pass_rate=self.min_pass_rate,
            min_pass_rate_source=self.min_pass_rate_source,
            prompt=request.prompt,
            system=request.system,
            model=measurement.model.name,
            test_id=self.test_id,
        )


def _extra(layer: Layer | None, key: str) -> object:
    return None if layer is None or not layer.extra else layer.extra.get(key)


def quality_judge(measurement: Measurement, context: JudgeContext) -> list[Finding]:
    """Fail the test when a measurement's pass rate is below its minimum."""
    quality = measurement.quality
    if not isinstance(quality, QualityResult) or quality.meets_minimum:
        return []
    message = "\n".join(quality.failure_lines(measurement.model.name, measurement.label))
    data = {
        "passed_rounds": quality.passed_rounds,
        "total_rounds": quality.total,
        "pass_rate": quality.pass_rate if quality.total else None,
        "min_pass_rate": quality.min_pass_rate,
    }
    return [Finding(kind="quality", severity="fail", message=message, data=data)]


def _rounds(indexes: Any) -> str:
    """1-based round numbers as ranges: ``rounds 1-3, 5``."""
    numbers = sorted(i + 1 for i in indexes)
    parts: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    word = "round" if len(numbers) == 1 else "rounds"
    return f"{word} {', '.join(parts)}"


def _quote(text: str) -> str:
    flat = " ".join(text.split())
    if not flat:
        return "(empty answer)"
    if len(flat) > ANSWER_CHARS:
        flat = flat[: ANSWER_CHARS - 1] + "…"
    # Control characters (a terminal escape sequence in an answer) are shown, not obeyed.
    flat = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in flat)
    return f'"{flat}"'


__all__ = ["QualityResult", "RoundOutcome", "evaluate", "quality_judge"]
