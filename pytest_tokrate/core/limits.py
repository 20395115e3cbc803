"""Bounds on what users hand us to read: file size, file kind, nesting depth.

A suite, a baseline or a ``file://`` variable is read whole into memory and then walked
recursively, so each is bounded before it is trusted: only regular files are read (a FIFO
would block forever, ``/dev/zero`` would never end), at most a stated number of bytes,
and a parsed document may nest only so deep (Python's recursion limit is about 1,000;
nothing we read needs more than a few dozen levels).

The errors are :class:`InputLimitError`; callers wrap them in their own error type with
the file named (a suite's collection error, a baseline's "refresh it").
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pytest_tokrate.errors import TokrateError

#: The most a suite, a baseline or a ``file://`` variable may hold. A baseline of 10,000
#: rounds is about 2 MB; a suite with long prompts a few hundred KB.
MAX_FILE_BYTES = 16 * 1024 * 1024
#: The deepest nesting any document we read may have (a suite or baseline needs < 10).
MAX_DEPTH = 64


class InputLimitError(TokrateError):
    """A file or document beyond the bounds above; the message names the value."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def read_bounded(path: str | os.PathLike[str], limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of the regular file at ``path``, refusing anything else.

    Opened without blocking (a FIFO with no writer would otherwise block in ``open``)
    and checked with ``fstat`` on the open descriptor, so a path swapped for a device
    between a check and the read is still refused. Reads at most ``limit + 1`` bytes.
    Raises :class:`InputLimitError` for a special file or a file over ``limit``, and
    ``OSError`` (missing, unreadable) for the caller to word.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(os.fspath(path), flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InputLimitError(f"{Path(path)} is {_kind(mode)}: only regular files are read")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise InputLimitError(
            f"{Path(path)} holds more than {limit:,} bytes, the most that is read: "
            "is it the file you meant?"
        )
    return b"".join(chunks)


def nesting_depth(data: object, limit: int = MAX_DEPTH) -> int:
    """How deep ``data`` (dicts and lists) nests, counted without recursion; stops
    counting at ``limit + 1`` so a huge document costs no more than needed."""
    deepest = 0
    stack: list[tuple[object, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: list[object] = list(value.values())
        elif isinstance(value, (list, tuple)):
            children = list(value)
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def check_depth(data: object, what: str, limit: int = MAX_DEPTH) -> None:
    """Raise :class:`InputLimitError` when ``data`` nests deeper than ``limit``."""
    if nesting_depth(data, limit) > limit:
        raise InputLimitError(
            f"{what} nests more than {limit} levels deep: no suite or baseline needs that; "
            "is it the file you meant?"
        )


__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "InputLimitError",
    "check_depth",
    "nesting_depth",
    "read_bounded",
]
