"""pytest-tokrate: LLM speed and answer quality as part of a pytest suite.

The public API is re-exported here; the pytest glue lives in :mod:`pytest_tokrate.plugin`.
Importing this package is cheap: engines, plotting and tokenizers load lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_tokrate._version import __version__
from pytest_tokrate.errors import (
    BackendUnavailable,
    BaselineError,
    CheckDefinitionError,
    InfrastructureError,
    ModelNotFoundError,
    ModelNotOnServer,
    ReportError,
    RequestTimeout,
    ServerError,
    TokrateError,
    UsageError,
)

# The rest of the public API loads on first access (PEP 562), so that pytest start-up
# with the plugin installed but unused does not pay for dataclasses and statistics.
_LAZY: dict[str, str] = {
    "Backend": "backends.base",
    "Message": "backends.base",
    "ModelInfo": "backends.base",
    "Request": "backends.base",
    "EngineReport": "core.measure",
    "Sample": "core.measure",
    "TextChunk": "core.measure",
    "Measurement": "core.result",
    "Runner": "core.runner",
    "Summary": "core.stats",
    "SweepLevel": "core.sweep_result",
    "SweepResult": "core.sweep_result",
}

if TYPE_CHECKING:
    from pytest_tokrate.backends.base import Backend, Message, ModelInfo, Request
    from pytest_tokrate.core.measure import EngineReport, Sample, TextChunk
    from pytest_tokrate.core.result import Measurement
    from pytest_tokrate.core.runner import Runner
    from pytest_tokrate.core.stats import Summary
    from pytest_tokrate.core.sweep_result import SweepLevel, SweepResult


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Backend",
    "BackendUnavailable",
    "BaselineError",
    "CheckDefinitionError",
    "EngineReport",
    "InfrastructureError",
    "Measurement",
    "Message",
    "ModelInfo",
    "ModelNotFoundError",
    "ModelNotOnServer",
    "ReportError",
    "Request",
    "RequestTimeout",
    "Runner",
    "Sample",
    "ServerError",
    "Summary",
    "SweepLevel",
    "SweepResult",
    "TextChunk",
    "TokrateError",
    "UsageError",
    "__version__",
]
