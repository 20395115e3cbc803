"""Report files are written without harming what their path names: a regular file or a
new path is replaced atomically with the umask's mode; a symlink, a device or a FIFO is
written through in place and stays what it was; ``/dev/stdout`` and ``/dev/fd/N`` write
to the open descriptor; a failed write is a :class:`ReportError` naming the path."""

from __future__ import annotations

import os
import stat
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_tokrate.errors import ReportError
from pytest_tokrate.reports.document import write_bytes, write_json, write_text

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file types")


@pytest.fixture
def umask() -> Iterator[None]:
    """Restore the process umask after a test that sets it."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize(
    ("mask", "mode"),
    [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)],
    ids=["umask-022", "umask-077", "umask-002"],
)
def test_a_new_report_gets_the_umask_mode(
    tmp_path: Path, umask: None, mask: int, mode: int
) -> None:
    os.umask(mask)
    path = tmp_path / "out" / "report.json"
    write_json(path, {"a": 1})
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert path.read_text(encoding="utf-8") == '{\n "a": 1\n}\n'
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]  # no temporary left


def test_a_regular_file_is_replaced_atomically_with_the_umask_mode(
    tmp_path: Path, umask: None
) -> None:
    os.umask(0o022)
    path = tmp_path / "summary.md"
    path.write_text("old and longer content\n", encoding="utf-8")
    os.chmod(path, 0o600)
    before = path.stat().st_ino
    write_text(path, "new\n")
    assert path.read_text(encoding="utf-8") == "new\n"
    assert path.stat().st_ino != before  # a rename, not a rewrite in place
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


@posix_only
def test_a_plot_gets_the_umask_mode_and_keeps_a_symlink(tmp_path: Path, umask: None) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from pytest_tokrate.reports.plots import _save

    os.umask(0o022)
    fig = Figure()
    fig.add_subplot().plot([1, 2], [3, 4])
    path = tmp_path / "speed_vs_quality.png"
    _save(fig, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    target = tmp_path / "kept" / "plot.png"
    target.parent.mkdir()
    target.write_bytes(b"old")
    link = tmp_path / "latency_vs_concurrency.png"
    link.symlink_to(target)
    _save(fig, link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@posix_only
def test_a_symlink_stays_a_symlink_and_its_target_gets_the_report(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "report.json"
    target.parent.mkdir()
    target.write_text("an older and much longer report\n", encoding="utf-8")
    link = tmp_path / "report.json"
    link.symlink_to(target)
    write_json(link, {"b": 2})
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text(encoding="utf-8") == '{\n "b": 2\n}\n'  # truncated, not appended
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "report.json"]


@posix_only
def test_a_dangling_symlink_creates_its_target(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    link = tmp_path / "link.md"
    link.symlink_to(target)
    write_text(link, "# summary\n")
    assert link.is_symlink() and target.read_text(encoding="utf-8") == "# summary\n"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_gets_the_report_and_stays_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as fh:
            received.append(fh.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    write_text(fifo, "through the pipe\n")
    reader.join(timeout=10)
    assert received == [b"through the pipe\n"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="needs /dev/null")
def test_dev_null_stays_a_character_device() -> None:
    before = os.lstat("/dev/null")
    assert stat.S_ISCHR(before.st_mode)
    write_json(Path("/dev/null"), {"c": 3})
    after = os.lstat("/dev/null")
    assert stat.S_ISCHR(after.st_mode)
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)


@pytest.mark.skipif(not Path("/dev/fd").is_dir(), reason="needs /dev/fd")
@pytest.mark.parametrize("alias", ["/dev/fd/{fd}", "/proc/self/fd/{fd}"])
def test_a_descriptor_path_appends_to_the_open_file(tmp_path: Path, alias: str) -> None:
    """``--tokrate-report-json=/dev/stdout > console.log``: the console output so far stays."""
    if alias.startswith("/proc") and not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd")
    console = tmp_path / "console.log"
    with open(console, "wb") as fh:
        fh.write(b"console output\n")
        fh.flush()
        write_text(Path(alias.format(fd=fh.fileno())), "report\n")
        fh.write(b"more console output\n")
    assert console.read_bytes() == b"console output\nreport\nmore console output\n"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_device_is_a_report_error_and_stays_a_device() -> None:
    full = Path("/dev/full")
    before = os.lstat(full)
    if not stat.S_ISCHR(before.st_mode):
        pytest.skip("/dev/full is not a character device here")
    with pytest.raises(ReportError, match=r"^cannot write /dev/full: No space left on device"):
        write_json(full, {"d": 4})
    after = os.lstat(full)
    assert stat.S_ISCHR(after.st_mode)
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)


def test_a_path_under_a_file_is_a_report_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    path = tmp_path / "a-file" / "report.json"
    with pytest.raises(ReportError, match=rf"^cannot write {path}: "):
        write_json(path, {"e": 5})


@posix_only
def test_a_symlink_to_a_directory_is_a_report_error_and_stays(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    link = tmp_path / "report.json"
    link.symlink_to(tmp_path / "dir")
    with pytest.raises(ReportError, match=rf"^cannot write the plot {link}: Is a directory"):
        write_bytes(link, b"png", what=f"the plot {link}")
    assert link.is_symlink() and (tmp_path / "dir").is_dir()


def test_the_plugin_writes_through_a_linked_report_path(pytester: pytest.Pytester) -> None:
    """End to end: the option's path is not resolved at start-up, so the link survives."""
    pytester.makepyfile("def test_plain():\n    pass\n")
    target = pytester.path / "shared" / "report.json"
    target.parent.mkdir()
    target.write_text("kept until the report replaces it\n", encoding="utf-8")
    link = pytester.path / "report.json"
    link.symlink_to(target)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--tokrate-report-json={link}")
    assert result.ret == 0
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert '"tool"' in target.read_text(encoding="utf-8")


def test_the_plugin_appends_a_stdout_report_to_redirected_output(tmp_path: Path) -> None:
    """``--tokrate-report-json=/dev/stdout >> log``: the log keeps what it had."""
    import subprocess

    (tmp_path / "test_plain.py").write_text("def test_plain():\n    pass\n", encoding="utf-8")
    log = tmp_path / "console.log"
    log.write_text("earlier output\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in {"CI", "GITHUB_STEP_SUMMARY"}}
    with log.open("a", encoding="utf-8") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "--tokrate-report-json=/dev/stdout", "test_plain.py"],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=120,
        )  # fmt: skip
    text = log.read_text(encoding="utf-8")
    assert proc.returncode == 0, text
    assert text.startswith("earlier output\n") and '"tool"' in text and "1 passed" in text


@pytest.mark.parametrize("name", ["new/..", "report.json/..", "."])
def test_a_path_naming_a_directory_is_refused_before_anything_is_made(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the generative report-path suite: ``report.json/..`` made the directory
    ``report.json`` and then failed to write ``..``."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ReportError, match="names a directory, not a file"):
        write_bytes(Path(name), b"{}")
    assert list(tmp_path.iterdir()) == []
