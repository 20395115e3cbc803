"""pytest glue: options, the ``tokrate`` fixture, outcomes and the terminal report.

Only hooks live here; the work is done by the pure modules next to it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Generator
from typing import Any

import pytest

from .config import (
    BACKENDS,
    CACHE_MODES,
    DEFAULT_NUM_CTX,
    DEFAULT_NUM_PREDICT,
    DEFAULT_ROUNDS,
    DEFAULT_TIMEOUT_S,
    DEFAULT_WARMUP,
    MISSING_MODEL_MODES,
    Layer,
    parse_choice,
    parse_float,
    parse_int,
    parse_option_lines,
    parse_option_pair,
)
from .errors import InfrastructureError, TokrateError, UsageError
from .fixtures import Tokrate, marker_layer
from .models import ModelSpec
from .session import (
    SessionConfig,
    TokrateSession,
    build_models,
    parse_backend,
    parse_missing_model,
)
from .verdict import Finding, JudgeContext, failure_message, failures

SESSION_KEY = pytest.StashKey[TokrateSession]()
FIXTURES_KEY = pytest.StashKey[list[Tokrate]]()
INFRA_PREFIX = "tokrate infrastructure error: "
NO_MODEL_MESSAGE = (
    "no model chosen for tokrate tests: pass --tokrate-model=smollm2 (embedded, no server) "
    "or a server model such as --tokrate-model=gemma2:2b, or set tokrate_model in "
    "[tool.pytest.ini_options]"
)


def _argparse_type(parser: Callable[[str], object]) -> Callable[[str], object]:
    """Wrap one of our parsers so argparse shows its message (value and fix)."""

    def parse(text: str) -> object:
        try:
            return parser(text)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = getattr(parser, "__name__", "value")
    return parse


# name, ini name, help, type, cli type, default shown in help
_OPTIONS: list[tuple[str, str, str, Callable[[str], object] | None]] = [
    ("model", "tokrate_model",
     "Model(s) to measure, comma-separated: smollm2, smollm2-q2_k, a .gguf path, or a server "
     "model such as gemma2:2b. Default: none (tokrate tests are skipped, or error under CI)",
     None),
    ("backend", "tokrate_backend",
     "Backend: auto (embedded for smollm2 and .gguf paths, else ollama), embedded, ollama, "
     "openai. Default: auto",
     lambda v: parse_choice("--tokrate-backend", v, BACKENDS)),
    ("host", "tokrate_host",
     "Server address, Ollama rules ([scheme://]host[:port][/path]). "
     "Default: $OLLAMA_HOST, else http://127.0.0.1:11434",
     None),
    ("rounds", "tokrate_rounds",
     f"Measured rounds per prompt. Default: {DEFAULT_ROUNDS}",
     lambda v: parse_int("--tokrate-rounds", v, minimum=1)),
    ("warmup", "tokrate_warmup",
     f"Warm-up rounds before measuring (never counted). Default: {DEFAULT_WARMUP}",
     lambda v: parse_int("--tokrate-warmup", v, minimum=0)),
    ("num-predict", "tokrate_num_predict",
     f"Generation length in tokens (num_predict). Default: {DEFAULT_NUM_PREDICT}",
     lambda v: parse_option_pair(f"num_predict={v}", "--tokrate-num-predict")[1]),
    ("num-ctx", "tokrate_num_ctx",
     f"Context size in tokens (num_ctx). Default: {DEFAULT_NUM_CTX}",
     lambda v: parse_option_pair(f"num_ctx={v}", "--tokrate-num-ctx")[1]),
    ("timeout", "tokrate_timeout",
     f"Per-request timeout in seconds. Default: {DEFAULT_TIMEOUT_S:g}",
     lambda v: parse_float("--tokrate-timeout", v, minimum=0.001)),
    ("cache", "tokrate_cache",
     "Prompt cache in measured rounds: bust (defeat it, honest prefill figures) or allow. "
     "Default: bust",
     lambda v: parse_choice("--tokrate-cache", v, CACHE_MODES)),
    ("missing-model", "tokrate_missing_model",
     "What a tokrate test does when no model is chosen: skip, error, or auto (error when "
     "the CI environment variable is set, else skip). Default: auto",
     lambda v: parse_choice("--tokrate-missing-model", v, MISSING_MODEL_MODES)),
    ("api-key-env", "tokrate_api_key_env",
     "Name of the environment variable holding the API key of an OpenAI-compatible "
     "server (the key itself is never recorded). Default: none",
     None),
]  # fmt: skip


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tokrate", "LLM speed and quality (pytest-tokrate)")
    for name, ini, help_text, type_ in _OPTIONS:
        kwargs: dict[str, Any] = {"dest": ini, "default": None, "help": help_text}
        if type_ is not None:
            kwargs["type"] = _argparse_type(type_)
        group.addoption(f"--tokrate-{name}", **kwargs)
        parser.addini(ini, help_text, default=None)
    group.addoption(
        "--tokrate-option",
        dest="tokrate_options",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        type=_argparse_type(parse_option_pair),
        help="Generation option passed to the model, repeatable (e.g. num_thread=2, "
        "temperature=0.7, stop='[\"\\n\"]'). Default: none",
    )
    parser.addini(
        "tokrate_options",
        "Generation options, one KEY=VALUE per line. Default: none",
        type="linelist",
        default=[],
    )


def _ini(config: pytest.Config, name: str) -> str | None:
    value = config.getini(name)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _build_config(config: pytest.Config) -> SessionConfig:
    get = config.getoption
    backend_cli = get("tokrate_backend")
    backend_ini = _ini(config, "tokrate_backend")
    backend = backend_cli or (
        parse_backend(backend_ini, "ini tokrate_backend") if backend_ini else "auto"
    )
    model_cli = get("tokrate_model")
    model_ini = _ini(config, "tokrate_model")
    source = "--tokrate-model" if model_cli is not None else "ini tokrate_model"
    models = build_models(model_cli if model_cli is not None else model_ini, backend, source)
    ini_options = parse_option_lines(config.getini("tokrate_options") or [], "ini tokrate_options")
    for key, ini_name, src in (
        ("num_predict", "tokrate_num_predict", "ini tokrate_num_predict"),
        ("num_ctx", "tokrate_num_ctx", "ini tokrate_num_ctx"),
    ):
        raw = _ini(config, ini_name)
        if raw is not None:
            ini_options[key] = parse_option_pair(f"{key}={raw}", src)[1]
    cli_options: dict[str, Any] = dict(get("tokrate_options") or [])
    if get("tokrate_num_predict") is not None:
        cli_options["num_predict"] = get("tokrate_num_predict")
    if get("tokrate_num_ctx") is not None:
        cli_options["num_ctx"] = get("tokrate_num_ctx")
    ini_layer = Layer(
        source="ini",
        rounds=_ini(config, "tokrate_rounds"),
        warmup=_ini(config, "tokrate_warmup"),
        timeout=_ini(config, "tokrate_timeout"),
        cache=_ini(config, "tokrate_cache"),
        options=ini_options or None,
    )
    cli_layer = Layer(
        source="command line",
        rounds=get("tokrate_rounds"),
        warmup=get("tokrate_warmup"),
        timeout=get("tokrate_timeout"),
        cache=get("tokrate_cache"),
        options=cli_options or None,
    )
    # Validate ini values now, so a bad ini is a usage error before any test runs.
    from .config import resolve

    resolve([ini_layer, cli_layer])
    missing = get("tokrate_missing_model") or _ini(config, "tokrate_missing_model") or "auto"
    host = get("tokrate_host") or _ini(config, "tokrate_host")
    return SessionConfig(
        models=models,
        backend=backend,
        host=host,
        cli=cli_layer,
        ini=ini_layer,
        missing_model=parse_missing_model(missing, "tokrate_missing_model"),
        api_key_env=get("tokrate_api_key_env") or _ini(config, "tokrate_api_key_env"),
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "tokrate(rounds=, warmup=, timeout=, cache=, options={...}, **generation_options): "
        "per-test pytest-tokrate settings (command line > marker > ini > default).",
    )
    try:
        session_config = _build_config(config)
    except TokrateError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[SESSION_KEY] = TokrateSession(session_config)


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
    session = _session(request.config)
    if tokrate_model is None:
        if session.config.missing_model_errors:
            pytest.fail(NO_MODEL_MESSAGE + " (this is an error because CI is set).", pytrace=False)
        session.skipped_no_model += 1
        pytest.skip(NO_MODEL_MESSAGE)
    node = request.node
    layer = None
    marker = node.get_closest_marker("tokrate")
    if marker is not None:
        if marker.args:
            pytest.fail(
                f"{node.nodeid}: @pytest.mark.tokrate takes keyword arguments only, got "
                f"{marker.args!r}.",
                pytrace=False,
            )
        try:
            layer = marker_layer(marker.kwargs, node.nodeid)
        except TokrateError as exc:
            pytest.fail(str(exc), pytrace=False)
    fixture = Tokrate(session, tokrate_model, node.nodeid, layer)
    node.stash.setdefault(FIXTURES_KEY, []).append(fixture)
    return fixture


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """After the test body: judge its measurements and fail the item on a verdict."""
    result = yield
    fixtures = item.stash.get(FIXTURES_KEY, [])
    if not fixtures:
        return result
    session = _session(item.config)
    marker = item.get_closest_marker("tokrate")
    context = JudgeContext(test_id=item.nodeid, marker=dict(marker.kwargs) if marker else {})
    findings: list[Finding] = []
    for fixture in fixtures:
        for measurement in fixture.measurements:
            try:
                findings.extend(session.judge(measurement, context))
            except TokrateError as exc:
                pytest.fail(str(exc), pytrace=False)
    for finding in findings:
        if finding.severity == "warn":
            item.warn(TokrateWarning(finding.message))
    if failures(findings):
        pytest.fail(failure_message(findings), pytrace=False)
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


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        return
    from .report import terminal_lines

    lines = terminal_lines(session.results)
    if lines:
        terminalreporter.write_sep("=", "tokrate: speed per test and model")
        for line in lines:
            terminalreporter.write_line(line)
    if session.skipped_no_model:
        terminalreporter.write_line(
            f"tokrate: {session.skipped_no_model} test(s) skipped: {NO_MODEL_MESSAGE}."
        )
