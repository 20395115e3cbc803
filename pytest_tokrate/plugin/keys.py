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


__all__ = ["FIXTURES_KEY", "INFRA_PREFIX", "NO_MODEL_MESSAGE", "SESSION_KEY"]
