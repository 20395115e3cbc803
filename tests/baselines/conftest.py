"""Shared fixtures of the baseline tests: a real measurement and real recorded samples.

``pytester`` restores ``sys.modules`` after each in-process run, and llama-cpp-python
(NumPy under it) cannot be imported twice in one process: import it once here.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

with contextlib.suppress(ImportError):
    import llama_cpp  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
GATE_DATA = REPO / "benchmarks" / "data"


@pytest.fixture(scope="session")
def measure() -> Callable[..., Any]:
    """Measure a prompt on the real embedded SmolLM2 model (one engine for the session)."""
    from pytest_tokrate.backends.base import Request
    from pytest_tokrate.backends.llamacpp import LlamaCppBackend
    from pytest_tokrate.config import Layer, resolve
    from pytest_tokrate.models import resolve_model
    from pytest_tokrate.runner import Runner

    backend = LlamaCppBackend(resolve_model("smollm2"))

    def run(prompt: str = "Name three colours.", rounds: int = 5, **options: Any) -> Any:
        options.setdefault("num_predict", 8)
        settings = resolve([Layer("test", rounds=rounds, warmup=1, options=options)])
        m = Runner(backend).run(Request(prompt=prompt), settings)
        m.test_id = "tests/test_demo.py::test_demo[smollm2]"
        return m

    yield run
    backend.close()


@pytest.fixture(scope="session")
def measurement(measure: Callable[..., Any]) -> Any:
    return measure()


@pytest.fixture(scope="session")
def recorded() -> dict[str, dict[str, list[float]]]:
    """Per-round samples recorded on this machine by benchmarks/bench_gate.py."""
    out = {}
    for path in sorted(GATE_DATA.glob("gate_*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        out[data["condition"]] = {
            f: [float(r[f]) for r in data["rounds"]]
            for f in ("decode_tps", "ttft", "machine_ref_tps")
        }
    if "a1" not in out:
        pytest.fail(
            "benchmarks/data/gate_a1.json is missing: run benchmarks/bench_gate.py record a1"
        )
    return out
