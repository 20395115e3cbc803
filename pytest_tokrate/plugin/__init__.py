"""pytest glue: the hooks, the ``tokrate`` fixture, outcomes
(the options: :mod:`.options`; the session settings read from them:
:mod:`.session_config`).

Only hooks live here; the work is done by the pure modules next to it.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_tokrate.errors import InfrastructureError, TokrateError
from pytest_tokrate.plugin.keys import FIXTURES_KEY, INFRA_PREFIX, SESSION_KEY, no_model
from pytest_tokrate.plugin.options import add_options
from pytest_tokrate.plugin.session import TokrateSession
from pytest_tokrate.plugin.session_config import build_config

if TYPE_CHECKING:
    # The fixture object, models and verdicts load when a test uses tokrate, so that
    # pytest start-up with the plugin installed but unused stays cheap.
    from pytest_tokrate.backends.models import ModelSpec
    from pytest_tokrate.core.findings import Finding
    from pytest_tokrate.plugin.fixture import Tokrate


def _quality_judge(measurement: Any, context: Any) -> list[Any]:
    if measurement.quality is None:
        return []
    from pytest_tokrate.quality.evaluate import quality_judge

    return quality_judge(measurement, context)


def _empty_answer_judge(measurement: Any, context: Any) -> list[Any]:
    from pytest_tokrate.core.sanity import empty_answer_judge

    return empty_answer_judge(measurement, context)


def _cache_judge(measurement: Any, context: Any) -> list[Any]:
    from pytest_tokrate.core.cache import cache_judge

    return cache_judge(measurement, context)


def pytest_collect_file(file_path: Any, parent: pytest.Collector) -> pytest.Collector | None:
    """Collect declarative suites: ``tokrate_*.yaml`` files (see suite.py)."""
    if file_path.suffix in (".yaml", ".yml") and file_path.name.startswith("tokrate_"):
        from pytest_tokrate.plugin.collector import SuiteFile

        suite: pytest.Collector = SuiteFile.from_parent(parent, path=file_path)
        return suite
    return None


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    """Said before the first test: a baseline update measures more rounds than a run;
    which server each xdist worker of a fleet measures against."""
    from pytest_tokrate.plugin.progress import update_header
    from pytest_tokrate.plugin.session_config import fleet_header

    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        return None
    workers = getattr(config.option, "numprocesses", None)
    lines = [
        update_header(session.config.extra.get("baseline_rounds")),
        fleet_header(session.config.hosts, workers if isinstance(workers, int) else 0),
    ]
    return [line for line in lines if line] or None


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "tokrate(rounds=, warmup=, timeout=, cache=, options={...}, checks=[...], "
        "min_pass_rate=, tolerance=, gate=, gate_metrics=, min_decode_tokens=, "
        "**generation_options): "
        "per-test pytest-tokrate settings (command line > marker > ini > default).",
    )
    try:
        session_config = build_config(config)
    except TokrateError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[SESSION_KEY] = TokrateSession(session_config)
    config.stash[SESSION_KEY].judges.append(_quality_judge)
    config.stash[SESSION_KEY].judges.append(_empty_answer_judge)
    config.stash[SESSION_KEY].judges.append(_cache_judge)
    from pytest_tokrate.plugin.progress import progress_for

    config.stash[SESSION_KEY].progress = lambda test_id, model, label, rounds: progress_for(
        config, test_id, model, label, rounds
    )
    from pytest_tokrate.plugin.gate import configure as configure_baselines

    try:
        configure_baselines(config, config.stash[SESSION_KEY])
    except TokrateError as exc:
        raise pytest.UsageError(str(exc)) from None
    from pytest_tokrate.plugin.reports import configure as configure_reports

    try:
        configure_reports(config, config.stash[SESSION_KEY])
    except TokrateError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        session.close()


def _session(config: pytest.Config) -> TokrateSession:
    return config.stash[SESSION_KEY]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "tokrate_model" not in metafunc.fixturenames:
        return
    models = _session(metafunc.config).config.models
    if not models:
        return
    metafunc.parametrize("tokrate_model", list(models), ids=[m.name for m in models])


@pytest.fixture
def tokrate_model() -> ModelSpec | None:
    """The model this test runs against (parametrized from --tokrate-model)."""
    return None


@pytest.fixture
def tokrate(request: pytest.FixtureRequest, tokrate_model: ModelSpec | None) -> Tokrate:
    """Measure prompts on the model under test: ``r = tokrate.run("Hi", rounds=10)``."""
    from pytest_tokrate.plugin.fixture import Tokrate, marker_layer
    from pytest_tokrate.plugin.markers import marker_kwargs

    session = _session(request.config)
    if tokrate_model is None:
        raise no_model(session)
    node = request.node
    layer = None
    try:
        # Stacked markers, positional arguments and bad values error before the test body.
        kwargs = marker_kwargs(node, node.nodeid)
        if kwargs is not None:
            layer = marker_layer(kwargs, node.nodeid)
            from pytest_tokrate.core.settings import resolve

            resolve([layer])
    except TokrateError as exc:
        # ``from None``: pytest would otherwise print the message twice, chained.
        raise pytest.fail.Exception(str(exc), pytrace=False) from None
    fixture = Tokrate(session, tokrate_model, node.nodeid, layer)
    from pytest_tokrate.plugin.reports import layers_for_item

    fixture.level_layers = layers_for_item(node, kwargs or {})
    node.stash.setdefault(FIXTURES_KEY, []).append(fixture)
    return fixture


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """After the test body: judge its measurements and fail the item on a verdict."""
    result = yield
    fixtures = item.stash.get(FIXTURES_KEY, [])
    if not fixtures:
        return result
    from pytest_tokrate.core.findings import JudgeContext, failure_message, failures
    from pytest_tokrate.plugin.markers import marker_kwargs

    session = _session(item.config)
    # Checked at set-up (the fixture), so no error is left here.
    context = JudgeContext(test_id=item.nodeid, marker=marker_kwargs(item, item.nodeid) or {})
    findings: list[Finding] = []
    for fixture in fixtures:
        for measurement in fixture.measurements:
            try:
                findings.extend(session.judge(measurement, context))
            except TokrateError as exc:
                raise pytest.fail.Exception(str(exc), pytrace=False) from None
    for finding in findings:
        if finding.severity == "warn":
            item.warn(TokrateWarning(finding.message))
    if failures(findings):
        pytest.fail(failure_message(findings), pytrace=False)
    skips = [f.message for f in findings if f.severity == "skip"]
    if skips:
        pytest.skip("\n\n".join(skips))
    return result


class TokrateWarning(UserWarning):
    """A non-fatal tokrate verdict (no baseline, baseline not comparable, ...)."""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    excinfo = call.excinfo
    if excinfo is not None and isinstance(excinfo.value, TokrateError):
        where = _location(item, excinfo)
        prefix = INFRA_PREFIX if isinstance(excinfo.value, InfrastructureError) else ""
        report.longrepr = f"{prefix}{excinfo.value}{where}"
    return report


def _location(item: pytest.Item, excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    path = getattr(item, "path", None)
    for entry in reversed(excinfo.traceback):
        if path is not None and str(entry.path) == str(path):
            return f"\n  (at {os.path.basename(str(path))}:{entry.lineno + 1})"
    return ""


def pytest_report_teststatus(
    report: pytest.TestReport, config: pytest.Config
) -> tuple[str, str, str] | None:
    if (
        report.when == "call"
        and report.failed
        and isinstance(report.longrepr, str)
        and report.longrepr.startswith(INFRA_PREFIX)
    ):
        return "error", "E", "ERROR"
    return None
