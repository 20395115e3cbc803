"""Writing report files without losing anything the path already names.

A regular file (or a new path) is replaced atomically and gets the mode the umask gives
an ordinary file; a symlink or a special file (a device, a FIFO) is written through, never
replaced; ``/dev/stdout`` and ``/dev/fd/N`` go to the open descriptor, so a shell redirect
is appended to, not truncated.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_tokrate.errors import ReportError


def _descriptor(path: Path) -> int | None:
    """The open descriptor a path names: ``/dev/stdout``, ``/dev/fd/3``, else None."""
    text = str(path)
    if text in ("/dev/stdout", "/dev/stderr"):
        return 1 if text == "/dev/stdout" else 2
    match = re.fullmatch(r"/(?:dev|proc/self)/fd/(\d+)", text)
    return int(match.group(1)) if match else None


def _write_descriptor(fd: int, data: bytes) -> None:
    # Reopening /dev/stdout would truncate a `> console.log` redirect: write where it is.
    for stream in (sys.stdout, sys.stderr):  # what Python buffered comes first
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _in_place(path: Path) -> bool:
    """A symlink or a special file (device, FIFO, socket): written through, never replaced."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    return stat.S_ISLNK(mode) or not stat.S_ISREG(mode)


def _write_in_place(path: Path, data: bytes) -> None:
    """Write through a link or into a special file, as ``open(path, "wb")`` would."""
    # O_NONBLOCK: opening a FIFO that nobody reads would wait for ever; this way it fails
    # at once (ENXIO). It is cleared once open, so that a slow reader is waited for.
    nonblock = getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | nonblock, 0o666)
    try:
        if nonblock:
            import fcntl

            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~nonblock)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _replace(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)  # the only way to read it; set straight back
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a report is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes(path: Path, data: bytes, what: str | None = None) -> None:
    """Write a report file: a regular file or a new path atomically, with the umask's mode;
    a symlink or special file in place, never replaced; ``/dev/stdout`` to the descriptor.
    ``what`` names the file in the error (default: the path)."""
    if path.name in ("", ".", ".."):  # names a directory: refused before any is made
        raise ReportError(f"cannot write {what or path}: the path names a directory, not a file")
    try:
        fd = _descriptor(path)
        if fd is not None:
            _write_descriptor(fd, data)
        elif _in_place(path):
            _write_in_place(path, data)
        else:
            _replace(path, data)
    except OSError as exc:
        hint = " (a FIFO that no process reads: start its reader first)"
        hint = hint if exc.errno == errno.ENXIO else ""
        raise ReportError(f"cannot write {what or path}: {exc.strerror or exc}{hint}") from None
    except ValueError as exc:  # a NUL byte or a lone surrogate in the name
        raise ReportError(
            f"cannot write {what or path!r}: not a usable file name ({exc})"
        ) from None


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, report: Mapping[str, Any]) -> None:
    write_text(path, json.dumps(report, indent=1, sort_keys=True, allow_nan=False) + "\n")


__all__ = ["write_bytes", "write_json", "write_text"]
