"""pytest fixtures for the stand-in servers (loaded by ``tests/conftest.py``).

``ollama_standin`` / ``openai_standin``: a running server, shared by the session (one
model load), with its faults and recorded bodies cleared around each test.
``standin_factory``: fresh servers over the same engine, stopped after the test (for
tests that change a server for good, e.g. with the ``die`` fault).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .engine import EngineHost
from .ollama_server import OllamaStandin
from .openai_server import OpenAIStandin


@pytest.fixture(scope="session")
def standin_engine() -> Iterator[EngineHost]:
    """The real embedded engine (SmolLM2-135M as ``smollm2:135m``), one thread."""
    engine = EngineHost()
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def _ollama_standin_session(standin_engine: EngineHost) -> Iterator[OllamaStandin]:
    server = OllamaStandin(standin_engine).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _openai_standin_session(standin_engine: EngineHost) -> Iterator[OpenAIStandin]:
    server = OpenAIStandin(standin_engine).start()
    yield server
    server.stop()


@pytest.fixture
def ollama_standin(
    _ollama_standin_session: OllamaStandin, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OllamaStandin]:
    """A running Ollama stand-in; OLLAMA_HOST is unset so only explicit hosts count."""
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    server = _ollama_standin_session
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def openai_standin(
    _openai_standin_session: OpenAIStandin, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OpenAIStandin]:
    """A running OpenAI-compatible stand-in (llama.cpp flavour, no API key by default)."""
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    server = _openai_standin_session
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def standin_factory(standin_engine: EngineHost) -> Iterator[Callable[..., Any]]:
    """``standin_factory("ollama", **kw)`` / ``("openai", **kw)``: a fresh started server."""
    servers: list[OllamaStandin | OpenAIStandin] = []

    def make(protocol: str = "ollama", **kwargs: Any) -> OllamaStandin | OpenAIStandin:
        cls = OllamaStandin if protocol == "ollama" else OpenAIStandin
        server = cls(standin_engine, **kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
