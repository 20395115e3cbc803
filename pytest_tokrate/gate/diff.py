"""Two versions of a baseline file, run by run, judged as the gate would judge the newer
against the older (``tokrate baselines diff``). Pure.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pytest_tokrate.gate.changes import (
    ConfigChange,
    configuration_changes,
    environment_changes,
    unjudged,
)
from pytest_tokrate.gate.rule import Comparison, GateSettings, compare_runs
from pytest_tokrate.gate.verdict import mark_unjudged
from pytest_tokrate.machine.fingerprint import Change

if TYPE_CHECKING:
    from pytest_tokrate.gate.store import Baseline


@dataclass(frozen=True)
class RunDiff:
    """One run of a baseline file against the same run in another version of the file."""

    label: str
    #: ``added`` or ``removed`` (then nothing is compared), or ``compared``.
    status: str
    #: Environment differences: the two runs are not comparable; empty when they are.
    changes: list[Change]
    comparisons: list[Comparison]
    #: Configuration differences (judged, named).
    config: list[ConfigChange] = field(default_factory=list)

    @property
    def regressions(self) -> int:
        """Regressions that count: none when the runs are not comparable."""
        if self.changes:
            return 0
        return sum(c.verdict == "regression" for c in self.comparisons)


def diff_runs(old: Baseline, new: Baseline, settings: GateSettings) -> Iterator[RunDiff]:
    """Each run of ``old`` and ``new``, by label, judged as the gate would judge ``new``
    against ``old`` (one at a time, so a caller can print as they come)."""
    env = environment_changes(old.fingerprint, new.fingerprint)
    for label in sorted(set(old.runs) | set(new.runs)):
        if label not in old.runs or label not in new.runs:
            yield RunDiff(label, "added" if label in new.runs else "removed", [], [])
            continue
        before, after = old.runs[label], new.runs[label]
        config = configuration_changes(
            old.fingerprint, new.fingerprint, before["definition"], after["definition"]
        )
        comparisons = mark_unjudged(compare_runs(before, after, settings), unjudged(config))
        yield RunDiff(label, "compared", env, comparisons, config)


__all__ = ["RunDiff", "diff_runs"]
