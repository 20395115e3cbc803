"""Each test's outcome, and the outcome counts exactly as pytest counts them.

pytest's summary line counts *reports*, not tests: each report goes to the category that
``pytest_report_teststatus`` names (so ``passed``, ``failed``, ``skipped``, ``xfailed``,
``xpassed``, ``error``, and what other plugins add), a setup or teardown that fails is
an ``error``, and a collection error is one too. A test that fails and then errors in
teardown counts once as failed and once as error. The reports count the same way, so
their counts equal pytest's line. Under xdist the controller receives every worker's
reports, so the controller alone keeps this tally.

Each test also gets one outcome of its own (the worst of its phases) for the report's
``tests`` list.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_tokrate.plugin.keys import INFRA_PREFIX

#: Worse outcomes later: a test's own outcome is the worst of its phases.
_RANK = ("passed", "skipped", "xfailed", "xpassed", "failed", "error")


def phase_outcome(report: pytest.TestReport) -> str | None:
    """The outcome one phase gives its test (None: a setup or teardown that passed)."""
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    if report.when != "call":
        if report.failed:
            return "error"
        return "skipped" if report.skipped else None
    if report.failed:
        longrepr = report.longrepr
        if isinstance(longrepr, str) and longrepr.startswith(INFRA_PREFIX):
            return "error"
        return "failed"
    return "skipped" if report.skipped else "passed"


class OutcomeTally:
    """The tests of a run with their outcomes and durations; pytest's counts."""

    def __init__(self) -> None:
        self.tests: dict[str, dict[str, Any]] = {}
        self.counts: dict[str, int] = {}

    def add_report(self, report: pytest.TestReport, category: str) -> None:
        """Record one phase's report; ``category`` is what pytest_report_teststatus said."""
        if category and getattr(report, "count_towards_summary", True):
            self.counts[category] = self.counts.get(category, 0) + 1
        entry = self.tests.setdefault(report.nodeid, {"outcome": "passed", "duration_s": 0.0})
        entry["duration_s"] += float(report.duration)
        outcome = phase_outcome(report)
        if outcome is None:
            return
        if report.when == "call" or _RANK.index(outcome) > _RANK.index(entry["outcome"]):
            if report.when == "teardown" and entry["outcome"] in ("failed", "error"):
                return  # the test already failed: a teardown error adds to the counts only
            entry["outcome"] = outcome

    def add_collection_error(self) -> None:
        self.counts["error"] = self.counts.get("error", 0) + 1


def category(config: pytest.Config, report: pytest.TestReport) -> str:
    """The category pytest's terminal files a report under ('' for none)."""
    status = config.hook.pytest_report_teststatus(report=report, config=config)
    return str(status[0]) if status else ""


__all__ = ["OutcomeTally", "category", "phase_outcome"]
