"""Where the plugin keeps its state: typed stash keys, and the texts shared by its modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pytest_tokrate.plugin.session import TokrateSession

if TYPE_CHECKING:
    from pytest_tokrate.plugin.fixture import Tokrate

SESSION_KEY: pytest.StashKey[TokrateSession] = pytest.StashKey()
FIXTURES_KEY: pytest.StashKey[list[Tokrate]] = pytest.StashKey()
INFRA_PREFIX = "tokrate infrastructure error: "
NO_MODEL_MESSAGE = (
    "no model chosen for tokrate tests: pass --tokrate-model=smollm2 (embedded, no server) "
    "or a server model such as --tokrate-model=gemma2:2b, or set tokrate_model in "
    "[tool.pytest.ini_options]"
)
_NO_MODEL_FOR = {
    "ollama": "pass --tokrate-model=NAME as `ollama list` shows it (e.g. gemma2:2b)",
    "openai": "pass --tokrate-model=NAME, the model id the server lists at GET /v1/models "
    "(llama-server: its --alias, else the file name)",
}


def no_model_message(backend: str) -> str:
    """What to do when no model is chosen, in the words of the backend in use."""
    how = _NO_MODEL_FOR.get(backend)
    if how is None:
        return NO_MODEL_MESSAGE
    return (
        f"no model chosen for tokrate tests: {how}, or set tokrate_model in "
        "[tool.pytest.ini_options]"
    )


def no_model(session: TokrateSession) -> BaseException:
    """The outcome of a tokrate test without a model, counted on the session: an error
    under CI, else a skip whose location is the test's own (as pytest gives a skip from a
    fixture), not this code."""
    errors = session.config.missing_model_errors
    session.skipped_no_model += 0 if errors else 1
    message = no_model_message(session.config.backend)
    if errors:
        return pytest.fail.Exception(
            message + " (this is an error because CI is set).", pytrace=False
        )
    skip = pytest.skip.Exception(message)
    skip._use_item_location = True  # what pytest's own fixture machinery sets
    return skip


__all__ = [
    "FIXTURES_KEY",
    "INFRA_PREFIX",
    "NO_MODEL_MESSAGE",
    "SESSION_KEY",
    "no_model",
    "no_model_message",
]
