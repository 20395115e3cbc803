"""pytest-tokrate: LLM speed and answer quality as part of a pytest suite.

The public API is re-exported here; the pytest glue lives in :mod:`pytest_tokrate.plugin`.
Importing this package is cheap: engines, plotting and tokenizers load lazily.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .backends.base import Backend, Message, ModelInfo, Request
from .errors import (
    BackendUnavailable,
    BaselineError,
    CheckDefinitionError,
    InfrastructureError,
    ModelNotFoundError,
    RequestTimeout,
    ServerError,
    TokrateError,
    UsageError,
)
from .measure import EngineReport, Sample, TextChunk
from .result import Measurement
from .runner import Runner
from .stats import Summary

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
    "Request",
    "RequestTimeout",
    "Runner",
    "Sample",
    "ServerError",
    "Summary",
    "TextChunk",
    "TokrateError",
    "UsageError",
    "__version__",
]
