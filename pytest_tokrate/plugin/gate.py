"""pytest glue of the baseline gate: the judge and its hooks (options:
:mod:`.gate_options`; writing baselines at session end, and xdist: :mod:`.baseline_update`).

Registered by ``plugin.pytest_configure`` as a plugin object. Heavy work (jsonschema,
statistics, file I/O) happens in :mod:`pytest_tokrate.gate.store` and
:mod:`pytest_tokrate.gate.rule`, imported when first needed so that start-up stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_tokrate.gate.settings import MARKER_KEYS, marker_gate_layer, resolve_gate
from pytest_tokrate.plugin.baseline_update import (
    BaselineWriter,
    XdistHooks,
    check_update_allowed,
)
from pytest_tokrate.plugin.gate_options import GateOptions

if TYPE_CHECKING:
    from pytest_tokrate.core.findings import Finding, JudgeContext
    from pytest_tokrate.core.result import Measurement
    from pytest_tokrate.gate.rule import GateSettings
    from pytest_tokrate.gate.store import Baseline
    from pytest_tokrate.machine.load import LoadTrace
    from pytest_tokrate.plugin.session import TokrateSession

PLUGIN_NAME = "tokrate-baselines"


def _load_figures(trace: LoadTrace | None, other_load: float) -> dict[str, float | None]:
    """How busy the machine was while a run measured, as recorded with the run."""
    if trace is None:
        return {"foreign_cpu_cores": None, "busy_share": None, "wait_share": None}
    mean, share, wait = trace.mean(), trace.share_over(other_load), trace.wait_share
    return {
        "foreign_cpu_cores": None if mean is None else round(mean, 3),
        "busy_share": None if share is None else round(share, 3),
        "wait_share": None if wait is None else round(wait, 3),
    }


class BaselineGate:
    """Compares each measurement with its baseline, or queues it under update mode."""

    def __init__(self, config: pytest.Config, session: TokrateSession) -> None:
        self.config = config
        self.session = session
        self.options = GateOptions.read(config)
        self.is_worker = hasattr(config, "workerinput")
        self.writer = BaselineWriter(config, self.options, session.config.models)
        self.loaded: dict[Path, Baseline | None] = {}
        #: Another model's baseline found for (directory, test without model, env): looked
        #: up once, not after every round of ``rounds="auto"`` (it reads the directory).
        self.references: dict[tuple[Path, str, str], Baseline | None] = {}
        self.load: dict[str, LoadTrace | None] = {}
        if self.options.update and not self.is_worker:
            check_update_allowed(self.options)

    # -- judging ----------------------------------------------------------------------

    def settings_for(self, marker: Mapping[str, Any], where: str) -> GateSettings:
        middle = [marker_gate_layer(marker, where)] if marker else []
        return resolve_gate([self.options.ini_layer, *middle, self.options.cli_layer])

    def _baseline(self, path: Path, test_id: str, env: str) -> Baseline | None:
        """The test's own baseline file; one that holds another test is an error."""
        if path not in self.loaded:
            from pytest_tokrate.gate.store import load_if_exists

            self.loaded[path] = load_if_exists(path, test_id, env)
        return self.loaded[path]

    def model_id(self, measurement: Measurement) -> str | None:
        """The model's id in the test id: the name given to --tokrate-model."""
        name = measurement.model.name
        names = [m.name for m in self.session.config.models]
        return name if name in names or not names else None

    def _reference(self, path: Path, test_id: str, env: str, model: str | None) -> Baseline | None:
        """The same test's baseline on the reference model, when this model has none."""
        from pytest_tokrate.gate.siblings import reference_baseline, without_model

        key = without_model(test_id, model)
        if key is None:
            return None
        where = (path.parent, key, env)
        if where not in self.references:
            self.references[where] = reference_baseline(path.parent, key, env)
        return self.references[where]

    def judge(self, measurement: Measurement, context: JudgeContext) -> list[Finding]:
        return [*self._judge(measurement, context), *self._cpu_wait(measurement, context)]

    def _cpu_wait(self, measurement: Measurement, context: JudgeContext) -> list[Finding]:
        """A warning when the embedded engine waited for a CPU much of the time."""
        from pytest_tokrate.core.findings import Finding
        from pytest_tokrate.machine.load import wait_hint

        trace = self.load.get(context.test_id)
        if measurement.model.backend != "embedded" or trace is None:
            return []
        threads = measurement.samples[0].extra.get("num_thread") if measurement.samples else None
        hint = wait_hint(trace.wait_share, threads if isinstance(threads, int) else None,
                         len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                         else (os.cpu_count() or 1))  # fmt: skip
        if hint is None:
            return []
        return [Finding("cpu-wait", "warn", f"tokrate: {context.test_id}: {hint}.")]

    def _judge(self, measurement: Measurement, context: JudgeContext) -> list[Finding]:
        from pytest_tokrate.core.findings import Finding
        from pytest_tokrate.gate import store as baselines
        from pytest_tokrate.gate.judge import Subject, judge_run

        test_id = measurement.test_id or context.test_id
        env = self.options.env_for(measurement.model.backend)
        path = baselines.baseline_path(self.options.root, test_id, env)
        fingerprint = baselines.measurement_environment(measurement)
        record = self._run_record(measurement, context)
        key = baselines.run_key(measurement)
        model = self.model_id(measurement)
        if self.options.update:
            self.writer.pending.queue(test_id, env, fingerprint, key, record, model)
            where = self.options.display(path)
            return [Finding("baseline-update", "info", f"tokrate: baseline queued: {where}")]
        settings = self.settings_for(context.marker, test_id)
        if settings.mode == "off":
            return []
        baseline, run, where = self._baseline_run(path, test_id, env, model, key)
        shown = test_id if key == "run 1" else f"{test_id} ({key})"
        auto = auto_rounds(measurement.settings)
        open_at_end = None
        if auto is not None and run is not None:
            settings, open_at_end = self._auto_verdict(settings, run, record, auto)
        findings = judge_run(
            test_id=shown,
            where=where,
            baseline=run,
            baseline_fingerprint=baseline.fingerprint if baseline is not None else None,
            current=record,
            current_fingerprint=fingerprint,
            settings=settings,
            recorded_at=baseline.data.get("recorded_at") if baseline is not None else None,
            busy=self.busy_reason(record, run),
            subject=Subject(
                shown, where, model, baseline.model if baseline else None,
                {"used": measurement.rounds, "auto": auto is not None,
                 "max": auto[1] if auto else measurement.rounds},
            ),
        )  # fmt: skip
        if open_at_end:
            findings = unsettled(findings, shown, open_at_end, auto, settings)
        return findings

    def _baseline_run(
        self, path: Path, test_id: str, env: str, model: str | None, key: str
    ) -> tuple[Baseline | None, dict[str, Any] | None, str]:
        """The test's baseline file (its own, else the reference model's), the run of it
        this measurement is compared with, and where it is, as shown to the user."""
        baseline = self._baseline(path, test_id, env) or self._reference(path, test_id, env, model)
        where = self.options.display(baseline.path if baseline is not None else path)
        if baseline is not None and baseline.path != path:
            where += f" (recorded on {baseline.model}; {model} has no baseline of its own)"
        run = baseline.runs.get(key) if baseline is not None else None
        if baseline is not None and run is None:
            where = f"{where} (it has no run {key!r}, only {', '.join(map(repr, baseline.runs))})"
        return baseline, run, where

    def _auto_verdict(
        self,
        settings: GateSettings,
        run: Mapping[str, Any],
        record: Mapping[str, Any],
        auto: tuple[int, int],
    ) -> tuple[GateSettings, str | None]:
        """With ``rounds="auto"``: the settings the final verdict is judged at (the
        per-look significance, so that repeated looks keep the error rate) and what was
        still open when the maximum was reached (``None`` when settled)."""
        from dataclasses import replace

        from pytest_tokrate.gate.sequential import look_alpha, settle

        least, most = auto
        look = settle(run, record, settings, least, most)
        judged = replace(
            settings,
            alpha=look_alpha(settings.alpha, least, most),
            quality_alpha=look_alpha(settings.quality_alpha, least, most),
        )
        return judged, None if look.settled else look.reason

    def settle(self, measurement: Measurement, marker: Mapping[str, Any]) -> bool:
        """``rounds="auto"``: whether the rounds measured so far settle the verdict
        against the baseline (or, with none, or when recording, give precise medians)."""
        from pytest_tokrate.gate import store as baselines
        from pytest_tokrate.gate.sequential import precise, settle

        test_id = measurement.test_id or ""
        env = self.options.env_for(measurement.model.backend)
        path = baselines.baseline_path(self.options.root, test_id, env)
        record = baselines.run_record(measurement)
        settings = self.settings_for(marker, test_id)
        least, most = auto_rounds(measurement.settings) or (3, measurement.rounds)
        key, model = baselines.run_key(measurement), self.model_id(measurement)
        run = None
        if not self.options.update and settings.mode != "off":
            run = self._baseline_run(path, test_id, env, model, key)[1]
        if run is None:
            return precise(record, settings.metrics, min_rounds=least)
        return settle(run, record, settings, least, most).settled

    def _run_record(self, measurement: Measurement, context: JudgeContext) -> dict[str, Any]:
        """What a baseline keeps of a run: its figures, the engine's threads, and how busy
        the machine was while it measured."""
        from pytest_tokrate.gate.store import run_record

        record = run_record(measurement)
        # Other processes' CPU use is only telling when the engine runs in this process.
        embedded = measurement.model.backend == "embedded"
        trace = self.load.get(context.test_id) if embedded else None
        threads = measurement.samples[0].extra.get("num_thread") if measurement.samples else None
        record["engine_threads"] = threads if isinstance(threads, int) else None
        record.update(_load_figures(trace, self.options.other_load))
        return record

    def busy_reason(
        self, record: Mapping[str, Any], baseline_run: Mapping[str, Any] | None
    ) -> str | None:
        """Why the speed figures cannot be trusted, or ``None`` (see
        :mod:`pytest_tokrate.machine.load`).

        Judged relative to the machine reference (both runs recorded it), a neighbour that
        slows the machine slows the reference too; what still spoils a comparison is this
        process being kept off the CPU, so the guard is its own run-queue wait. Otherwise
        it is the other processes' CPU use: the share of time over the limit is computed
        when a run is measured, with the limit of that session, so a baseline keeps the
        verdict of the session that recorded it.
        """
        from pytest_tokrate.machine.calibration import reference_rates
        from pytest_tokrate.machine.load import BUSY_SHARE, WAIT_SHARE

        if self.options.other_load == float("inf"):  # --tokrate-other-load=off
            return None
        runs = ((record, "while it ran"), (baseline_run, "while the baseline was recorded"))
        if baseline_run is not None and reference_rates(record) and reference_rates(baseline_run):
            for run, when in runs:
                wait = (run or {}).get("wait_share")
                if wait is not None and wait > WAIT_SHARE:
                    return (
                        f"this process waited for a CPU {wait:.0%} of the time {when} (other "
                        f"processes kept it off the cores; at most {WAIT_SHARE:.0%} is judged)"
                        + ("" if run is record else "; record it again on a quieter machine")
                    )
            return None
        for run, when in runs:
            share = (run or {}).get("busy_share")
            if share is None or share <= BUSY_SHARE:
                continue
            return (
                f"other processes used more than {self.options.other_load:g} CPU cores "
                f"(--tokrate-other-load) during {share:.0%} of the time {when}"
                + ("" if run is record else "; record it again on a quiet machine")
            )
        return None

    # -- hooks ------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        """Innermost around the test body: how busy the machine was while it measured
        (the judges run after this, in ``plugin.pytest_runtest_call``)."""
        ours = type(item).__module__.startswith("pytest_tokrate.")  # YAML suite cases
        if not ours and "tokrate" not in getattr(item, "fixturenames", ()):
            return (yield)
        from pytest_tokrate.machine.load import LoadSampler

        sampler = LoadSampler()
        sampler.start()
        try:
            return (yield)
        finally:
            self.load[item.nodeid] = sampler.stop()

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        if any("tokrate" in getattr(item, "fixturenames", ()) for item in items):
            from pytest_tokrate.plugin.fixture import EXTRA_MARKER_KEYS

            EXTRA_MARKER_KEYS.update(MARKER_KEYS)

    # What update mode needs to know of the run: which tests exist, which failed, and
    # whether the run saw every test (else unused baselines are kept).

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.writer.pending.collect_errors += 1

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.writer.pending.deselected += len(items)
        self.writer.pending.known_ids.update(item.nodeid for item in items)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.writer.pending.known_ids.update(item.nodeid for item in session.items)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.options.update and report.failed:
            self.writer.pending.failed.add(report.nodeid)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.options.update:
            self.writer.finish(session, int(exitstatus))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        lines, errors = self.writer.lines, self.writer.errors
        if not (lines or errors):
            return
        terminalreporter.write_sep("=", "tokrate: baselines")
        for line in lines:
            terminalreporter.write_line(line)
        for error in errors:
            terminalreporter.write_line(f"ERROR: {error}", red=True)


def auto_rounds(settings: Mapping[str, Any]) -> tuple[int, int] | None:
    """``(min, max)`` rounds of a measurement taken with ``rounds="auto"``, else ``None``."""
    if not settings.get("auto"):
        return None
    return int(settings["min_rounds"]), int(settings["max_rounds"])


def unsettled(
    findings: list[Finding],
    test_id: str,
    reason: str,
    auto: tuple[int, int] | None,
    settings: GateSettings,
) -> list[Finding]:
    """A verdict ``rounds="auto"`` left open at its maximum: said (a warning, or a
    failure with --tokrate-on-unsettled=fail), and the gate record reads "not settled"
    unless a regression was found anyway."""
    from pytest_tokrate.core.findings import Finding

    most = auto[1] if auto else 0
    out = []
    for f in findings:
        if f.kind == "gate" and f.data["gate"]["verdict"] in ("ok", "stale"):
            f.data["gate"].update(verdict="not settled", why=reason)
        out.append(f)
    severity = "fail" if settings.on_unsettled == "fail" and settings.mode == "enforce" else "warn"
    message = (
        f"tokrate: the verdict of {test_id} was not settled in {most} rounds "
        f"(--tokrate-max-rounds): {reason}. Raise --tokrate-max-rounds, or judge it with a "
        "fixed --tokrate-rounds."
    )
    out.insert(len(out) - 1, Finding("not-settled", severity, message, {"reason": reason}))
    return out


def configure(config: pytest.Config, session: TokrateSession) -> BaselineGate:
    """Create the gate, register its hooks and its judge."""
    gate = BaselineGate(config, session)
    config.pluginmanager.register(gate, PLUGIN_NAME)
    session.settle = gate.settle
    if config.pluginmanager.hasplugin("xdist") and not gate.is_worker:
        config.pluginmanager.register(XdistHooks(gate.writer.pending), PLUGIN_NAME + "-xdist")
    session.judges.append(gate.judge)
    return gate


__all__ = ["BaselineGate", "configure"]
