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
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pytest_tokrate.errors import BaselineError

# Re-exported: the plugin's glue and the console script reach the whole store through this
# module. The glue reads ``store.LOCK_TIMEOUT_S`` when it takes the lock, so a test that
# patches it here shortens the wait.
from pytest_tokrate.gate.files import (
    DEFAULT_DIR,
    LOCK_TIMEOUT_S,
    DirectoryLock,
    baseline_path,
    iter_files,
    leftover_temp_files,
    write_atomic,
)
from pytest_tokrate.gate.records import (
    SCHEMA_VERSION,
    build,
    measurement_environment,
    run_key,
    run_record,
)

REFRESH_HINT = "refresh it with `pytest --tokrate-update-baselines` (see README, Baselines)"


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


def parse(text: str, where: str, path: Path | None = None) -> Baseline:
    """Parse and validate the text of a baseline file."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BaselineError(
            f"baseline {where} is not valid JSON ({exc}): it may be a conflicted merge or an "
            f"interrupted copy. Fix it, or delete it and {REFRESH_HINT}."
        ) from None
    validate(data, where)
    return Baseline(path or Path(where), data)


def load(path: Path) -> Baseline:
    """Read and validate one baseline file."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BaselineError(
            f"baseline {path} is not UTF-8 text: delete it and {REFRESH_HINT}."
        ) from None
    except OSError as exc:
        raise BaselineError(
            f"cannot read baseline {path} ({exc.strerror}): check its permissions."
        ) from None
    return parse(text, str(path), path)


def load_if_exists(path: Path) -> Baseline | None:
    if not path.exists():
        return None
    return load(path)


def scan(root: Path) -> tuple[list[Baseline], list[BaselineError]]:
    """Every baseline under ``root``: the valid ones, and an error for each invalid one."""
    good: list[Baseline] = []
    bad: list[BaselineError] = []
    for path in iter_files(root):
        try:
            good.append(load(path))
        except BaselineError as exc:
            bad.append(exc)
    return good, bad


def dumps(data: Mapping[str, Any]) -> str:
    """Stable formatting: two-space indent, sorted keys, UTF-8, final newline."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


# -- saving -------------------------------------------------------------------------------


def save(path: Path, data: Mapping[str, Any], replace_invalid: bool = False) -> None:
    """Validate ``data`` and write it; an existing invalid file is kept unless told."""
    text = dumps(data)
    validate(json.loads(text), str(path))
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
    "dumps",
    "iter_files",
    "leftover_temp_files",
    "load",
    "load_if_exists",
    "measurement_environment",
    "parse",
    "run_key",
    "run_record",
    "save",
    "scan",
    "validate",
    "write_atomic",
]
