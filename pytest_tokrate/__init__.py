"""pytest-tokrate: LLM speed and answer quality as part of a pytest suite.

The public API is re-exported here; the pytest glue lives in :mod:`pytest_tokrate.plugin`.
Importing this package is cheap: engines, plotting and tokenizers load lazily.
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from .errors import (
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
    "EngineReport": "measure",
    "Sample": "measure",
    "TextChunk": "measure",
    "Measurement": "result",
    "Runner": "runner",
    "Summary": "stats",
    "SweepLevel": "sweep",
    "SweepResult": "sweep",
}

if TYPE_CHECKING:
    from .backends.base import Backend, Message, ModelInfo, Request
    from .measure import EngineReport, Sample, TextChunk
    from .result import Measurement
    from .runner import Runner
    from .stats import Summary
    from .sweep import SweepLevel, SweepResult


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
