"""pytest glue of sweeps and reports: level options and parametrization, JUnit properties,
JSON report, Markdown summary (and ``$GITHUB_STEP_SUMMARY``), plots, xdist merging, and
the terminal's tables (speed and token yardstick, the model trade-off, sweeps, the gate's
verdicts), all drawn from the merged data so that an xdist run shows what a serial one
shows. Every test's outcome is tallied as pytest counts it (``outcomes.py``).

Registered by ``plugin.pytest_configure`` as a plugin object. Start-up only parses option
strings and checks paths; the report, plot and sweep modules load when first needed.
Nothing here raises from the terminal summary: a report that cannot be written is an
error line there, and turns a passing exit status into 1 (tests failed).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_tokrate.core.levels import SWEEP_MARKER_KEYS, LevelLayer, parse_levels, resolve_levels
from pytest_tokrate.errors import TokrateError, UsageError
from pytest_tokrate.plugin.outcomes import OutcomeTally, category
from pytest_tokrate.plugin.report_paths import ReportSettings, option_path

if TYPE_CHECKING:
    from pytest_tokrate.plugin.fixture import Tokrate
    from pytest_tokrate.plugin.session import TokrateSession
    from pytest_tokrate.quality.tradeoff import TradeoffRow

PLUGIN_NAME = "tokrate-reports"
WORKER_KEY = "tokrate_report"
STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"

#: Test arguments parametrized with one level each, and the dimension they take.
LEVEL_ARGS = {
    "tokrate_concurrency": ("concurrency", "c"),
    "tokrate_gen_length": ("gen_lengths", "n"),
    "tokrate_prompt_length": ("prompt_lengths", "p"),
}
_LEVEL_OPTIONS = {
    "concurrency": "concurrency",
    "gen-lengths": "gen_lengths",
    "prompt-lengths": "prompt_lengths",
}


def parse_cli(name: str, value: str) -> object:
    """Parsers of this module's valued options (used by ``plugin._OPTIONS``)."""
    if name in _LEVEL_OPTIONS:
        return parse_levels(f"--tokrate-{name}", value, _LEVEL_OPTIONS[name])
    text = str(value).strip()
    if not text:
        raise UsageError(f"--tokrate-{name}: empty path {value!r}: give a file or directory.")
    return text


def _ini_levels(config: pytest.Config) -> LevelLayer:
    values = {}
    for dim in _LEVEL_OPTIONS.values():
        raw = config.getini(f"tokrate_{dim}")
        text = str(raw).strip() if raw else ""
        if text:
            values[dim] = text
    return LevelLayer.from_mapping("ini", values)


def configure(config: pytest.Config, session: TokrateSession) -> None:
    """Validate sweep and report options, then register :class:`ReportPlugin`."""
    cli = LevelLayer.from_mapping(
        "command line",
        {dim: config.getoption(f"tokrate_{dim}") for dim in _LEVEL_OPTIONS.values()},
    )
    session.sweep_layers = [_ini_levels(config).validate(), cli.validate()]
    settings = ReportSettings(
        json_path=option_path(config, "report-json", "tokrate_report_json", False, parse_cli),
        md_path=option_path(config, "report-md", "tokrate_report_md", False, parse_cli),
        plots_dir=option_path(config, "plots", "tokrate_plots", True, parse_cli),
    )
    if settings.plots_dir is not None:
        from pytest_tokrate.reports.plots import require_matplotlib

        require_matplotlib()
    config.pluginmanager.register(ReportPlugin(config, session, settings), PLUGIN_NAME)


def layers_for_item(node: pytest.Item, marker_kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """The marker's sweep layer and the item's own parametrized level (either may be None)."""
    sweep_kwargs = {k: v for k, v in marker_kwargs.items() if k in SWEEP_MARKER_KEYS}
    marker = (
        LevelLayer.from_mapping(f"{node.nodeid} @pytest.mark.tokrate", sweep_kwargs)
        if sweep_kwargs
        else None
    )
    callspec = getattr(node, "callspec", None)
    params = dict(callspec.params) if callspec is not None else {}
    own = {LEVEL_ARGS[k][0]: v for k, v in params.items() if k in LEVEL_ARGS and v is not None}
    item = LevelLayer.from_mapping(f"{node.nodeid} level", own) if own else None
    return marker, item


def _uses_tokrate(item: pytest.Item) -> bool:
    """A test that asks for the ``tokrate`` fixture, or a case of a YAML suite."""
    if "tokrate" in getattr(item, "fixturenames", ()):
        return True
    # No suite item exists unless the collector module was loaded: no import needed.
    collector = sys.modules.get("pytest_tokrate.plugin.collector")
    return collector is not None and isinstance(item, collector.SuiteItem)


class ReportPlugin:
    """Collects outcomes and results during the run; writes the reports at its end."""

    def __init__(
        self, config: pytest.Config, session: TokrateSession, settings: ReportSettings
    ) -> None:
        self.config = config
        self.session = session
        self.settings = settings
        self.tokrate_ids: set[str] = set()
        self.tally = OutcomeTally()
        #: An xdist worker: the controller receives its reports and keeps the tally.
        self.worker = getattr(config, "workerinput", None) is not None
        self.worker_fragments: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self.errors: list[str] = []
        self.merged: dict[str, Any] | None = None
        self.tradeoff: list[TradeoffRow] = []
        #: The terminal's tables, ``(title, lines)``, drawn at the end of the session.
        self.sections: list[tuple[str, list[str]]] = []

    # -- collection -------------------------------------------------------------------

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        if any("tokrate" in getattr(item, "fixturenames", ()) for item in items):
            from pytest_tokrate.plugin.fixture import EXTRA_MARKER_KEYS

            EXTRA_MARKER_KEYS.update(SWEEP_MARKER_KEYS)

    @pytest.hookimpl(trylast=True)  # after the model parametrization: ids read model-c8
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        wanted = [arg for arg in LEVEL_ARGS if arg in metafunc.fixturenames]
        if not wanted:
            return
        from pytest_tokrate.plugin.markers import marker_kwargs

        ini, cli = self.session.sweep_layers
        try:
            kwargs = marker_kwargs(metafunc.definition, metafunc.definition.nodeid) or {}
            sweep_kwargs = {k: v for k, v in kwargs.items() if k in SWEEP_MARKER_KEYS}
            where = f"{metafunc.definition.nodeid} @pytest.mark.tokrate"
            levels = resolve_levels([ini, LevelLayer.from_mapping(where, sweep_kwargs), cli])
        except UsageError as exc:  # from None: pytest would print the message twice
            raise pytest.fail.Exception(str(exc), pytrace=False) from None
        for arg in wanted:
            dim, short = LEVEL_ARGS[arg]
            values: tuple[int | None, ...] = getattr(levels, dim)
            ids = [f"{short}{v}" if v is not None else f"{short}-default" for v in values]
            metafunc.parametrize(arg, list(values), ids=ids)

    # -- per test -------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        if _uses_tokrate(item):
            self.tokrate_ids.add(item.nodeid)
            if call.when == "call":
                self._record_properties(item)
        return (yield)

    def _record_properties(self, item: pytest.Item) -> None:
        from pytest_tokrate.plugin.keys import FIXTURES_KEY

        fixtures: list[Tokrate] = item.stash.get(FIXTURES_KEY, [])
        measurements = [m for f in fixtures for m in f.measurements]
        sweeps = [s for f in fixtures for s in getattr(f, "sweeps", [])]
        if not (measurements or sweeps):
            return
        from pytest_tokrate.reports.document import junit_properties

        item.user_properties.extend(junit_properties(measurements, sweeps))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not self.worker:
            self.tally.add_report(report, category(self.config, report))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed and not self.worker:
            self.tally.add_collection_error()

    # -- end of the run -------------------------------------------------------------------

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", None) or {}
        if WORKER_KEY in output:
            self.worker_fragments.append(json.loads(output[WORKER_KEY]))

    def _fragment(self) -> dict[str, Any]:
        from pytest_tokrate.reports.document import fragment

        return fragment(
            self.session.results,
            self.session.sweeps,
            self.tally.tests,
            tokrate_ids=self.tokrate_ids,
            outcomes=self.tally.counts,
            skipped_no_model=self.session.skipped_no_model,
        )

    def _wanted(self, merged: dict[str, Any]) -> tuple[bool, bool]:
        """(write the requested files, write the GitHub step summary)."""
        anything = bool(merged["tokrate_ids"] or merged["measurements"] or merged["sweeps"])
        step = bool(os.environ.get(STEP_SUMMARY_ENV)) and anything
        return self.settings.any_file, step

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        local = bool(self.session.results or self.session.sweeps or self.tokrate_ids)
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:
            if local:
                workeroutput[WORKER_KEY] = json.dumps(self._fragment())
            return
        if not (local or self.worker_fragments or self.settings.any_file):
            return  # a run without tokrate tests and without reports asked for: no cost
        try:
            from pytest_tokrate.reports.document import merge_fragments

            fragments = [self._fragment(), *self.worker_fragments]
            self.merged = merge_fragments(fragments, order=list(self.tally.tests))
            self._tables(self.merged)
            files, step = self._wanted(self.merged)
            if files or step:
                self._write(self.merged, step)
        except TokrateError as exc:
            self.errors.append(str(exc))
        except Exception as exc:  # never let a report break the run's outcome silently
            self.errors.append(f"writing the tokrate reports failed: {type(exc).__name__}: {exc}")
        if self.errors and session.exitstatus in (
            pytest.ExitCode.OK,
            pytest.ExitCode.NO_TESTS_COLLECTED,
        ):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _write(self, merged: dict[str, Any], step: bool) -> None:
        from pytest_tokrate.machine.telemetry import default_monitor
        from pytest_tokrate.reports.document import (
            build_report,
            validate_report,
            write_json,
            write_text,
        )
        from pytest_tokrate.reports.markdown import markdown

        report = build_report(merged, default_monitor().status().to_dict(), tradeoff=self.tradeoff)
        s = self.settings
        plot_files: list[tuple[str, Path]] = []
        if s.plots_dir is not None:
            from pytest_tokrate.reports.plots import write_plots

            plotted = write_plots(report, s.plots_dir)
            plot_files = plotted.files
            report["plots"] = [str(p) for _, p in plot_files]
            names = ", ".join(p.name for _, p in plot_files) or "none"
            self.lines.append(f"plots in {s.plots_dir}: {names}")
            self.lines += [f"  no plot: {why}" for why in plotted.skipped]
        try:
            validate_report(report)
        finally:
            if s.json_path is not None:
                write_json(s.json_path, report)
                self.lines.append(f"JSON report: {s.json_path}")
        if s.md_path is not None:
            links = [(t, os.path.relpath(p, s.md_path.parent)) for t, p in plot_files]
            write_text(s.md_path, markdown(report, links))
            self.lines.append(f"Markdown summary: {s.md_path}")
        if step:
            cwd = Path(self.config.invocation_params.dir)
            links = [(t, _display(p, cwd)) for t, p in plot_files]
            target = Path(os.environ[STEP_SUMMARY_ENV])
            try:
                with target.open("a", encoding="utf-8") as fh:
                    fh.write(markdown(report, links, embed_images=False) + "\n")
            except OSError as exc:
                raise TokrateError(
                    f"cannot append the summary to ${STEP_SUMMARY_ENV}={target}: "
                    f"{exc.strerror or exc}"
                ) from None
            self.lines.append(f"summary appended to ${STEP_SUMMARY_ENV}")

    def _tables(self, merged: dict[str, Any]) -> None:
        """The terminal's tables and the model trade-off, drawn from the merged data, so
        that an xdist controller shows what a serial run shows."""
        try:
            from pytest_tokrate.core.rebuild import measurement_from_dict
            from pytest_tokrate.quality.tradeoff import compare_models
            from pytest_tokrate.reports.terminal import sweep_terminal_lines, terminal_lines
            from pytest_tokrate.reports.tradeoff import tradeoff_lines

            rebuilt = [measurement_from_dict(m) for m in merged["measurements"]]
            self.tradeoff = compare_models(rebuilt, [s.name for s in self.session.config.models])
            sections = [
                ("tokrate: speed per test and model", terminal_lines(rebuilt)),
                ("tokrate: trade-off between models", tradeoff_lines(self.tradeoff)),
                ("tokrate: sweeps", sweep_terminal_lines(merged["sweeps"])),
            ]
            self.sections = [(title, lines) for title, lines in sections if lines]
        except Exception as exc:  # the tables must never cost the reports
            self.errors.append(f"cannot draw the tokrate tables: {type(exc).__name__}: {exc}")

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for title, lines in self.sections:
            terminalreporter.write_sep("=", title)
            for line in lines:
                terminalreporter.write_line(line)
        skipped = (self.merged or {}).get("skipped_no_model", 0)
        if skipped:
            from pytest_tokrate.plugin.keys import no_model_message

            message = no_model_message(self.session.config.backend)
            terminalreporter.write_line(f"tokrate: {skipped} test(s) skipped: {message}.")
        self._gate_summary(terminalreporter)
        if self.lines or self.errors:
            terminalreporter.write_sep("=", "tokrate: reports")
            for line in self.lines:
                terminalreporter.write_line(line)
            for error in self.errors:
                terminalreporter.write_line(f"ERROR: {error}", red=True)

    def _gate_summary(self, terminalreporter: Any) -> None:
        """The gate's verdicts, from the merged data so that xdist workers' runs count;
        ``pytest -q`` shrinks them to one line."""
        try:
            from pytest_tokrate.reports.gate import collect, gate_lines

            quiet = self.config.get_verbosity() < 0
            verdicts = collect((self.merged or {}).get("measurements") or [])
            lines = gate_lines(verdicts, quiet=quiet)
        except Exception as exc:  # the summary must never raise
            self.errors.append(f"cannot show the gate's verdicts: {type(exc).__name__}: {exc}")
            return
        if lines and not quiet:  # quiet: the summary line alone, it names the gate itself
            terminalreporter.write_sep("=", "tokrate: baselines and gate")
        for line in lines:
            terminalreporter.write_line(line)


def _display(path: Path, cwd: Path) -> str:
    try:
        return str(path.relative_to(cwd))
    except ValueError:
        return str(path)


__all__ = ["PLUGIN_NAME", "ReportPlugin", "configure", "layers_for_item", "parse_cli"]
