"""Baseline files: loading with validation, and saving (the files' names, atomic writes
and the directory lock are in :mod:`.files`, what a file holds is built by :mod:`.records`;
both re-exported here).

One pretty-printed JSON file per test and environment, with sorted keys and one value per
line, so two branches rarely conflict and a diff reads well::

    baselines/examples/test_speed/test_decode[smollm2]@embedded.json

Every load is validated against ``schemas/baseline.schema.json``; a file that fails is a
:class:`~pytest_tokrate.errors.BaselineError` naming the file and the field, and is never
overwritten silently; a save writes the whole file atomically.

No pytest import: the console script uses this module too.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pytest_tokrate.core.limits import MAX_DEPTH, nesting_depth
from pytest_tokrate.errors import BaselineError

# Re-exported: the plugin's glue and the console script reach the whole store through this
# module. The glue reads ``store.LOCK_TIMEOUT_S`` when it takes the lock, so a test that
# patches it here shortens the wait.
from pytest_tokrate.gate.files import (
    DEFAULT_DIR,
    LOCK_TIMEOUT_S,
    REFRESH_HINT,
    DirectoryLock,
    baseline_path,
    file_in_the_way,
    iter_files,
    leftover_temp_files,
    link_outside,
    not_a_directory,
    read_text,
    refuse_special,
    remove_files,
    write_atomic,
)
from pytest_tokrate.gate.records import (
    SCHEMA_VERSION,
    build,
    measurement_environment,
    run_key,
    run_record,
)

#: Digits of the longest integer a baseline may hold (see :func:`_integer`).
_MAX_DIGITS = 19


# -- validation and loading -------------------------------------------------------------


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    path = Path(__file__).parent.parent / "schemas" / "baseline.schema.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _field(path: Any) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f"[{str(part)!r}]"
    return out or "(top level)"


def validate(data: Any, where: str) -> None:
    """Raise :class:`BaselineError` naming ``where`` and the field when ``data`` is invalid."""
    if not isinstance(data, dict):
        raise BaselineError(
            f"baseline {where} is not a JSON object (it holds a {type(data).__name__}): "
            f"delete it and {REFRESH_HINT}."
        )
    version = data.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise BaselineError(
            f"baseline {where} has schema_version {version}, written by a newer "
            f"pytest-tokrate (this one reads up to {SCHEMA_VERSION}): upgrade pytest-tokrate, "
            "or delete the file and refresh it with this version."
        )
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        raise BaselineError(
            f"baseline {where} is invalid: field {_field(error.absolute_path)}: "
            f"{error.message}. Fix the field, or delete the file and {REFRESH_HINT}."
        )
    for label, run in data["runs"].items():
        for figure, values in run["samples"].items():
            if len(values) != run["rounds"]:
                raise BaselineError(
                    f"baseline {where} is invalid: field runs[{label!r}].samples.{figure}: "
                    f"{len(values)} values for {run['rounds']} rounds. Fix the field, or "
                    f"delete the file and {REFRESH_HINT}."
                )
        quality = run["quality"]
        if quality is not None and quality["passed"] > quality["total"]:
            raise BaselineError(
                f"baseline {where} is invalid: field runs[{label!r}].quality.passed: "
                f"{quality['passed']} passed rounds out of {quality['total']}. Fix the field, "
                f"or delete the file and {REFRESH_HINT}."
            )


@dataclass(frozen=True)
class Baseline:
    """A validated baseline file."""

    path: Path
    data: dict[str, Any]

    @property
    def test_id(self) -> str:
        return str(self.data["test_id"])

    @property
    def environment(self) -> str:
        return str(self.data["environment"])

    @property
    def fingerprint(self) -> dict[str, Any]:
        fp: dict[str, Any] = self.data["fingerprint"]
        return fp

    @property
    def runs(self) -> dict[str, dict[str, Any]]:
        runs: dict[str, dict[str, Any]] = self.data["runs"]
        return runs

    @property
    def model(self) -> str | None:
        name = self.fingerprint["model"].get("name")
        return None if name is None else str(name)


class _Unfit(float):
    """A number no baseline can hold (``NaN``, an infinity, ``1e400``, a 30-digit
    integer), kept with its text so that the error shows what the file says."""

    text: str

    def __new__(cls, text: str) -> _Unfit:
        value = super().__new__(cls, "nan")
        value.text = text if len(text) <= 24 else f"{text[:12]}... ({len(text)} characters)"
        return value


def _number(text: str) -> float:
    value = float(text)
    return value if math.isfinite(value) else _Unfit(text)


def _integer(text: str) -> int | float:
    # No count, size or id a baseline stores needs 19 digits; longer ones would overflow
    # floats in the statistics (and past 4,300 digits Python refuses to convert them).
    return int(text) if len(text.lstrip("-")) <= _MAX_DIGITS else _Unfit(text)


def _unfit_field(data: Any) -> tuple[list[Any], str] | None:
    """The first value (in file order) no baseline can hold, and what is wrong with it."""
    stack: list[tuple[list[Any], Any]] = [([], data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, _Unfit):
            return path, f"{value.text} is not a finite number in range"
        if isinstance(value, str) and not _encodable(value):
            return path, f"{value!r} holds a lone surrogate, which is not text"
        items = (
            value.items()
            if isinstance(value, dict)
            else enumerate(value)
            if isinstance(value, list)
            else ()
        )
        children = []
        for key, child in items:
            if isinstance(key, str) and not _encodable(key):
                return [*path, key], f"the key {key!r} holds a lone surrogate, which is not text"
            children.append(([*path, key], child))
        stack.extend(reversed(children))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _too_deep(where: str) -> BaselineError:
    return BaselineError(
        f"baseline {where} nests more than {MAX_DEPTH} levels deep: no baseline needs that. "
        f"Delete it and {REFRESH_HINT}."
    )


def decode(text: str, where: str) -> Any:
    """The JSON document in ``text``, refusing what no baseline can hold: ``NaN`` and
    infinities (literal, or a number such as ``1e400`` that overflows), integers too long
    to be numbers, lone surrogates, and nesting past :data:`MAX_DEPTH`."""
    try:
        data = json.loads(text, parse_constant=_Unfit, parse_float=_number, parse_int=_integer)
    except RecursionError:  # the C decoder's own guard against very deep nesting
        raise _too_deep(where) from None
    except ValueError as exc:
        raise BaselineError(
            f"baseline {where} is not valid JSON ({exc}): it may be a conflicted merge or an "
            f"interrupted copy. Fix it, or delete it and {REFRESH_HINT}."
        ) from None
    if nesting_depth(data) > MAX_DEPTH:
        raise _too_deep(where)
    unfit = _unfit_field(data)
    if unfit is not None:
        raise BaselineError(
            f"baseline {where} is invalid: field {_field(unfit[0])}: {unfit[1]}. Fix the "
            f"field, or delete it and {REFRESH_HINT}."
        )
    return data


def parse(text: str, where: str, path: Path | None = None) -> Baseline:
    """Parse and validate the text of a baseline file."""
    data = decode(text, where)
    validate(data, where)
    return Baseline(path or Path(where), data)


def load(path: Path) -> Baseline:
    """Read and validate one baseline file (its content; see :func:`load_if_exists` for
    whether it belongs where it lies)."""
    return parse(read_text(path), str(path), path)


def misplaced(
    baseline: Baseline, test_id: str | None = None, env: str | None = None, root: Path | None = None
) -> str | None:
    """Why ``baseline`` is not the file of the test it was found for, or ``None``.

    With ``test_id`` and ``env`` (the gate knows which test it loads for): the file must
    hold that test and environment. Otherwise its own ``test_id`` must name its path
    (under ``root`` when given, else as the end of its path): a file copied or renamed
    from another test's name holds that test's figures and must not judge this one.
    """  # fmt: skip
    held = f"test_id {baseline.test_id!r} in environment {baseline.environment!r}"
    fix = f"it was copied or renamed from another test's file: delete it and {REFRESH_HINT}."
    if test_id is not None and env is not None:
        if (baseline.test_id, baseline.environment) == (test_id, env):
            return None
        return (
            f"baseline {baseline.path} holds {held}, not {test_id!r} in {env!r}, the test it "
            f"was loaded for: {fix}"
        )
    own = baseline_path(root or Path(), baseline.test_id, baseline.environment)
    here = baseline.path.parts if root is not None else baseline.path.parts[-len(own.parts) :]
    if here == own.parts:
        return None
    return f"baseline {baseline.path} holds {held}, whose file is {own}: {fix}"


def load_if_exists(
    path: Path, test_id: str | None = None, env: str | None = None
) -> Baseline | None:
    """The baseline at ``path``, ``None`` when there is none; an error when the file
    cannot be read, is invalid or belongs to another test (see :func:`misplaced`)."""
    if not os.path.lexists(path):
        blocker = file_in_the_way(path)
        if blocker is not None:  # a `baselines` that is a file: not "no baseline yet"
            raise not_a_directory(blocker, f"read baseline {path}")
        return None
    baseline = load(path)
    wrong = misplaced(baseline, test_id, env)
    if wrong is not None:
        raise BaselineError(wrong)
    return baseline


def scan(root: Path) -> tuple[list[Baseline], list[BaselineError]]:
    """Every baseline under ``root``: the valid ones, and an error for each invalid one
    (unreadable, invalid, misplaced, or a link leading out of ``root``)."""
    blocker = file_in_the_way(root / "x")
    if blocker is not None:
        raise not_a_directory(blocker, f"read the baselines in {root}")
    good: list[Baseline] = []
    bad: list[BaselineError] = []
    for path in iter_files(root):
        try:
            good.append(_scanned(path, root))
        except BaselineError as exc:
            bad.append(exc)
    return good, bad


def _scanned(path: Path, root: Path) -> Baseline:
    target = link_outside(path, root)
    if target is not None:
        raise BaselineError(
            f"baseline {path} is a symbolic link to {target}, outside {root}: it is not read. "
            "Replace the link with the file itself."
        )
    baseline = load(path)
    wrong = misplaced(baseline, root=root)
    if wrong is not None:
        raise BaselineError(wrong)
    return baseline


def dumps(data: Mapping[str, Any]) -> str:
    """Stable formatting: two-space indent, sorted keys, UTF-8, final newline."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


# -- saving -------------------------------------------------------------------------------


def save(path: Path, data: Mapping[str, Any], replace_invalid: bool = False) -> None:
    """Validate ``data`` and write it; an existing invalid file is kept unless told."""
    text = dumps(data)
    validate(json.loads(text), str(path))
    refuse_special(path)  # a directory or FIFO where the file belongs: never "replaced"
    if not replace_invalid and path.exists():
        try:
            load(path)
        except BaselineError as exc:
            raise BaselineError(
                f"{exc} The file was left as it is; pass --tokrate-force-update to replace it."
            ) from None
    write_atomic(path, text)


__all__ = [
    "DEFAULT_DIR",
    "LOCK_TIMEOUT_S",
    "SCHEMA_VERSION",
    "Baseline",
    "DirectoryLock",
    "baseline_path",
    "build",
    "decode",
    "dumps",
    "iter_files",
    "leftover_temp_files",
    "load",
    "load_if_exists",
    "measurement_environment",
    "misplaced",
    "parse",
    "read_text",
    "remove_files",
    "run_key",
    "run_record",
    "save",
    "scan",
    "validate",
    "write_atomic",
]
