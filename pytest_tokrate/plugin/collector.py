"""Declarative suites: ``tokrate_*.yaml`` files collected by pytest.

Each case of a suite becomes one pytest item per model (``case[model]``), selectable
with ``-k`` and markable. The file is read and validated by
:func:`~pytest_tokrate.quality.suite.load_suite` when collected; any problem (YAML syntax,
unknown key, bad check, unknown variable) is a collection error that names the file, the
line and the offending key, before any model runs. Cases run through the same
``Tokrate`` object as Python tests, so judges (quality bar, baseline gate) and reports
treat them alike.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_tokrate.backends.models import ModelSpec
from pytest_tokrate.core.result import FIGURES
from pytest_tokrate.errors import TokrateError
from pytest_tokrate.quality.suite import Case, SuiteError, load_suite


class SuiteFile(pytest.File):
    """A ``tokrate_*.yaml`` file: one item per case and model."""

    def collect(self) -> Iterator[pytest.Item]:
        from pytest_tokrate.plugin.keys import SESSION_KEY

        session = self.config.stash[SESSION_KEY]
        models = session.config.models
        try:
            cases = load_suite(self.path, self.nodeid)
        except SuiteError as exc:
            raise self.CollectError(f"tokrate suite is invalid:\n{exc}") from None
        for case in cases:
            for spec in models or (None,):
                name = f"{case.name}[{spec.name}]" if spec is not None else case.name
                yield SuiteItem.from_parent(self, name=name, case=case, spec=spec)


class ThresholdFailure(Exception):
    """A speed threshold of a YAML case was not met (message ready to show)."""


class SuiteItem(pytest.Item):
    """One case of a suite on one model."""

    def __init__(self, *, case: Case, spec: ModelSpec | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.spec = spec
        for mark in case.marks:
            self._add_mark(mark)

    def _add_mark(self, mark: Any) -> None:
        """Add a YAML case's mark. pytest warns about an unregistered mark where the
        decorator is made, which for a YAML case is inside pytest: the warning is made
        here instead, pointing at the case's line (``--strict-markers`` still fails)."""
        name, kwargs_ = (mark, None) if isinstance(mark, str) else next(iter(mark.items()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
            self.add_marker(getattr(pytest.mark, name)(**(kwargs_ or {})))
        known = {line.split(":")[0].split("(")[0].strip() for line in self.config.getini("markers")}
        if name not in known:
            warnings.warn_explicit(
                pytest.PytestUnknownMarkWarning(
                    f"unknown mark {name!r} in {self.path.name} case {self.case.name!r}: "
                    "register it in your pytest configuration (markers = ...) to avoid this "
                    "warning; see https://docs.pytest.org/en/stable/how-to/mark.html"
                ),
                pytest.PytestUnknownMarkWarning,
                filename=str(self.path),
                lineno=self.case.line,
            )

    def setup(self) -> None:
        """A case without a model errors (under CI) or skips at setup, as a Python test
        does through its ``tokrate`` fixture; the skip points at the case in the file."""
        from pytest_tokrate.plugin.keys import SESSION_KEY, no_model

        if self.spec is None:
            raise no_model(self.config.stash[SESSION_KEY])

    def runtest(self) -> None:
        from pytest_tokrate.backends.base import Request
        from pytest_tokrate.plugin.fixture import Tokrate
        from pytest_tokrate.plugin.keys import FIXTURES_KEY, SESSION_KEY
        from pytest_tokrate.quality.evaluate import QualityPlan

        session = self.config.stash[SESSION_KEY]
        assert self.spec is not None  # setup() ended a case without a model
        case = self.case
        cfg = session.config
        plan = QualityPlan.build(
            self.nodeid,
            [cfg.ini, None, cfg.cli],
            case.checks,
            case.min_pass_rate,
            call_source=f"{self.path.name} min_pass_rate",
        )
        fixture = Tokrate(session, self.spec, self.nodeid)
        self.stash.setdefault(FIXTURES_KEY, []).append(fixture)
        measurement = fixture.run(
            case.prompt,
            messages=case.messages,
            system=case.system,
            rounds=case.rounds,
            warmup=case.warmup,
            timeout=case.timeout,
            cache=case.cache,
            options=case.options,
            format=case.format,
            raw=case.raw,
        )
        if plan is not None:
            measurement.quality = plan.evaluate(
                measurement, Request(prompt=case.prompt, system=case.system)
            )
        failed = threshold_failures(measurement, case.thresholds)
        if failed:
            lines = [
                f"tokrate thresholds of {case.name!r} on {self.spec.name}:",
                *(f"  {f}" for f in failed),
            ]
            quality = measurement.quality
            if quality is not None and not quality.meets_minimum:
                lines.extend(quality.failure_lines(self.spec.name))
            raise ThresholdFailure("\n".join(lines))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, (ThresholdFailure, TokrateError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.case.line - 1, self.name


def threshold_failures(measurement: Any, thresholds: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Each threshold not met, as one line: figure, statistic, value, bound."""
    out = []
    for figure, bound in thresholds.items():
        stat = bound.get("stat", "median")
        summary = measurement.itl if figure == "itl" else measurement.summary(figure)
        unit = "s" if figure == "itl" else FIGURES[figure][1]
        value = getattr(summary, stat)
        if summary.n == 0 or value != value:
            out.append(f"{figure} {stat}: no value was measured (bound {bound})")
            continue
        if "min" in bound and value < bound["min"]:
            out.append(f"{figure} {stat} {value:.4g} {unit} is below the minimum {bound['min']:g}")
        if "max" in bound and value > bound["max"]:
            out.append(f"{figure} {stat} {value:.4g} {unit} is above the maximum {bound['max']:g}")
    return out


__all__ = ["SuiteFile", "SuiteItem", "ThresholdFailure", "threshold_failures"]
