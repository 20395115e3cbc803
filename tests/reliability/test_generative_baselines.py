"""Generative tests of baseline files that lie, and of the ``tokrate baselines`` script.

Each example is a real baseline (recorded from the real model) with one kind of lie in
it: an impossible sample (NaN, an infinity, ``1e400``, zero or negative where that cannot
be measured, a 30-digit integer, a string), nesting up to 20,000 levels deep, a
``test_id`` naming another test, or a special file where the file belongs (a FIFO, a
directory, a link out of the directory, a file too big). Each must end either in a loaded
baseline whose every sample is possible, or in a :class:`BaselineError` naming the file;
never another exception, never a hang (reads are time-boxed). The console script, run
in-process over a directory of such files, must name each bad file, end with its
documented exit code, and ``prune`` must remove exactly the obsolete valid files and the
leftovers of interrupted writes, nothing else.

Derandomized with fixed example counts (``EXAMPLES``; ``TOKRATE_FUZZ_SCALE`` multiplies
them), so CI sees the same inputs each time.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st
from reliability_support import FUZZ_SCALE, fuzz_settings
from test_loader_fuzzing import judge_each_run

from pytest_tokrate import cli
from pytest_tokrate.core.limits import MAX_DEPTH
from pytest_tokrate.errors import BaselineError
from pytest_tokrate.gate import store as baselines

SCALE = FUZZ_SCALE
EXAMPLES = {
    "sample_values": 150,
    "nesting": 40,
    "test_id": 60,
    "cli_directory": 25,
}
#: The number of generative examples this module runs (for the closing note of the issue).
TOTAL_EXAMPLES = sum(EXAMPLES.values()) * SCALE
TEST_ID = "tests/test_demo.py::test_demo[smollm2]"
ENV = "embedded"
#: What a stored sample may be, by figure (the oracle, written apart from the schema).
RATES = {"decode_tps", "decode_tps_client", "prefill_tps", "machine_ref_tps"}
RATES |= {"machine_ref_prefill_tps"}
DURATIONS = {"ttft", "tpot", "e2e"}
COUNTS = {"output_tokens", "prompt_tokens"}
T = TypeVar("T")


def generative(name: str) -> Any:
    return fuzz_settings(EXAMPLES[name])


def within(seconds: float, action: Callable[[], T]) -> T:
    """``action()``, failing the test if it takes longer (a read that blocks on a FIFO
    would otherwise hang CI); the thread is a daemon, so a hang cannot keep pytest alive."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = action()
        except BaseException as exc:  # handed to the test thread below
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: a read blocked"
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def possible(figure: str, value: Any) -> bool:
    """Whether a round could have measured ``value`` for ``figure``."""
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if not math.isfinite(value):
        return False
    if figure in RATES:
        return 0 < value <= 1e9
    if figure in DURATIONS:
        return 0 < value <= 1e6
    if figure in COUNTS:
        return float(value).is_integer() and 0 <= value <= 1e12
    if figure == "e2e_tps":
        return 0 <= value <= 1e9
    return abs(value) <= 1e15


@pytest.fixture(scope="module")
def real(measurement: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A baseline document of a real measurement (5 rounds of the real model), and the
    record and fingerprint the gate judges against it (the same run: the harness only
    needs a real one)."""
    fingerprint = baselines.measurement_environment(measurement)
    record = baselines.run_record(measurement)
    doc = baselines.build(TEST_ID, ENV, fingerprint, {"run 1": record})
    baselines.validate(json.loads(baselines.dumps(doc)), "fixture")
    return doc, record, fingerprint


def loaded_or_named(path: Path, test_id: str = TEST_ID, env: str = ENV) -> Any:
    """What the gate does with the file: the baseline, or the error (naming the file)."""
    try:
        return within(10, lambda: baselines.load_if_exists(path, test_id, env))
    except BaselineError as exc:
        assert str(path) in str(exc), str(exc)
        return exc


def assert_possible(loaded: baselines.Baseline, current: Any, fingerprint: Any) -> None:
    """A loaded baseline holds only possible samples, and the gate can judge with it."""
    for label, run in loaded.runs.items():
        for figure, values in run["samples"].items():
            bad = [v for v in values if not possible(figure, v)]
            assert not bad, f"{label}.{figure} loaded with {bad}"
    judge_each_run(loaded, current, fingerprint)


# -- impossible samples ---------------------------------------------------------------------

#: Values as JSON text: what a hand edit, a bad merge or another tool could leave.
LIES = st.sampled_from(
    ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "0", "0.0", "-0.0", "-1", "-3.5",
     "1e300", "1e10", "true", '"fast"', "[]", "{}", "1" + "0" * 30, "9" * 5000, "2.5"]
) | st.integers(-(10**25), 10**25).map(str) | st.floats(allow_nan=False).map(repr)  # fmt: skip


@generative("sample_values")
@given(data=st.data())
def test_impossible_samples_never_load(
    tmp_path: Path, real: tuple[dict[str, Any], dict[str, Any], dict[str, Any]], data: Any
) -> None:
    doc, current, fingerprint = real
    broken = copy.deepcopy(doc)
    samples = broken["runs"]["run 1"]["samples"]
    edits: list[tuple[str, int, str]] = []
    for n in range(data.draw(st.integers(1, 3))):
        figure = data.draw(st.sampled_from(sorted(samples)))
        index = data.draw(st.integers(0, len(samples[figure]) - 1))
        samples[figure][index] = f"@lie{n}@"  # a placeholder replaced by raw JSON text
        edits.append((figure, index, data.draw(LIES)))
    text = baselines.dumps(broken)
    for n, (_, _, raw) in enumerate(edits):
        text = text.replace(f'"@lie{n}@"', raw)
    path = baselines.baseline_path(tmp_path, TEST_ID, ENV)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    outcome = loaded_or_named(path)
    final = {(f, i): raw for f, i, raw in edits}  # a later edit of the same spot wins
    lies = [(f, i, raw) for (f, i), raw in final.items() if not possible(f, _value(raw))]
    if isinstance(outcome, BaselineError):
        return
    assert not lies, f"loaded with impossible samples {lies}"
    assert_possible(outcome, current, fingerprint)


def _value(raw: str) -> Any:
    """What the JSON text means, NaN and infinities included (the oracle's view)."""
    try:
        return json.loads(raw)
    except ValueError:
        return float("inf")  # 5,000 digits: no number a baseline can hold


def test_the_message_names_file_and_field(tmp_path: Path, real: Any) -> None:
    doc = copy.deepcopy(real[0])
    doc["runs"]["run 1"]["samples"]["decode_tps"][3] = 0
    path = tmp_path / "b.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(BaselineError) as info:
        baselines.load(path)
    assert (
        f"baseline {path} is invalid: field runs['run 1'].samples.decode_tps[3]: 0 is less "
        "than or equal to the minimum of 0" in str(info.value)
    )
    doc["runs"]["run 1"]["samples"]["ttft"][0] = "@big@"
    path.write_text(json.dumps(doc).replace('"@big@"', "1e400"), encoding="utf-8")
    with pytest.raises(BaselineError, match=r"samples.ttft\[0\]: 1e400 is not a finite number"):
        baselines.load(path)


# -- nesting --------------------------------------------------------------------------------


#: How deep a value at each spot already sits (the document's own levels).
SPOTS = {"top": 0, "run": 3, "options": 5, "samples": 4}


@generative("nesting")
@given(
    depth=st.integers(1, 20_000) | st.sampled_from([MAX_DEPTH - 8, MAX_DEPTH, 3_000, 20_000]),
    opener=st.sampled_from(["[", '{"k":']),
    where=st.sampled_from(sorted(SPOTS)),
)
def test_deep_nesting_is_a_named_error(
    tmp_path: Path, real: Any, depth: int, opener: str, where: str
) -> None:
    doc = copy.deepcopy(real[0])
    run = doc["runs"]["run 1"]
    spot = {"options": run["definition"]["options"], "run": run, "samples": run["samples"]}
    closer = "]" if opener == "[" else "}"
    deep = opener * depth + "1" + closer * depth
    if where != "top":
        spot[where]["deep"] = "@deep@"
    text = deep if where == "top" else json.dumps(doc).replace('"@deep@"', deep, 1)
    path = tmp_path / "deep@embedded.json"
    path.write_text(text, encoding="utf-8")
    too_deep = SPOTS[where] + depth > MAX_DEPTH
    try:
        within(10, lambda: baselines.load(path))
    except BaselineError as exc:
        assert str(path) in str(exc)
        assert too_deep == (f"nests more than {MAX_DEPTH} levels deep" in str(exc)), str(exc)
        return
    # Only free-form places (options, an unknown key of a run) may nest, within the bound.
    assert where in ("options", "run") and not too_deep


# -- a test_id naming another test ------------------------------------------------------------


@generative("test_id")
@given(
    test_id=st.text(min_size=1, max_size=40)
    | st.sampled_from(
        ["tests/test_demo.py::test_other[smollm2]", "tests/test_demo.py::test_demo[gemma]",
         "tests/other.py::test_demo[smollm2]", TEST_ID]
    ),
    env=st.sampled_from([ENV, "ci", "embedded "]),
)  # fmt: skip
def test_a_file_of_another_test_is_never_used(
    tmp_path: Path, real: Any, test_id: str, env: str
) -> None:
    doc = dict(real[0], test_id=test_id, environment=env)
    path = baselines.baseline_path(tmp_path, TEST_ID, ENV)  # where the gate looks
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    outcome = loaded_or_named(path)
    found, bad = baselines.scan(tmp_path)
    if (test_id, env) == (TEST_ID, ENV):
        assert isinstance(outcome, baselines.Baseline) and len(found) == 1
        return
    assert isinstance(outcome, BaselineError)
    assert not found and len(bad) == 1 and str(path) in str(bad[0])
    if "holds test_id" in str(outcome):  # not refused earlier for its content
        assert f"not {TEST_ID!r} in {ENV!r}, the test it was loaded for" in str(outcome)
        assert "copied or renamed" in str(outcome)
    # Without the test's name (what a directory scan knows), its own path must match.
    own = baselines.baseline_path(tmp_path, test_id, env) if "\0" not in test_id else None
    if own != path:
        assert isinstance(loaded_or_named(path, None, None), BaselineError)  # type: ignore[arg-type]


# -- special files and the console script ----------------------------------------------------

TEST_FILE = "def test_demo(tokrate):\n    tokrate.run('Hi')\n"
#: Kinds of entry in a generated baseline directory; ``keep`` ones must survive ``prune``.
KINDS = ["valid", "obsolete", "leftover", "nan", "deep", "misplaced", "fifo", "directory",
         "link-out", "huge"]  # fmt: skip
BAD = {"nan", "deep", "misplaced", "fifo", "directory", "link-out", "huge"}


def make_entry(root: Path, base: Path, kind: str, n: int, doc: dict[str, Any]) -> Path:
    """One entry of ``kind`` in ``base``; returns its path."""
    test_id = f"tests/test_demo.py::test_demo[m{n}]"
    if kind == "obsolete":
        test_id = f"tests/test_gone.py::test_demo[m{n}]"
    path = baselines.baseline_path(base, test_id, ENV)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(dict(doc, test_id=test_id))
    if kind == "leftover":
        path = path.with_name(f".{path.name}.x{n}.tmp")
    elif kind == "nan":
        text = text.replace("[", "[NaN, ", 1)
    elif kind == "deep":
        text = "[" * 5_000 + "]" * 5_000
    elif kind == "misplaced":
        text = json.dumps(dict(doc, test_id=f"tests/test_demo.py::test_demo[other{n}]"))
    elif kind == "fifo":
        os.mkfifo(path)
        return path
    elif kind == "directory":
        path.mkdir()
        return path
    elif kind == "link-out":
        target = root / f"outside{n}.json"
        target.write_text(text, encoding="utf-8")
        path.symlink_to(target)
        return path
    elif kind == "huge":
        with path.open("wb") as fh:
            fh.truncate(17 * 1024 * 1024)  # sparse: costs no disk
        return path
    path.write_text(text, encoding="utf-8")
    return path


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root`` with what it is (a link by its target, not followed)."""
    out = {}
    for top, dirs, names in os.walk(root, followlinks=False):
        for name in dirs + names:
            p = Path(top) / name
            kind = f"link:{os.readlink(p)}" if p.is_symlink() else "dir" if p.is_dir() else ""
            if not kind:
                kind = "fifo" if p.is_fifo() else str(p.stat().st_size)
            out[p.relative_to(root).as_posix()] = kind
    return out


def run_cli(root: Path, *argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = within(30, lambda: cli.main(["baselines", *argv, "--root", str(root)], out, err))
    return code, out.getvalue() + err.getvalue()


@generative("cli_directory")
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=6))
def test_console_script_over_a_directory_of_lies(
    tmp_path_factory: pytest.TempPathFactory, real: Any, kinds: list[str]
) -> None:
    root = tmp_path_factory.mktemp("project")
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\n", encoding="utf-8")
    (root / "tests").mkdir()
    (root / "tests/test_demo.py").write_text(TEST_FILE, encoding="utf-8")
    entries = [
        (k, make_entry(root, root / "baselines", k, n, real[0])) for n, k in enumerate(kinds)
    ]
    bad = [p for k, p in entries if k in BAD]
    doomed = {p for k, p in entries if k in ("obsolete", "leftover")}
    before = tree(root)
    expected = cli.EXIT_INVALID if bad else cli.EXIT_OK
    for argv in (["list"], ["list", "--json"], ["prune", "--check"], ["show", "test_demo"]):
        code, text = run_cli(root, *argv)
        wanted = expected
        if argv[0] == "prune" and not bad and doomed:
            wanted = cli.EXIT_REGRESSION
        if argv[0] == "show" and not any(k in ("valid", "obsolete") for k in kinds):
            wanted = cli.EXIT_NOT_FOUND
        assert code == wanted, (argv, text)
        assert "Traceback" not in text
        assert all(str(p) in text for p in bad), text
    assert tree(root) == before  # reading changed nothing
    code, text = run_cli(root, "prune")
    assert code == expected, text
    after = tree(root)
    gone = {root / name for name in set(before) - set(after)}
    assert gone == doomed, f"removed {gone}, expected {doomed}"
    assert all(before[k] == v for k, v in after.items())  # nothing else touched


def test_special_files_where_the_baseline_belongs(tmp_path: Path, real: Any) -> None:
    """The gate's read of each kind ends in an error that says what the entry is."""
    said = {
        "fifo": "is a named pipe (FIFO): only regular files are read. Remove or rename it",
        "directory": "is a directory: only regular files are read. Remove or rename it",
        "huge": "holds more than 16,777,216 bytes",
        "misplaced": "copied or renamed",
    }
    for n, (kind, fragment) in enumerate(said.items()):
        path = make_entry(tmp_path, tmp_path / "baselines", kind, n, real[0])
        error = loaded_or_named(path, f"tests/test_demo.py::test_demo[m{n}]", ENV)
        assert isinstance(error, BaselineError) and fragment in str(error), (kind, error)
    directory = baselines.baseline_path(tmp_path / "baselines", TEST_ID, ENV)
    directory.mkdir(parents=True)
    with pytest.raises(BaselineError, match="it is a directory, where the baseline file belongs"):
        baselines.save(directory, real[0], replace_invalid=True)
