"""``pip install pytest-tokrate`` with no extras runs the headline command against Ollama.

The project is installed into a fresh virtual environment (no llama.cpp, no extras) and
runs a test against the Ollama stand-in, as a new user would against a real server.
Needs the package index (or pip's cache) for the dependencies: where pip cannot reach
either, the test is skipped with pip's words.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
TEST = """
def test_team(tokrate):
    r = tokrate.run("Is Geelong an Australian team? Answer in one word.", rounds=2, num_predict=4)
    assert r.decode_tps.median > 0
"""


def test_a_plain_install_runs_an_ollama_model_test(tmp_path: Path, ollama_standin: object) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in {"CI", "PYTHONPATH", "VIRTUAL_ENV"}}
    env["PYTHONWARNINGS"] = "ignore"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "-c", str(REPO / "scripts" / "constraints.txt"), str(REPO)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    if install.returncode != 0:
        words = install.stderr + install.stdout
        if "Could not find a version" in words or "NewConnectionError" in words:
            pytest.skip(f"pip cannot reach the package index here: {words[-300:]}")
        raise AssertionError(words)
    probe = "import importlib.util as u; print(u.find_spec('llama_cpp') is None)"
    plain = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, env=env)
    assert plain.stdout.strip() == "True", "the plain install must not pull in llama.cpp"
    (tmp_path / "test_speed.py").write_text(TEST, encoding="utf-8")
    run = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_speed.py",
         "--tokrate-model=smollm2:135m", f"--tokrate-host={ollama_standin.url}"],  # type: ignore[attr-defined]
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "1 passed" in out and "test_team[smollm2:135m]" in out
    assert sys.executable != str(python)
