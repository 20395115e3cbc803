"""Ctrl-C while baselines are written: whole files, a summary, no traceback.

A real update run with the real model (``smollm2`` on the embedded engine) records three
baselines. The project's conftest sends a real SIGINT to its own process at the moment
the second file is written (from inside the store's atomic write, which it wraps), so the
signal lands in the write phase every time instead of by luck of timing. What the user
must see: pytest's exit code for an interruption (2), which files were written and which
were not, no Python traceback; and on disk: every baseline file whole and valid, the
unwritten one absent, no temporary file left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pytest_tokrate.gate import store as baselines

TEST_FILE = """
import pytest

@pytest.mark.parametrize("i", [1, 2, 3])
def test_speed(tokrate, i):
    tokrate.run(f"Say {i}.", num_predict=2, rounds=1, warmup=0)
"""
#: Wraps the atomic write: the second file's write sends SIGINT to this very process.
CONFTEST = """
import os
import signal

from pytest_tokrate.gate import store

_real_write = store.write_atomic
_calls = []


def _write_with_ctrl_c(path, text):
    _calls.append(path)
    if len(_calls) == 2:
        os.kill(os.getpid(), signal.SIGINT)
    _real_write(path, text)


store.write_atomic = _write_with_ctrl_c
"""


def test_ctrl_c_in_the_write_phase_leaves_whole_files_and_a_summary(tmp_path: Path) -> None:
    (tmp_path / "test_speed.py").write_text(TEST_FILE)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only our plugin: a faster start
    proc = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-p", "pytest_tokrate.plugin",
            "-p", "no:cacheprovider", "--tokrate-model=smollm2", "--tokrate-calibrate=off",
            "--tokrate-update-baselines", "test_speed.py",
        ],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
    assert "3 passed" in out, out
    assert "interrupted (Ctrl-C) while writing baselines: wrote 2 of 3 file(s)" in out, out
    assert "no baseline was removed" in out
    root = tmp_path / "baselines"
    names = [f"test_speed/test_speed[smollm2-{i}]@embedded.json" for i in (1, 2, 3)]
    for name in names[:2]:
        assert f"  written: baselines/{name}" in out, out
    assert "not written (1), run the update again to write the rest:" in out, out
    assert f"  baselines/{names[2]}" in out, out
    assert not (root / names[2]).exists()
    for path in sorted(root.rglob("*")):  # every file there is a whole baseline
        assert path.is_dir() or path.suffix == ".json", path  # no temporary file left
        if path.is_file():
            json.loads(path.read_text())
            baselines.load(path)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.json")) == names[:2]
