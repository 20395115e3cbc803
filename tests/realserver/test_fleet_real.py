"""A fleet of two real llama.cpp servers under ``-n 2``: each xdist worker measures
against its own server, with the exact prompt and no cached prompt tokens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from realserver_support import LlamaServer

pytestmark = pytest.mark.real_llamacpp

TESTS = """
import pytest

@pytest.mark.tokrate(rounds=2, warmup=1, num_predict=8, temperature=0)
@pytest.mark.parametrize("word", ["red", "green", "blue", "gold"])
def test_colour(tokrate, word):
    tokrate.run(f"Name something {word}.")
"""


def test_two_real_servers_one_per_worker(
    llama_server: LlamaServer, second_llama_server: LlamaServer, tmp_path: Path
) -> None:
    (tmp_path / "test_fleet.py").write_text(TESTS, encoding="utf-8")
    a, b = llama_server, second_llama_server
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    done = subprocess.run(
        [
            sys.executable, "-m", "pytest", "test_fleet.py", "-n", "2", "-p", "no:cacheprovider",
            "--tokrate-gate=off", "--tokrate-backend=openai", f"--tokrate-host={a.url},{b.url}",
            f"--tokrate-model={a.model_id()}", "--tokrate-report-json=report.json",
        ],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tokrate: fleet of 2 servers: gw0 -> " in done.stdout
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    measurements = report["measurements"]
    assert len(measurements) == 4
    hosts = {m["model"]["extra"]["host"] for m in measurements}
    assert len(hosts) == 2  # both servers measured, each its own share
    assert {next(u for u in (a.url, b.url) if h.startswith(u)) for h in hosts} == {a.url, b.url}
    for m in measurements:
        assert m["cache"]["method"] == "cache_prompt=false" and m["cache"]["held"] is True
        assert all(s["prompt_tokens_cached"] == 0 for s in m["samples"])
