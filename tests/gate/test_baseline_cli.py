"""The ``tokrate baselines`` console script: output and exit codes a script can use."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_tokrate import cli
from pytest_tokrate.gate import store as baselines

TEST_FILE = """
def test_demo(tokrate):
    tokrate.run("Name three colours.")

class TestGroup:
    def test_inner(self, tokrate):
        tokrate.run("Hi")
"""


@pytest.fixture
def project(tmp_path: Path, measurement: Any) -> Path:
    """A project with a test file and baselines made from a real measurement."""
    (tmp_path / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\ntokrate_baseline_dir = "perf"\n', encoding="utf-8"
    )
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests/test_demo.py").write_text(TEST_FILE, encoding="utf-8")
    env = baselines.measurement_environment(measurement)
    runs = {"run 1": baselines.run_record(measurement)}
    for test_id in (
        "tests/test_demo.py::test_demo[smollm2]",
        "tests/test_demo.py::TestGroup::test_inner[smollm2]",
    ):
        doc = baselines.build(test_id, "embedded", env, runs)
        baselines.save(baselines.baseline_path(tmp_path / "perf", test_id, "embedded"), doc)
    return tmp_path


def tokrate(root: Path, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["baselines", *argv, "--root", str(root)], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def demo_path(root: Path) -> Path:
    return root / "perf/tests/test_demo/test_demo[smollm2]@embedded.json"


def test_list(project: Path, measurement: Any) -> None:
    code, out, err = tokrate(project, "list")
    assert code == cli.EXIT_OK, err
    assert "tests/test_demo.py::test_demo[smollm2]" in out
    assert f"{measurement.decode_tps.median:.1f}" in out
    assert "2 baseline file(s) in perf/" in out  # the ini's directory was found
    code, out, _ = tokrate(project, "list", "--json")
    assert code == 0 and {d["path"] for d in json.loads(out)} == {
        "perf/tests/test_demo/test_demo[smollm2]@embedded.json",
        "perf/tests/test_demo/TestGroup.test_inner[smollm2]@embedded.json",
    }


def test_invalid_files_are_reported_with_exit_3(project: Path) -> None:
    demo_path(project).write_text('{"schema_version": 1}', encoding="utf-8")
    code, out, err = tokrate(project, "list")
    assert code == cli.EXIT_INVALID
    assert "1 invalid" in out
    assert "invalid: baseline" in err and "'test_id' is a required property" in err


def test_show(project: Path) -> None:
    code, out, _ = tokrate(project, "show", "tests/test_demo.py::test_demo[smollm2]")
    assert code == cli.EXIT_OK
    assert "hardware.cpu_model:" in out and "model.digest:" in out
    assert "decode tok/s: median" in out and "TTFT (ms): median" in out
    assert "TestGroup" not in out
    code, out, _ = tokrate(project, "show", "test_inner")  # part of an id
    assert code == 0 and "TestGroup::test_inner" in out
    code, out, _ = tokrate(project, "show", "test_demo[smollm2]", "--json")
    assert json.loads(out)["test_id"] == "tests/test_demo.py::test_demo[smollm2]"
    code, _, err = tokrate(project, "show", "test_missing")
    assert code == cli.EXIT_NOT_FOUND and "no baseline matches 'test_missing'" in err


def git(root: Path, *argv: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *argv],
        cwd=root,
        check=True,
        capture_output=True,
    )


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_diff_against_a_commit(project: Path) -> None:
    git(project, "init", "-q")
    git(project, "add", ".")
    git(project, "commit", "-q", "-m", "baselines")
    code, out, _ = tokrate(project, "diff")
    assert code == cli.EXIT_OK and "0 changed baseline file(s) against HEAD" in out
    path = demo_path(project)
    data = json.loads(path.read_text(encoding="utf-8"))
    samples = data["runs"]["run 1"]["samples"]
    samples["decode_tps"] = [v / 1000 for v in samples["decode_tps"]]
    path.write_text(baselines.dumps(data), encoding="utf-8")
    inner = project / "perf/tests/test_demo/TestGroup.test_inner[smollm2]@embedded.json"
    inner.unlink()
    code, out, _ = tokrate(project, "diff", "HEAD")
    assert code == cli.EXIT_OK and "too short" in out, out  # 8-token answers (README)
    code, out, _ = tokrate(project, "diff", "HEAD", "--min-decode-tokens", "8")
    assert code == cli.EXIT_REGRESSION, out
    assert "changed: perf/tests/test_demo/test_demo[smollm2]@embedded.json" in out
    assert "removed: perf/tests/test_demo/TestGroup.test_inner[smollm2]@embedded.json" in out
    assert "decode tok/s" in out and "-99.9%" in out and "regression" in out
    assert "1 regression(s)" in out
    # a looser tolerance turns it into an accepted change
    loose = ("--tolerance", "decode_tps=99.95%", "--min-decode-tokens", "8")
    code, _, _ = tokrate(project, "diff", *loose)
    assert code == cli.EXIT_OK
    code, _, err = tokrate(project, "diff", "no-such-rev")
    assert code == cli.EXIT_USAGE and "git rev-parse" in err


def test_diff_outside_git_is_a_usage_error(project: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("needs git")
    code, _, err = tokrate(project, "diff")
    assert code == cli.EXIT_USAGE and "git" in err


def test_prune(project: Path, measurement: Any) -> None:
    env = baselines.measurement_environment(measurement)
    runs = {"run 1": baselines.run_record(measurement)}
    gone = {
        "tests/test_gone.py::test_x[smollm2]": "tests/test_gone.py no longer exists",
        "tests/test_demo.py::test_renamed[smollm2]": "test_renamed is no longer defined",
        "tests/test_demo.py::TestGroup::test_old[smollm2]": "TestGroup.test_old is no longer",
    }
    for test_id in gone:
        doc = baselines.build(test_id, "embedded", env, runs)
        baselines.save(baselines.baseline_path(project / "perf", test_id, "embedded"), doc)
    leftover = project / "perf/tests/test_demo/.test_demo[smollm2]@embedded.json.x1.tmp"
    leftover.write_text("{", encoding="utf-8")
    code, out, _ = tokrate(project, "prune", "--check")
    assert code == 1 and "4 file(s) to remove" in out
    code, out, _ = tokrate(project, "prune", "--dry-run")
    assert code == 0 and all(reason in out for reason in gone.values())
    assert "left by an interrupted write" in out and leftover.exists()
    code, out, _ = tokrate(project, "prune")
    assert code == 0 and "4 file(s) removed" in out
    assert not leftover.exists()
    assert sorted(p.name for p in baselines.iter_files(project / "perf")) == [
        "TestGroup.test_inner[smollm2]@embedded.json",
        "test_demo[smollm2]@embedded.json",
    ]
    assert tokrate(project, "prune", "--check")[0] == 0


def test_prune_in_a_shared_directory_keeps_other_projects_baselines(
    project: Path, measurement: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A --dir outside the project may hold another project's baselines: their test files
    are not here, and that does not make them obsolete."""
    common = tmp_path_factory.mktemp("common")
    shutil.copytree(project / "perf", common, dirs_exist_ok=True)
    env = baselines.measurement_environment(measurement)
    runs = {"run 1": baselines.run_record(measurement)}
    for test_id in ("other/test_b.py::test_b[smollm2]", "tests/test_demo.py::test_gone[smollm2]"):
        doc = baselines.build(test_id, "embedded", env, runs)
        baselines.save(baselines.baseline_path(common, test_id, "embedded"), doc)
    code, out, _ = tokrate(project, "prune", "--dir", str(common))
    assert code == 0 and "1 file(s) removed" in out, out
    assert "kept 1 baseline(s) of test files not in" in out
    kept = {b.test_id for b in baselines.scan(common)[0]}
    assert "other/test_b.py::test_b[smollm2]" in kept  # another project's: kept
    assert "tests/test_demo.py::test_gone[smollm2]" not in kept  # ours, deleted: removed


def test_console_script_and_usage_errors(project: Path) -> None:
    script = Path(sys.executable).with_name("tokrate")
    proc = subprocess.run(
        [str(script), "baselines", "list"], cwd=project, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "2 baseline file(s) in perf/" in proc.stdout
    bad = subprocess.run([str(script), "baselines", "frobnicate"], capture_output=True, text=True)
    assert bad.returncode == cli.EXIT_USAGE and "invalid choice" in bad.stderr
    assert cli.main(["--help"], out=io.StringIO()) == 0


def test_unreadable_entries_are_named_and_never_pruned(project: Path) -> None:
    """A FIFO, a directory and a NaN file named like baselines: each named, exit 3,
    nothing read blocks, and prune removes only what it could read and judge."""
    import os

    base = project / "perf/tests/test_demo"
    os.mkfifo(base / "test_fifo[smollm2]@embedded.json")
    (base / "test_dir[smollm2]@embedded.json").mkdir()
    nan = base / "test_gone[smollm2]@embedded.json"
    nan.write_text(
        demo_path(project)
        .read_text(encoding="utf-8")
        .replace('"decode_tps": [', '"decode_tps": [NaN, ', 1)
    )
    for argv in (["list"], ["prune"], ["show", "test_demo"]):
        code, _, err = tokrate(project, *argv)
        assert code == cli.EXIT_INVALID, err
        assert "is a named pipe (FIFO)" in err and "is a directory" in err
        assert "samples.decode_tps[0]: NaN is not a finite number" in err
    assert nan.exists() and (base / "test_fifo[smollm2]@embedded.json").is_fifo()
    assert demo_path(project).exists()


def test_a_baseline_dir_that_is_a_file(project: Path) -> None:
    shutil.rmtree(project / "perf")
    (project / "perf").write_text("not a directory", encoding="utf-8")
    code, _, err = tokrate(project, "list")
    assert code == cli.EXIT_INVALID
    assert "the baseline directory perf is a file, not a directory: move it away" in err
