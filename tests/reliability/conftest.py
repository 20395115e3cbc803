"""Shared helpers of the reliability tests (faults, bad input, secrets, kills, fuzzing).

Inner pytest runs use the real model (the embedded engine, or the stand-in servers built
over it) with one thread, short generations and the gate off unless a test is about
baselines. Runs that could hang if a fault were mishandled go through a subprocess with a
hard time limit, so a regression here fails CI instead of stalling it.

``pytester`` restores ``sys.modules`` after each in-process run, and extension modules
(NumPy under llama.cpp, tiktoken's core) cannot be imported twice in one process: they
are loaded once here and stay loaded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

with contextlib.suppress(ImportError):
    import llama_cpp  # noqa: F401

    from pytest_tokrate.core.tokens import encoding

    encoding()


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Inner runs must not see the outer CI's settings or write its job summary."""
    for name in ("CI", "GITHUB_STEP_SUMMARY", "OLLAMA_HOST", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    yield
