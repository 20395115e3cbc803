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
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from pytest_tokrate.errors import BaselineError
from pytest_tokrate.machine.fingerprint import short_hash

DEFAULT_DIR = "baselines"
SUFFIX = ".json"
TMP_SUFFIX = ".tmp"
LOCK_TIMEOUT_S = 120.0
_SAFE = re.compile(r"[^A-Za-z0-9._\-\[\]=+,]")
_MAX_NAME = 120


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


def iter_files(root: Path) -> Iterator[Path]:
    """Baseline files under ``root`` in a stable order (hidden and temporary files skipped)."""
    if not root.is_dir():
        return
    for path in sorted(root.rglob(f"*{SUFFIX}")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file():
            yield path


def leftover_temp_files(root: Path) -> list[Path]:
    """Temporary files of interrupted writes (``.NAME.json.XXXX.tmp``)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob(f".*{SUFFIX}.*{TMP_SUFFIX}") if p.is_file())


# -- writing ------------------------------------------------------------------------------


def _write_error(path: Path, exc: OSError) -> BaselineError:
    return BaselineError(
        f"cannot write baseline {path} ({exc.strerror or exc}): make {path.parent} writable, "
        "or choose another directory with --tokrate-baseline-dir."
    )


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new, never half.

    The text goes to a temporary file in the same directory, which is flushed to disk
    and then renamed over the target (``os.replace`` is atomic on POSIX and Windows).
    """
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
    "SUFFIX",
    "TMP_SUFFIX",
    "DirectoryLock",
    "baseline_path",
    "iter_files",
    "leftover_temp_files",
    "write_atomic",
]
