"""Baseline files: naming, loading with validation, atomic writing, an inter-process lock
(what a file holds is built by :mod:`.records`, re-exported here).

One pretty-printed JSON file per test and environment, with sorted keys and one value per
line, so two branches rarely conflict and a diff reads well::

    baselines/examples/test_speed/test_decode[smollm2]@embedded.json

Every load is validated against ``schemas/baseline.schema.json``; a file that fails is a
:class:`~pytest_tokrate.errors.BaselineError` naming the file and the field, and is never
overwritten silently. Writes go to a temporary file in the same directory, are flushed to
disk, then renamed over the target, so a reader never sees half a file. Updates hold a lock
on the baseline directory, so two processes updating at once are serialised.

No pytest import: the console script uses this module too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import BaselineError
from .fingerprint import short_hash
from .records import (
    SCHEMA_VERSION,
    build,
    measurement_environment,
    run_key,
    run_record,
)

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
    module = module.removesuffix(".py")
    dirs = [p for p in PurePosixPath(module.replace("\\", "/")).parts if p != "/"]
    safe_dirs = [_safe(p) for p in dirs]
    stem = name.replace("::", ".")
    safe_stem = _safe(stem).replace("@", "_")
    lossy = safe_dirs != dirs or safe_stem != stem
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


# -- validation and loading -------------------------------------------------------------


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    path = Path(__file__).with_name("schemas") / "baseline.schema.json"
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
