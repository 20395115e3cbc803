"""A suite's variables: ``file://`` values read within bounds, ``{{name}}`` filled in.

A ``file://`` value is read only when it is a regular file (a FIFO would block,
``/dev/zero`` never ends) of at most :data:`~pytest_tokrate.core.limits.MAX_FILE_BYTES`
inside the suite file's directory tree, after symlinks: a suite shared in a pull request
must not pull ``/etc`` or ``~/.ssh`` into a prompt (and so into reports) unless it says
so with ``allow_files_outside: true`` at its top level. Relative paths are relative to
the suite file; each file is read once per suite.

Filling variables in multiplies text (a prompt of a thousand ``{{article}}``, in a
hundred cases), so the texts of one suite are bounded in all by :data:`MAX_SUITE_TEXT`
characters, counted before any string is built.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_tokrate.core.limits import MAX_FILE_BYTES, InputLimitError, read_bounded
from pytest_tokrate.errors import did_you_mean
from pytest_tokrate.quality.suite_schema import Locator, path_text

_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
#: The most characters a suite's prompts, messages, system prompts and variable files
#: may hold in all once variables are filled in (a million-token context is ~4 MB).
MAX_SUITE_TEXT = 4 * MAX_FILE_BYTES
#: The top-level suite key that lets ``file://`` read outside the suite's directory tree.
OPT_IN = "allow_files_outside"

Problems = list[tuple[int, str]]


@dataclass
class SuiteTexts:
    """What one suite's variables may read and how much text they may make."""

    base_dir: Path
    allow_outside: bool = False
    budget: int = MAX_SUITE_TEXT
    files: dict[str, str] = field(default_factory=dict)  # resolved path -> its text
    #: Variables whose file could not be read: reported once, not again where used.
    unreadable: set[str] = field(default_factory=set)

    def read(self, key: str, ref: str) -> str:
        """The text of ``file://ref`` for the variable ``key``; raises ValueError with
        the message (the variable, the path and why)."""
        file = self.base_dir / ref
        resolved = self.inside(f"variable {key!r}: file://{ref}", file)
        if resolved not in self.files:
            self.files[resolved] = _read_text(key, ref, file)
            self.charge(len(self.files[resolved]), f"variable {key!r} (file://{ref})")
        return self.files[resolved]

    def inside(self, what: str, file: Path) -> str:
        """The real path of ``file``; raises ValueError naming ``what`` when it lies
        outside the suite's directory tree and the suite has not opted in."""
        resolved = os.path.realpath(file)
        home = os.path.realpath(self.base_dir)
        if not self.allow_outside and not Path(resolved).is_relative_to(home):
            raise ValueError(
                f"{what} resolves to {resolved!r}, outside the suite's directory {home!r}: a "
                "suite reads files only from its own directory tree; move the file next to "
                f"the suite, or add `{OPT_IN}: true` at the top of the suite to allow it"
            )
        return resolved

    def charge(self, size: int, what: str) -> None:
        """Take ``size`` characters from the budget; raises ValueError when spent."""
        self.budget -= size
        if self.budget < 0:
            raise ValueError(
                f"{what}: with it, the suite's texts pass {MAX_SUITE_TEXT:,} characters in "
                f"all once variables are filled in (this one: {size:,}); use large variables "
                "in fewer places, or shorten them"
            )


def _read_text(key: str, ref: str, file: Path) -> str:
    try:
        return read_bounded(file).decode("utf-8").strip()
    except InputLimitError as exc:
        why = str(exc)
    except FileNotFoundError:
        why = f"{str(file)!r} does not exist"
    except OSError as exc:
        why = f"{str(file)!r}: {exc.strerror or exc.__class__.__name__}"
    except UnicodeDecodeError:
        why = f"{str(file)!r} is not UTF-8 text"
    raise ValueError(
        f"variable {key!r}: cannot read file://{ref}: {why}; give a regular text file, "
        "relative to the suite file"
    )


def load_vars(
    raw: Mapping[str, Any],
    at: list[Any],
    texts: SuiteTexts,
    locate: Locator,
    problems: Problems,
) -> dict[str, str]:
    """The variables of ``raw`` as text, ``file://`` values read; problems appended."""
    out: dict[str, str] = {}
    for key, value in raw.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if text.startswith("file://"):
            try:
                text = texts.read(key, text[len("file://") :])
            except ValueError as exc:
                problems.append((locate.line([*at, key]), str(exc)))
                texts.unreadable.add(key)
                continue
        out[key] = text
    return out


def fill(
    text: str | None,
    variables: Mapping[str, str],
    at: list[Any],
    texts: SuiteTexts,
    locate: Locator,
    problems: Problems,
) -> str | None:
    """``text`` with each ``{{name}}`` replaced by its variable; problems appended."""
    if text is None:
        return None
    found = list(_VAR.finditer(text))
    names = {m.group(1) for m in found}
    if names & texts.unreadable - set(variables):
        return text  # its variable's file is already reported
    missing = sorted(names - set(variables))
    if missing:
        known = ", ".join(sorted(variables)) or "none defined"
        hints = "".join(did_you_mean(m, variables) for m in missing)
        problems.append(
            (
                locate.line(at),
                f"{path_text(at, locate.data)}: unknown variable(s) "
                f"{', '.join('{{' + m + '}}' for m in missing)}{hints}: define them under "
                f"`vars:` (known: {known})",
            )
        )
        return text
    size = len(text) + sum(len(variables[m.group(1)]) - len(m.group(0)) for m in found)
    try:
        texts.charge(size, path_text(at, locate.data))
    except ValueError as exc:
        problems.append((locate.line(at), str(exc)))
        return text
    return _VAR.sub(lambda m: variables[m.group(1)], text)


__all__ = ["MAX_SUITE_TEXT", "OPT_IN", "SuiteTexts", "fill", "load_vars"]
