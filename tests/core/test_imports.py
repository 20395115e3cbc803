"""The pure core imports without pytest and without llama.cpp; the plugin imports cheaply.

Each check runs in a fresh interpreter, since this one has pytest loaded already.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CORE = (
    "pytest_tokrate",
    "pytest_tokrate.core.measure",
    "pytest_tokrate.core.stats",
    "pytest_tokrate.core.settings",
    "pytest_tokrate.core.runner",
    "pytest_tokrate.core.result",
    "pytest_tokrate.backends.models",
    "pytest_tokrate.reports.terminal",
)
# Heavy or optional libraries that must load only when a feature needs them.
HEAVY = (
    "llama_cpp",
    "numpy",
    "jsonschema",
    "yaml",
    "matplotlib",
    "httpx",
    "ollama",
    "tiktoken",
    "pynvml",
)


def loaded_after(module: str) -> set[str]:
    code = f"import sys, json; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return {name.split(".")[0] for name in json.loads(out)}


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_without_pytest_or_engine(module: str) -> None:
    loaded = loaded_after(module)
    assert not loaded & {"pytest", "_pytest", "pluggy"}, f"{module} imports pytest"
    assert not loaded & set(HEAVY), f"{module} imports {sorted(loaded & set(HEAVY))}"


def test_plugin_import_is_lazy() -> None:
    loaded = loaded_after("pytest_tokrate.plugin")
    assert not loaded & set(HEAVY), f"the plugin imports {sorted(loaded & set(HEAVY))} eagerly"


def test_public_api_resolves_lazily() -> None:
    import pytest_tokrate

    for name in pytest_tokrate.__all__:
        assert getattr(pytest_tokrate, name) is not None
    assert set(pytest_tokrate.__all__) <= set(dir(pytest_tokrate))
    with pytest.raises(AttributeError):
        _ = pytest_tokrate.NoSuchThing  # type: ignore[attr-defined]
