"""Shared helpers of the report, sweep and telemetry tests.

Inner runs use the real embedded SmolLM2 model with one thread (the machine is shared)
and short generations; the baseline gate is off so that its warnings do not mix in.

``pytester`` restores ``sys.modules`` after each in-process run, and extension modules
(NumPy under llama.cpp and matplotlib, tiktoken's Rust core) cannot be imported twice in
one process: they are loaded here once, before any run, and stay loaded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

with contextlib.suppress(ImportError):
    import llama_cpp  # noqa: F401
    import matplotlib.backends.backend_agg
    import matplotlib.figure
    import matplotlib.image  # noqa: F401

    from pytest_tokrate.core.tokens import encoding

    encoding()

BASE_ARGS = (
    "-p",
    "no:cacheprovider",
    "--tokrate-model=smollm2",
    "--tokrate-option=num_thread=1",
    "--tokrate-gate=off",
)


@pytest.fixture
def base_args() -> tuple[str, ...]:
    """Arguments of every inner run: real model, one thread, gate off."""
    return BASE_ARGS


@pytest.fixture(autouse=True)
def _no_job_summary(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Inner runs must not append to a real GitHub job summary of the outer CI job."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.delenv("CI", raising=False)
    yield
