"""Baseline files on disk, whatever they hold: their names, atomic writes, and the lock
that serialises updates. Pure file handling; :mod:`.store` validates and loads the content.

One file per test and environment::

    baselines/examples/test_speed/test_decode[smollm2]@embedded.json

Writes go to a temporary file in the same directory, are flushed to disk, then renamed
over the target, so a reader never sees half a file. Updates hold a lock on the baseline
directory, so two processes updating at once are serialised.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from pytest_tokrate.core.limits import MAX_FILE_BYTES, InputLimitError, read_bounded
from pytest_tokrate.errors import BaselineError
from pytest_tokrate.machine.fingerprint import short_hash

DEFAULT_DIR = "baselines"
SUFFIX = ".json"
TMP_SUFFIX = ".tmp"
LOCK_TIMEOUT_S = 120.0
_SAFE = re.compile(r"[^A-Za-z0-9._\-\[\]=+,]")
_MAX_NAME = 120
REFRESH_HINT = "refresh it with `pytest --tokrate-update-baselines` (see README, Baselines)"


# -- naming ---------------------------------------------------------------------------


def _safe(part: str) -> str:
    out = _SAFE.sub("_", part)
    if out in ("", ".", ".."):
        out = "_"
    if out.startswith("."):
        out = "_" + out[1:]
    return out.rstrip(". ") or "_"


def _ambiguous(name: str, python: bool) -> bool:
    """Whether writing ``::`` as ``.`` could make this name another test's.

    In a Python node id ``::`` only joins identifiers (``TestA::test_b``), which hold no
    dots, so ``TestA.test_b`` can be read back. A parametrize id (``test[a::b]``) or any
    other collector's name (a YAML case called ``a::b``) may hold both, and ``a::b`` would
    meet ``a.b``.
    """
    head, _, param = name.partition("[")
    if python:  # a dot in the head is no identifier: read back, it would be a "::"
        return "::" in param or "." in head
    return "::" in param or "::" in head


def baseline_path(root: Path, test_id: str, env: str) -> Path:
    """The file of ``test_id`` in environment ``env`` under ``root``.

    The test file's path becomes directories (without ``.py``), the rest of the node id
    the file name, then ``@env``. Characters that are unsafe in file names become ``_``;
    when that loses information (or the name is long) a short hash of the node id is
    added, so two tests never share a file.
    """
    module, sep, name = test_id.partition("::")
    if not sep:
        module, name = "", test_id
    python = module.endswith(".py")
    module = module.removesuffix(".py")
    dirs = [p for p in PurePosixPath(module.replace("\\", "/")).parts if p != "/"]
    safe_dirs = [_safe(p) for p in dirs]
    stem = name.replace("::", ".")
    safe_stem = _safe(stem).replace("@", "_")
    lossy = safe_dirs != dirs or safe_stem != stem or _ambiguous(name, python)
    if lossy or len(safe_stem) > _MAX_NAME:
        safe_stem = f"{safe_stem[:_MAX_NAME]}-{short_hash(test_id)[:8]}"
    return root.joinpath(*safe_dirs, f"{safe_stem}@{_safe(env)}{SUFFIX}")


def _walk(root: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    """The directories under ``root`` (hidden ones skipped), never through a symbolic
    link: a link to a directory elsewhere must not make its files this project's."""
    for top, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield Path(top), dirs, sorted(names)


def _looks_like_baseline(name: str) -> bool:
    """A baseline's file name: ``NAME@ENV.json`` (directories made from test paths never
    hold an ``@``, see :func:`_safe`)."""
    return name.endswith(SUFFIX) and "@" in name and not name.startswith(".")


def iter_files(root: Path) -> Iterator[Path]:
    """Baseline files under ``root`` in a stable order (hidden and temporary files skipped).

    Besides the ``.json`` files, what is named like a baseline but is no regular file (a
    directory, a FIFO, a device) is listed too, so that whoever reads it reports it
    instead of it being silently ignored; a symbolic-linked directory is not entered.
    """
    if not root.is_dir():
        return
    for top, dirs, names in _walk(root):
        for name in names:
            path = top / name
            if not name.endswith(SUFFIX) or name.startswith("."):
                continue
            if _looks_like_baseline(name) or path.is_file():
                yield path
        for name in [d for d in dirs if _looks_like_baseline(d)]:
            dirs.remove(name)  # a directory named like a baseline: reported, not entered
            yield top / name


def leftover_temp_files(root: Path) -> list[Path]:
    """Temporary files of interrupted writes (``.NAME.json.XXXX.tmp``): regular files
    only, never a link or a special file that happens to carry such a name."""
    if not root.is_dir():
        return []
    found: list[Path] = []
    pattern = re.compile(rf"\..*{re.escape(SUFFIX)}.*{re.escape(TMP_SUFFIX)}")
    for top, _dirs, names in os.walk(root, followlinks=False):
        for name in names:
            path = Path(top) / name
            if pattern.fullmatch(name) and _is_regular(path):
                found.append(path)
    return sorted(found)


def remove_files(
    doomed: list[tuple[Path, str]], failed: list[BaselineError]
) -> list[tuple[Path, str]]:
    """Remove each file (a link itself, never what it points at); the ones removed, and
    an error in ``failed`` for each that could not be."""
    removed = []
    for path, reason in doomed:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            failed.append(
                BaselineError(f"cannot remove {path} ({exc.strerror}): check its permissions.")
            )
            continue
        removed.append((path, reason))
    return removed


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def file_in_the_way(path: Path) -> Path | None:
    """The nearest directory on ``path``'s way that exists but is no directory (a
    ``baselines`` that is a regular file), or ``None``."""
    for parent in path.parents:
        try:
            mode = parent.stat().st_mode
        except OSError:
            continue
        return None if stat.S_ISDIR(mode) else parent
    return None


def not_a_directory(path: Path, what: str) -> BaselineError:
    """The error for a directory on the way to ``what`` that is a file."""
    return BaselineError(
        f"cannot {what}: {path} is a file, not a directory: move it away, or point "
        "--tokrate-baseline-dir (ini tokrate_baseline_dir) elsewhere."
    )


def link_outside(path: Path, root: Path) -> Path | None:
    """Where the symbolic link ``path`` leads when that is outside ``root``, else ``None``."""
    if not path.is_symlink():
        return None
    target = path.resolve()
    return None if root.resolve() in target.parents else target


# -- reading ------------------------------------------------------------------------------


def _read_error(path: Path, exc: OSError) -> BaselineError:
    """What a baseline that cannot be opened is, in words, with the fix."""
    if isinstance(exc, NotADirectoryError):
        blocker = file_in_the_way(path)
        if blocker is not None:
            return not_a_directory(blocker, f"read baseline {path}")
    if isinstance(exc, FileNotFoundError):
        fix = f"{REFRESH_HINT}."
    elif isinstance(exc, PermissionError):
        fix = "check its permissions."
    else:
        fix = f"remove or replace it, then {REFRESH_HINT}."
    return BaselineError(f"cannot read baseline {path} ({exc.strerror or exc}): {fix}")


def read_text(path: Path) -> str:
    """The text of a baseline file, read within bounds: a regular file of at most
    :data:`MAX_FILE_BYTES`, UTF-8; anything else is a :class:`BaselineError`."""
    try:
        raw = read_bounded(path, MAX_FILE_BYTES)
    except InputLimitError as exc:
        # A directory, FIFO, device or a file far too big where a baseline belongs.
        end = "" if str(exc).endswith("?") else "."
        raise BaselineError(
            f"baseline {exc}{end} Remove or rename it, then {REFRESH_HINT}."
        ) from None
    except OSError as exc:
        raise _read_error(path, exc) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BaselineError(
            f"baseline {path} is not UTF-8 text: delete it and {REFRESH_HINT}."
        ) from None


# -- writing ------------------------------------------------------------------------------


def _write_error(path: Path, exc: OSError) -> BaselineError:
    blocker = file_in_the_way(path)
    if blocker is not None:
        return not_a_directory(blocker, f"write baseline {path}")
    if path.is_dir():
        return BaselineError(
            f"cannot write baseline {path}: it is a directory, where the baseline file "
            "belongs: remove or rename it, then update again."
        )
    return BaselineError(
        f"cannot write baseline {path} ({exc.strerror or exc}): make {path.parent} writable, "
        "or choose another directory with --tokrate-baseline-dir."
    )


def refuse_special(path: Path) -> None:
    """Refuse to write where a directory, FIFO, socket or device stands in for the file:
    replacing it would destroy what is there, and --tokrate-force-update does not."""
    try:
        mode = path.lstat().st_mode
    except OSError:
        return
    if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
        return
    kind = "a directory" if stat.S_ISDIR(mode) else "a special file (FIFO, socket or device)"
    raise BaselineError(
        f"cannot write baseline {path}: it is {kind}, where the baseline file belongs: "
        "remove or rename it, then update again."
    )


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new, never half.

    The text goes to a temporary file in the same directory, which is flushed to disk
    and then renamed over the target (``os.replace`` is atomic on POSIX and Windows).
    """
    refuse_special(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; baselines are shared files
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _write_error(path, exc) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class DirectoryLock:
    """An exclusive lock on the baseline directory, held by one process at a time.

    POSIX: ``flock`` on the directory itself (no lock file to commit by mistake); the
    kernel releases it when the process dies, so an interrupted update never leaves a
    stale lock. Elsewhere: ``msvcrt.locking`` on ``.tokrate.lock`` in the directory.
    """

    def __init__(
        self,
        directory: Path,
        timeout_s: float = LOCK_TIMEOUT_S,
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        self.directory = directory
        self.timeout_s = timeout_s
        #: Called once when the lock is taken and this process starts waiting for it.
        self.on_wait = on_wait
        #: How long this process waited for the lock (0.0 when it was free).
        self.waited_s = 0.0
        self._fd: int | None = None

    def _try(self, fd: int) -> bool:
        if os.name == "posix":
            import fcntl

            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True
        import msvcrt  # pragma: no cover - Windows

        try:  # pragma: no cover - Windows
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:  # pragma: no cover - Windows
            return False
        return True  # pragma: no cover - Windows

    def __enter__(self) -> DirectoryLock:
        blocker = file_in_the_way(self.directory / "x")
        if blocker is not None:
            raise not_a_directory(blocker, "update the baselines")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            if os.name == "posix":
                fd = os.open(self.directory, os.O_RDONLY)
            else:  # pragma: no cover - Windows
                fd = os.open(self.directory / ".tokrate.lock", os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise BaselineError(
                f"cannot open the baseline directory {self.directory} ({exc.strerror}): "
                "create it or choose another with --tokrate-baseline-dir."
            ) from None
        start = time.monotonic()
        deadline = start + self.timeout_s
        while not self._try(fd):
            if self.on_wait is not None and self.waited_s == 0.0:
                self.on_wait()
            self.waited_s = max(time.monotonic() - start, 1e-9)
            if time.monotonic() > deadline:
                os.close(fd)
                raise BaselineError(
                    f"another process has been updating the baselines in {self.directory} "
                    f"for over {self.timeout_s:g} s: wait for it to finish, then run again."
                )
            time.sleep(0.05)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


__all__ = [
    "DEFAULT_DIR",
    "LOCK_TIMEOUT_S",
    "REFRESH_HINT",
    "SUFFIX",
    "TMP_SUFFIX",
    "DirectoryLock",
    "baseline_path",
    "file_in_the_way",
    "iter_files",
    "leftover_temp_files",
    "link_outside",
    "not_a_directory",
    "read_text",
    "refuse_special",
    "remove_files",
    "write_atomic",
]
