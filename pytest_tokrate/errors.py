"""The exception tree of pytest-tokrate.

Every error carries a message that says what went wrong, shows the offending
value and names the remedy, so the pytest glue can show it without a traceback.

    TokrateError
    ├── UsageError            bad option, marker, model name or suite value (exit 4)
    │   └── ModelNotFoundError    unknown alias, missing .gguf, model not on the server
    ├── InfrastructureError   the engine or server failed: the test *errors*, it does not fail
    │   ├── BackendUnavailable    server unreachable, optional extra not installed
    │   ├── ServerError           HTTP status, error line mid-stream, malformed response
    │   ├── ModelNotOnServer      the server is up but does not have the model (Ollama 404)
    │   └── RequestTimeout        no answer within the per-request timeout
    ├── CheckDefinitionError  a quality check that cannot run (bad regex, bad schema, ...)
    ├── BaselineError         a baseline file that cannot be read, validated or written
    └── ReportError           a report (JSON, Markdown, plots) that cannot be written
"""

from __future__ import annotations

from collections.abc import Iterable


class TokrateError(Exception):
    """Base class of every error raised by pytest-tokrate."""


class UsageError(TokrateError):
    """A value given by the user (option, ini, marker, suite file) is invalid."""


class ModelNotFoundError(UsageError):
    """The model name or path does not resolve to a usable model."""


class InfrastructureError(TokrateError):
    """The engine or server could not produce a measurement.

    Reported as a test *error*, never as a failure: a slow or broken server is not a
    regression of the model under test.
    """


class BackendUnavailable(InfrastructureError):
    """The backend cannot be reached or its optional dependency is missing."""


class ServerError(InfrastructureError):
    """The server answered with an error status, an error line or a malformed stream."""


class ModelNotOnServer(InfrastructureError):
    """The server answers but does not have the model (Ollama or OpenAI-style 404).

    An infrastructure problem of the environment, not of the test: the remedy is on the
    server (``ollama pull NAME``), so the test *errors*. A model name that is not even
    well-formed is a :class:`UsageError` instead, caught before any request.
    """


class RequestTimeout(InfrastructureError):
    """A request did not finish within the configured timeout."""


class CheckDefinitionError(TokrateError):
    """A quality check is defined in a way that cannot be evaluated."""


class BaselineError(TokrateError):
    """A baseline file is unreadable, invalid, from a future schema or not writable."""


class ReportError(TokrateError):
    """A report (JSON, Markdown summary, plots) could not be validated or written."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A hint for a misspelt name: `` (did you mean 'icontains'?)``, or ``""``."""
    import difflib  # only when an error is worded: errors.py is imported by every module

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


__all__ = [
    "BackendUnavailable",
    "BaselineError",
    "CheckDefinitionError",
    "InfrastructureError",
    "ModelNotFoundError",
    "ModelNotOnServer",
    "ReportError",
    "RequestTimeout",
    "ServerError",
    "TokrateError",
    "UsageError",
    "did_you_mean",
]
