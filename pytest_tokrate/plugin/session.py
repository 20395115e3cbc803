"""State of one test session: configuration, open backends, collected measurements.

No pytest import here: the glue builds a :class:`TokrateSession` from options and ini,
and everything below it can be driven from plain Python (or the console script).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_tokrate.core.settings import (
    BACKENDS,
    MISSING_MODEL_MODES,
    Layer,
    parse_choice,
    parse_model_list,
    parse_timeout,
)
from pytest_tokrate.errors import BackendUnavailable, UsageError

if TYPE_CHECKING:
    # Types only: the plugin imports this module at start-up, which must stay cheap.
    from pytest_tokrate.backends.base import Backend
    from pytest_tokrate.backends.models import ModelSpec
    from pytest_tokrate.core.findings import Finding, Judge, JudgeContext
    from pytest_tokrate.core.levels import LevelLayer
    from pytest_tokrate.core.result import Measurement
    from pytest_tokrate.core.sweep_result import SweepResult

BackendFactory = Callable[["ModelSpec", "SessionConfig"], "Backend"]

#: Values of the ``CI`` environment variable (any case) that mean "not in CI".
NOT_CI_VALUES = frozenset({"", "0", "false", "no", "off"})


def running_in_ci(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this run is in CI: ``CI`` is set to a value other than empty, ``0``,
    ``false``, ``no`` or ``off`` (any case). The one place the plugin reads ``CI``."""
    value = (os.environ if environ is None else environ).get("CI")
    return value is not None and value.strip().lower() not in NOT_CI_VALUES


@dataclass(frozen=True)
class SessionConfig:
    """Session-wide settings after parsing (CLI over ini over defaults)."""

    models: tuple[ModelSpec, ...] = ()
    backend: str = "auto"
    host: str | None = None
    #: Every server of a fleet (``--tokrate-host=a,b``); ``host`` is this process's.
    hosts: tuple[str, ...] = ()
    cli: Layer = field(default_factory=lambda: Layer("command line"))
    ini: Layer = field(default_factory=lambda: Layer("ini"))
    missing_model: str = "auto"
    api_key_env: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def missing_model_errors(self) -> bool:
        """Whether a tokrate test without a model errors (else it is skipped)."""
        if self.missing_model == "auto":
            return running_in_ci()
        return self.missing_model == "error"


def build_models(value: str | None, backend: str, source: str) -> tuple[ModelSpec, ...]:
    if value is None or not str(value).strip():
        return ()
    from pytest_tokrate.backends.models import resolve_model

    names = parse_model_list(str(value), source)
    specs = tuple(resolve_model(name, backend) for name in names)
    for spec in specs:
        if spec.backend == "embedded":
            require_module(
                "llama_cpp",
                f"model {spec.name!r} runs on the embedded llama.cpp engine, but "
                "llama-cpp-python is not installed: install it with "
                '`pip install "pytest-tokrate[embedded]"`, or point --tokrate-backend at a '
                "server (ollama, openai).",
            )
    return specs


def require_module(module: str, message: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise UsageError(message)


def parse_backend(value: object, source: str) -> str:
    return parse_choice(source, value, BACKENDS)


def parse_missing_model(value: object, source: str) -> str:
    return parse_choice(source, value, MISSING_MODEL_MODES)


def _server_kwargs(config: SessionConfig) -> dict[str, Any]:
    """Declared server settings and busy retries, as the plugin put them in ``extra``, and
    how long the start-up check waits: --tokrate-timeout when set (the backend's 10 s
    otherwise; the 120 s default would hold a run on a frozen server for two minutes)."""
    keys = ("server_settings", "busy_retries")
    kwargs = {k: config.extra[k] for k in keys if config.extra.get(k) is not None}
    for layer in (config.cli, config.ini):
        if layer.timeout is not None:
            kwargs["timeout_s"] = parse_timeout(f"{layer.source} timeout", layer.timeout)
            break
    return kwargs


def default_backend_factory(spec: ModelSpec, config: SessionConfig) -> Backend:
    """Create the backend for one model (imports the engine lazily)."""
    if spec.backend == "embedded":
        from pytest_tokrate.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(spec, reference=config.extra.get("calibrate", "on") != "off")
    if spec.backend == "ollama":
        try:
            from pytest_tokrate.backends.ollama import OllamaBackend
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise BackendUnavailable(
                f"the Ollama backend needs the `ollama` package ({exc}): install it with "
                '`pip install "pytest-tokrate[ollama]"`.'
            ) from None
        return OllamaBackend(spec.name, host=config.host, **_server_kwargs(config))
    if spec.backend == "openai":
        try:
            from pytest_tokrate.backends.openai import OpenAIBackend
        except ImportError as exc:  # pragma: no cover
            raise BackendUnavailable(
                f"the OpenAI-compatible backend needs httpx ({exc}): install it with "
                '`pip install "pytest-tokrate[openai]"`.'
            ) from None
        return OpenAIBackend(
            spec.name, host=config.host, api_key_env=config.api_key_env, **_server_kwargs(config)
        )
    raise UsageError(f"unknown backend {spec.backend!r}: use one of {', '.join(BACKENDS)}.")


class TokrateSession:
    """Owns the backends opened during a run and the measurements they produced."""

    def __init__(
        self, config: SessionConfig, backend_factory: BackendFactory = default_backend_factory
    ) -> None:
        self.config = config
        self.backend_factory = backend_factory
        self.backends: dict[str, Backend] = {}
        self.failed_backends: dict[str, Exception] = {}
        self.results: list[Measurement] = []
        self.skipped_no_model = 0
        #: Judges run on every measurement after its test body: quality bar, gate, ...
        self.judges: list[Judge] = []
        #: Results of ``tokrate.sweep()`` (reported, not judged) and the session-wide
        #: sweep levels from ini and command line (lowest precedence first).
        self.sweeps: list[SweepResult] = []
        self.sweep_layers: list[LevelLayer] = []

    def backend_for(self, spec: ModelSpec) -> Backend:
        key = f"{spec.backend}:{spec.name}"
        if key in self.failed_backends:
            raise self.failed_backends[key]
        backend = self.backends.get(key)
        if backend is None:
            try:
                backend = self.backend_factory(spec, self.config)
            except Exception as exc:
                self.failed_backends[key] = exc
                raise
            self.backends[key] = backend
        return backend

    #: Progress lines while a run measures: ``(test_id, model, label, rounds)`` -> a
    #: per-round callback or ``None`` (set by the glue, plugin/progress.py).
    progress: Callable[[str, str, str | None, int], Callable[[int, Any], None] | None] | None = None

    #: With ``rounds="auto"``: whether a partial measurement's verdict is settled, given
    #: the test's marker values (set by the gate; ``None``: auto measures every round).
    settle: Callable[[Measurement, Mapping[str, Any]], bool] | None = None

    def add_result(self, measurement: Measurement) -> None:
        self.results.append(measurement)

    def judge(self, measurement: Measurement, context: JudgeContext) -> list[Finding]:
        """Run every judge on a measurement and keep the findings on it."""
        findings: list[Finding] = []
        for judge in self.judges:
            findings.extend(judge(measurement, context))
        measurement.findings.extend(findings)
        return findings

    def close(self) -> None:
        for backend in self.backends.values():
            with contextlib.suppress(Exception):
                backend.close()
        self.backends.clear()


__all__ = [
    "SessionConfig",
    "TokrateSession",
    "build_models",
    "default_backend_factory",
    "parse_backend",
    "parse_missing_model",
    "running_in_ci",
]
