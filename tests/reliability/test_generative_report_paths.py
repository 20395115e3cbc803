"""Hypothesis over report and plot paths: a documented error or a written report, never
a traceback, a hang, or another file harmed.

Each example builds a fresh sandbox under ``tmp_path`` holding what a path may meet: a
regular file, a directory, a FIFO nobody reads, a link to a file, a dangling link, link
loops, a read-only directory; then draws a path from those names, ``..``, ``.``, empty
parts, unicode, names too long, NUL bytes and lone surrogates, relative or absolute, or
``/dev/null``. The path goes through the start-up check of the report options
(``plugin/report_paths.check_writable``) and then, when the check accepts it, and also
when it does not, through the writer (``reports/files.write_bytes``), time-boxed.

What must hold: the check raises :class:`UsageError` or accepts; the writer raises
:class:`ReportError` or writes; no write waits on a FIFO; nothing outside the sandbox
changes; in the sandbox only the target changes, and as docs/bad-input.md says: a
regular file is replaced, a link keeps pointing where it did and its file gets the
report, a FIFO stays a FIFO, no temporary file is left. The example-based cases live in
test_report_files.py.

Derandomized with fixed example counts; ``TOKRATE_FUZZ_SCALE=10`` multiplies them.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from reliability_support import FUZZ_SCALE, fuzz_settings

from pytest_tokrate.errors import ReportError, UsageError
from pytest_tokrate.plugin.report_paths import check_writable
from pytest_tokrate.reports.files import write_bytes

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file types")

SCALE = FUZZ_SCALE
EXAMPLES = {"report_file": 250, "plots_dir": 80}
#: The number of fuzz examples this module runs (for the closing note of the issue).
TOTAL_EXAMPLES = sum(EXAMPLES.values()) * SCALE
TIME_BOX_S = 5.0
DATA = b'{"report": 1}\n'
KEEP = b"keep me\n"


def fuzz(name: str) -> Any:
    return fuzz_settings(EXAMPLES[name])


def build_sandbox(parent: Path) -> Path:
    """A fresh directory holding one of each kind of thing a report path may name."""
    box = Path(tempfile.mkdtemp(dir=parent))
    (box / "file.json").write_bytes(KEEP)
    (box / "dir").mkdir()
    (box / "dir" / "inner.json").write_bytes(KEEP)
    os.mkfifo(box / "fifo")
    (box / "link").symlink_to("file.json")
    (box / "dangling").symlink_to("missing.json")
    (box / "loop").symlink_to("loop")
    (box / "loop_a").symlink_to("loop_b")
    (box / "loop_b").symlink_to("loop_a")
    (box / "ro").mkdir()
    (box / "ro" / "old.json").write_bytes(KEEP)
    (box / "ro").chmod(0o555)
    return box


def snapshot(root: Path) -> dict[str, tuple[str, bytes | str | None]]:
    """Every entry under ``root``, links not followed: its kind and content or target."""
    out: dict[str, tuple[str, bytes | str | None]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            mode = os.lstat(path).st_mode
            key = str(path.relative_to(root))
            if stat.S_ISLNK(mode):
                out[key] = ("link", os.readlink(path))
            elif stat.S_ISREG(mode):
                out[key] = ("file", path.read_bytes())
            else:
                out[key] = ("dir" if stat.S_ISDIR(mode) else "special", None)
    return out


PARTS = st.sampled_from(
    [
        "file.json", "dir", "fifo", "link", "dangling", "loop", "loop_a", "ro", "old.json",
        "inner.json", "new.json", "sub", "..", ".", "", "a" * 300, "x\0y.json", "\ud800.json",
        "\u00e9t\u00e9 \u2603.json", "-", "~", " ", "missing.json",
    ]
)  # fmt: skip


@st.composite
def report_path(draw: Any, box: Path) -> str:
    special = draw(st.sampled_from([None, None, None, None, "/dev/null", "", str(box)]))
    if special is not None:
        return special
    parts = draw(st.lists(PARTS | st.text(min_size=1, max_size=8), min_size=1, max_size=4))
    text = "/".join(parts)
    return str(box / text) if draw(st.booleans()) else text


def _inside(path: str, root: Path) -> bool:
    """Whether ``path`` (relative to the working directory) lies lexically in ``root``."""
    try:
        full = os.path.normpath(os.path.abspath(path))
    except ValueError:
        return True  # a NUL byte: nothing can be opened under this name
    return full == str(root) or full.startswith(str(root) + os.sep)


def write_time_boxed(path: Path) -> None:
    """``write_bytes`` in a thread: a write that waits on a FIFO fails the example."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            write_bytes(path, DATA)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(TIME_BOX_S)
    if thread.is_alive():
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb"):  # release the writer
            pass
        pytest.fail(f"writing the report to {path!r} did not end within {TIME_BOX_S:g} s")
    if outcome[0] is not None and not isinstance(outcome[0], ReportError):
        raise outcome[0]


def _changed(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def check_sandbox(box: Path, before: dict[str, Any], targets: set[str]) -> None:
    """Only the targets changed, each as the docs say, and no temporary file is left."""
    after = snapshot(box)
    for key in _changed(before, after):
        assert key in targets, f"{key} changed: {before.get(key)} -> {after.get(key)}"
        kind, content = after.get(key, (None, None))
        old_kind = before.get(key, (None, None))[0]
        assert old_kind in (None, kind), f"{key} was a {old_kind}, is now a {kind}"
        assert kind in ("file", "dir"), f"{key} became a {kind}"
        if kind == "file":
            assert content == DATA, key
    temporary = [k for k in after if Path(k).name.startswith(".") and k not in targets]
    assert not temporary, temporary


def targets_of(path: str, box: Path) -> set[str]:
    """The sandbox entries a write to ``path`` may change: the file, what a link names,
    and the directories created on the way (each relative to the sandbox)."""
    try:
        full = Path(os.path.normpath(os.path.abspath(path)))
        rel = full.relative_to(box)
    except ValueError:
        return set()
    found = {str(rel), *(str(p) for p in rel.parents if str(p) != ".")}
    try:
        real = Path(os.path.realpath(full))
    except (ValueError, OSError):  # a NUL byte, a surrogate: nothing can be written there
        return found
    if real.is_relative_to(box):
        found.add(str(real.relative_to(box)))
    return found


@pytest.fixture
def world(tmp_path: Path) -> Any:
    """Where the sandboxes go, a file outside them that must stay as it is, and the
    working directory each example runs in (restored after)."""
    outside = tmp_path / "outside.json"
    outside.write_bytes(KEEP)
    boxes = tmp_path / "boxes"
    boxes.mkdir()
    cwd = os.getcwd()
    yield boxes, outside
    os.chdir(cwd)
    for dirpath, dirnames, _ in os.walk(boxes):  # read-only directories, for the cleanup
        for name in dirnames:
            with_mode = Path(dirpath, name)
            if not with_mode.is_symlink():
                with_mode.chmod(0o755)


@fuzz("report_file")
@given(data=st.data())
def test_a_report_path_is_written_or_refused(world: Any, data: Any) -> None:
    boxes, outside = world
    box = build_sandbox(boxes)
    os.chdir(box)
    path = data.draw(report_path(box))
    before = snapshot(box)
    try:
        checked: Path | None = check_writable(Path(path), "--tokrate-report-json", False)
    except UsageError as exc:
        assert "--tokrate-report-json=" in str(exc) and "choose" in str(exc)
        checked = None
    if path == "/dev/null" or _inside(path, box):
        write_time_boxed(checked or Path(path))  # the writer alone gets the refused too
    check_sandbox(box, before, targets_of(path, box))
    assert outside.read_bytes() == KEEP


@fuzz("plots_dir")
@given(data=st.data())
def test_a_plots_directory_is_used_or_refused(world: Any, data: Any) -> None:
    boxes, outside = world
    box = build_sandbox(boxes)
    os.chdir(box)
    path = data.draw(report_path(box))
    before = snapshot(box)
    try:
        checked = check_writable(Path(path), "--tokrate-plots", True)
    except UsageError as exc:
        assert "--tokrate-plots=" in str(exc) and "choose" in str(exc)
        return
    assert snapshot(box) == before  # the check creates nothing
    if _inside(path, box):
        write_time_boxed(checked / "decode.png")
        targets = targets_of(str(checked / "decode.png"), box)
        check_sandbox(box, before, targets)
    assert outside.read_bytes() == KEEP
