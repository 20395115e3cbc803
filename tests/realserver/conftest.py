"""The real llama.cpp server of the tests: one ``llama-server -np 2`` for the session.

The binary comes from ``scripts/llamacpp_tools.sh`` (or ``$TOKRATE_LLAMA_TOOLS``). When
there is none, the tests fail under CI (a CI job that silently skips its real-server tests
would pass without testing anything) and are skipped locally, saying why.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from realserver_support import (
    LlamaServer,
    ServerFailed,
    ToolsMissing,
    find_llama_server,
    start_llama_server,
)

from pytest_tokrate.plugin.session import running_in_ci

#: Context per slot: the tests' prompts are under 100 tokens and answers under 64.
CTX_PER_SLOT = 1024


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "real_llamacpp: starts a real llama-server built by scripts/llamacpp_tools.sh "
        "(fails under CI when it is missing, skipped locally)",
    )


def _ci_at_start() -> bool:
    """Whether the run was started under CI: tests/conftest.py removes ``CI`` at configure
    time (so the plugin behaves as on a developer machine) and keeps its value aside."""
    started = os.environ.get("TOKRATE_TESTS_STARTED_WITH_CI", "")
    return running_in_ci(os.environ) or running_in_ci({"CI": started} if started else {})


@pytest.fixture(scope="session")
def llama_server_binary() -> Path:
    """The llama-server binary, or a failure (CI) / skip (locally) that says why not."""
    try:
        return find_llama_server()
    except ToolsMissing as exc:
        why = str(exc)
    # Outside the except block: the reader needs the reason, not a chained traceback.
    if _ci_at_start():
        pytest.fail(f"the real llama-server tests cannot run under CI: {why}", pytrace=False)
    pytest.skip(f"no llama-server: {why}")


def _started(binary: Path, model: Path, log: Path, parallel: int, ctx_per_slot: int) -> LlamaServer:
    try:
        return start_llama_server(
            binary, model, log, parallel=parallel, threads=1, ctx_per_slot=ctx_per_slot
        )
    except ServerFailed as exc:
        why = str(exc)
    pytest.fail(why, pytrace=False)


@pytest.fixture(scope="session")
def llama_server(
    llama_server_binary: Path, smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    """``llama-server -np 2 -t 1`` on SmolLM2 for the session; stopped after."""
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    server = _started(llama_server_binary, smollm2_gguf, log, 2, CTX_PER_SLOT)
    yield server
    server.stop()


@pytest.fixture
def doomed_llama_server(
    llama_server_binary: Path, smollm2_gguf: Path, tmp_path: Path
) -> Iterator[LlamaServer]:
    """A second server of the test's own, for a test that kills it."""
    # One slot with room for a long generation, killed long before it ends.
    server = _started(llama_server_binary, smollm2_gguf, tmp_path / "doomed.log", 1, 2048)
    yield server
    server.stop()


@pytest.fixture
def second_llama_server(
    llama_server_binary: Path, smollm2_gguf: Path, tmp_path: Path
) -> Iterator[LlamaServer]:
    """Another server like the session's, for a fleet of two."""
    server = _started(llama_server_binary, smollm2_gguf, tmp_path / "second.log", 2, CTX_PER_SLOT)
    yield server
    server.stop()
