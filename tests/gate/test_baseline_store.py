"""Baseline files: names, validation of bad files, atomic writes, the inter-process lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_tokrate.errors import BaselineError
from pytest_tokrate.gate import store as baselines


def document(m: Any, test_id: str | None = None) -> dict[str, Any]:
    return baselines.build(
        test_id or m.test_id,
        "embedded",
        baselines.measurement_environment(m),
        {baselines.run_key(m): baselines.run_record(m)},
    )


# -- names ---------------------------------------------------------------------------


def test_names_are_readable_and_stable(tmp_path: Path) -> None:
    path = baselines.baseline_path(
        tmp_path, "examples/test_speed.py::test_decode[smollm2]", "embedded"
    )
    assert path == tmp_path / "examples" / "test_speed" / "test_decode[smollm2]@embedded.json"
    cls = baselines.baseline_path(tmp_path, "t/test_a.py::TestX::test_y[p-1]", "ci-2cpu")
    assert cls == tmp_path / "t" / "test_a" / "TestX.test_y[p-1]@ci-2cpu.json"


@pytest.mark.parametrize(
    "test_id",
    [
        "../../etc/passwd.py::test_x",
        "t.py::test_q[gemma2:2b]",
        "t.py::test_q[gemma2/2b]",
        "t.py::test_q[a b]",
        "t.py::test_" + "x" * 300,
        "t.py::test_q[.hidden]",
        "t.py::test_at[a@b]",
    ],
)
def test_unsafe_ids_stay_inside_and_stay_unique(tmp_path: Path, test_id: str) -> None:
    path = baselines.baseline_path(tmp_path, test_id, "embedded")
    assert tmp_path.resolve() in path.resolve().parents
    assert all(len(part) <= 200 for part in path.parts)
    assert path.name.count("@") == 1 and not path.name.startswith(".")
    twin = test_id.replace("x", "y").replace("q", "r").replace("b", "c")
    assert baselines.baseline_path(tmp_path, twin, "embedded") != path


# -- round trip --------------------------------------------------------------------------


def test_round_trip_of_a_real_measurement(tmp_path: Path, measurement: Any) -> None:
    doc = document(measurement)
    path = baselines.baseline_path(tmp_path, measurement.test_id, "embedded")
    baselines.save(path, doc)
    text = path.read_text(encoding="utf-8")
    assert text == baselines.dumps(json.loads(text))  # sorted keys, stable formatting
    assert text.endswith("}\n") and '\n  "fingerprint": {' in text
    loaded = baselines.load(path)
    run = loaded.runs["run 1"]
    assert run["rounds"] == measurement.rounds == len(run["samples"]["decode_tps"])
    for got, want in zip(run["samples"]["decode_tps"], measurement.decode_tps.values, strict=True):
        assert got == pytest.approx(want, rel=1e-5)
    assert run["summaries"]["decode_tps"]["median"] == pytest.approx(
        measurement.decode_tps.median, rel=1e-5
    )
    assert run["samples"]["output_tokens"] == [s.output_tokens for s in measurement.samples]
    assert loaded.fingerprint["model"]["name"] == "smollm2"
    assert run["quality"] is None


def test_quality_is_stored_as_passed_of_total(tmp_path: Path, measure: Any) -> None:
    from pytest_tokrate.quality.checks import parse_checks
    from pytest_tokrate.quality.evaluate import evaluate

    m = measure("Say hello.", rounds=3)
    checks = parse_checks(
        [{"type": "min-words", "value": 1}, {"type": "contains", "value": "@@"}], "t"
    )
    m.quality = evaluate(checks, m.samples)
    record = baselines.run_record(m)
    assert record["quality"]["passed"] == 0 and record["quality"]["total"] == 3
    assert record["quality"]["pass_rate"] == 0
    assert set(record["quality"]["checks"]) == {c.label for c in checks}
    assert record["definition"]["checks"] is not None
    baselines.save(tmp_path / "q.json", document(m))


# -- bad files ---------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path: Path, measurement: Any) -> tuple[Path, dict[str, Any]]:
    doc = document(measurement)
    path = tmp_path / "b.json"
    baselines.save(path, doc)
    return path, json.loads(path.read_text(encoding="utf-8"))


def expect_error(path: Path, *fragments: str) -> None:
    with pytest.raises(BaselineError) as info:
        baselines.load(path)
    for fragment in (str(path), *fragments):
        assert fragment in str(info.value), str(info.value)


def test_corrupted_json(saved: tuple[Path, dict[str, Any]]) -> None:
    path, _ = saved
    path.write_text(path.read_text(encoding="utf-8")[:200], encoding="utf-8")
    expect_error(path, "not valid JSON", "--tokrate-update-baselines")
    path.write_text("<<<<<<< HEAD\n{}\n=======\n", encoding="utf-8")
    expect_error(path, "not valid JSON", "conflicted merge")
    path.write_bytes(b"\xff\xfe{")
    expect_error(path, "not UTF-8")
    path.write_text("[1, 2]", encoding="utf-8")
    expect_error(path, "not a JSON object")


def test_future_schema_version(saved: tuple[Path, dict[str, Any]]) -> None:
    path, data = saved
    data["schema_version"] = baselines.SCHEMA_VERSION + 1
    data["something_new"] = {"x": 1}
    path.write_text(json.dumps(data), encoding="utf-8")
    expect_error(path, f"schema_version {baselines.SCHEMA_VERSION + 1}", "newer pytest-tokrate")


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d.pop("fingerprint"), "'fingerprint' is a required property"),
        (lambda d: d["runs"]["run 1"].pop("samples"), "field runs['run 1']"),
        (lambda d: d["fingerprint"]["hardware"].pop("cpu_model"), "field fingerprint.hardware"),
        (
            lambda d: d["runs"]["run 1"]["samples"]["decode_tps"].__setitem__(0, "fast"),
            "field runs['run 1'].samples.decode_tps[0]",
        ),
        (
            lambda d: d["runs"]["run 1"]["samples"]["decode_tps"].pop(),
            "runs['run 1'].samples.decode_tps",
        ),
        (lambda d: d.__setitem__("runs", {}), "field runs"),
        (lambda d: d.__setitem__("schema_version", 0), "field schema_version"),
        (lambda d: d["fingerprint"]["hardware"].__setitem__("hostname", "ci-7"), "hardware"),
        # Found by the fuzzer at 10x examples: settings that are no mapping of single
        # values reached the gate's comparison and raised there.
        (
            lambda d: d["fingerprint"]["engine"].__setitem__("server_settings", [1]),
            "field fingerprint.engine.server_settings",
        ),
        (
            lambda d: d["fingerprint"]["engine"].__setitem__("engine_settings", {"a": {}}),
            "field fingerprint.engine.engine_settings",
        ),
    ],
)
def test_missing_or_wrong_fields_are_named(
    saved: tuple[Path, dict[str, Any]], edit: Any, field: str
) -> None:
    path, data = saved
    edit(data)
    path.write_text(json.dumps(data), encoding="utf-8")
    expect_error(path, field)


def test_an_invalid_file_is_never_overwritten_silently(
    saved: tuple[Path, dict[str, Any]], measurement: Any
) -> None:
    path, _ = saved
    path.write_text("{broken", encoding="utf-8")
    with pytest.raises(BaselineError, match="left as it is; pass --tokrate-force-update"):
        baselines.save(path, document(measurement))
    assert path.read_text(encoding="utf-8") == "{broken"
    baselines.save(path, document(measurement), replace_invalid=True)
    baselines.load(path)


# -- atomic writes -----------------------------------------------------------------------


def test_interrupted_write_keeps_the_old_file_whole(
    saved: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = saved
    before = path.read_text(encoding="utf-8")

    def interrupted(fd: int) -> None:  # Ctrl-C arriving between the write and the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        baselines.write_atomic(path, "{}\n" * 10_000)
    assert path.read_text(encoding="utf-8") == before
    assert list(path.parent.iterdir()) == [path]  # the temporary file is gone


def test_killed_writer_leaves_no_half_file(tmp_path: Path) -> None:
    """SIGKILL in the middle of many writes: every file is a complete old or new version."""
    script = textwrap.dedent(
        f"""
        import json, sys
        from pathlib import Path
        from pytest_tokrate.gate.store import write_atomic
        target = Path({str(tmp_path)!r}) / "big.json"
        i = 0
        while True:
            i += 1
            write_atomic(target, json.dumps({{"i": i, "pad": "x" * 2_000_000}}))
            if i == 3:
                print("ready", flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    proc.kill()
    proc.wait()
    data = json.loads((tmp_path / "big.json").read_text(encoding="utf-8"))
    assert data["i"] >= 3 and len(data["pad"]) == 2_000_000
    # a leftover temporary file (if the kill hit mid-write) is hidden and never loaded
    assert [p.name for p in baselines.iter_files(tmp_path)] == ["big.json"]
    for leftover in baselines.leftover_temp_files(tmp_path):
        assert leftover.name.startswith(".big.json.")


def test_unwritable_directory_is_a_clear_error(tmp_path: Path, measurement: Any) -> None:
    blocker = tmp_path / "baselines"
    blocker.write_text("a file where the directory should be", encoding="utf-8")
    target = baselines.baseline_path(blocker, measurement.test_id, "embedded")
    is_a_file = (
        rf"{blocker} is a file, not a directory: move it away, or point --tokrate-baseline-dir"
    )
    with pytest.raises(BaselineError, match=rf"cannot write baseline .*: {is_a_file}"):
        baselines.save(target, document(measurement))
    lock = baselines.DirectoryLock(blocker)
    with pytest.raises(BaselineError, match=is_a_file):
        lock.__enter__()
    # Read, it is not "no baseline yet, record one" (the test would pass unjudged).
    with pytest.raises(BaselineError, match=rf"cannot read baseline .*: {is_a_file}"):
        baselines.load_if_exists(target)


# -- two processes at once -----------------------------------------------------------------

WRITER = """
import json, sys, time
from pathlib import Path
from pytest_tokrate.gate import store as baselines
root, name, doc_file = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
doc = json.loads(Path(doc_file).read_text())
with baselines.DirectoryLock(root):
    print("locked", name, time.monotonic(), flush=True)
    for i in range(15):
        for test in (f"t.py::test_{name}_{i}", "t.py::test_shared"):
            d = dict(doc, test_id=test)
            d["recorded_at"] = name
            baselines.save(baselines.baseline_path(root, test, "embedded"), d)
    time.sleep(0.3)
    print("unlocked", name, time.monotonic(), flush=True)
"""


def test_two_processes_updating_at_once(tmp_path: Path, measurement: Any) -> None:
    doc_file = tmp_path / "doc.json"
    doc_file.write_text(json.dumps(document(measurement)), encoding="utf-8")
    root = tmp_path / "baselines"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), name, str(doc_file)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    events = sorted(
        (float(t), what, who)
        for out in outputs
        for what, who, t in (line.split() for line in out.splitlines())
    )
    # the lock serialised them: one locked and unlocked before the other locked
    assert [e[1] for e in events] == ["locked", "unlocked", "locked", "unlocked"]
    assert events[0][2] == events[1][2]
    found, invalid = baselines.scan(root)
    assert invalid == []
    assert len(found) == 31  # 15 + 15 own files and the shared one: no update lost
    shared = baselines.load(baselines.baseline_path(root, "t.py::test_shared", "embedded"))
    assert shared.data["recorded_at"] == events[-1][2]  # the later writer's version, whole


def test_lock_timeout_names_the_directory(tmp_path: Path) -> None:
    with baselines.DirectoryLock(tmp_path):
        script = (
            "import sys; from pathlib import Path\n"
            "from pytest_tokrate.gate import store as baselines\n"
            "try:\n"
            f"    baselines.DirectoryLock(Path({str(tmp_path)!r}), timeout_s=0.3).__enter__()\n"
            "except baselines.BaselineError as e:\n"
            "    print(e); sys.exit(7)\n"
        )
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 7, proc.stderr
    assert "another process has been updating the baselines in" in proc.stdout
    assert str(tmp_path) in proc.stdout
