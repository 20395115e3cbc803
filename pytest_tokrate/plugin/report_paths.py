"""Where the report files go: their options read and checked at start-up.

A path that cannot be written is a usage error before any test runs, not a lost report
at the end of a long run. Nothing is created here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from pytest_tokrate.errors import UsageError


class ReportSettings(NamedTuple):
    json_path: Path | None = None
    md_path: Path | None = None
    plots_dir: Path | None = None

    @property
    def any_file(self) -> bool:
        return any(p is not None for p in (self.json_path, self.md_path, self.plots_dir))


def check_writable(path: Path, setting: str, directory: bool) -> Path:
    """The nearest existing ancestor must be a writable directory; the path itself, if it
    exists, must be of the right kind. Nothing is created here.

    Links are not resolved: ``/dev/stdout`` or a link to a shared file is written
    through, never replaced by a new file (see ``reports.files.write_bytes``)."""
    try:
        os.fsencode(path)  # a lone surrogate cannot become a file name
        if "\0" in str(path):
            raise ValueError("embedded null byte")
    except ValueError as exc:
        raise UsageError(
            f"{setting}={str(path)!r}: not a usable file name ({exc}): choose another path."
        ) from None
    if not directory and path.name in ("", ".", ".."):
        raise UsageError(
            f"{setting}={str(path)!r}: the path names a directory, not a file: choose a file "
            "name such as report.json."
        )
    path = Path(os.path.abspath(path))
    try:
        return _check_kind_and_place(path, setting, directory)
    except OSError as exc:  # a name too long, a link loop in a parent, ...
        raise UsageError(
            f"{setting}={path}: cannot use this path ({exc.strerror or exc}): choose another path."
        ) from None


def _check_kind_and_place(path: Path, setting: str, directory: bool) -> Path:
    if path.exists() and path.is_dir() != directory:
        kind = "a directory" if directory else "a file"
        raise UsageError(
            f"{setting}={path}: the path exists and is not {kind}: choose another path."
        )
    if not directory and path.exists() and os.access(path, os.W_OK):
        return path  # an existing file, device or link we may write to
    probe = path if directory and path.exists() else path.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        why = "is not a directory" if not probe.is_dir() else "is not writable"
        raise UsageError(
            f"{setting}={path}: cannot write there, because {probe} {why}: choose a "
            "writable location (e.g. a path under the build directory)."
        )
    return path


def option_path(
    config: pytest.Config, name: str, ini: str, directory: bool, parse: Callable[[str, str], object]
) -> Path | None:
    """The path an option (or its ini twin, relative to the rootdir) names, checked."""
    value = config.getoption(ini)
    base = Path(config.invocation_params.dir)
    if value is None:
        raw = config.getini(ini)
        value = str(raw).strip() if raw else None
        base = config.rootpath
        if value:
            parse(name, value)
    if not value:
        return None
    return check_writable(base / value, f"--tokrate-{name}", directory)


__all__ = ["ReportSettings", "check_writable", "option_path"]
