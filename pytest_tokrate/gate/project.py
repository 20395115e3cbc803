"""A project's files as the console script sees them, without running pytest: the project
root, the baseline directory its ini settings name, and whether the test a baseline
belongs to is still defined. It only reads files: no pytest, no git.
"""

from __future__ import annotations

import ast
import configparser
import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_tokrate.core.limits import MAX_FILE_BYTES, InputLimitError, read_bounded
from pytest_tokrate.gate.store import Baseline

_ROOT_MARKERS = ("pyproject.toml", "pytest.ini", "tox.ini", "setup.cfg", ".git")


def find_root(start: Path) -> Path:
    """The nearest directory holding a pytest config file (or .git); else ``start``."""
    for candidate in (start, *start.parents):
        if any((candidate / marker).exists() for marker in _ROOT_MARKERS):
            return candidate
    return start


def _text(path: Path) -> str | None:
    """A project file's text, read within bounds (a FIFO or device is never waited on);
    ``None`` when it cannot be read."""
    try:
        return read_bounded(path, MAX_FILE_BYTES).decode("utf-8")
    except (OSError, InputLimitError, ValueError):
        return None


def configured_dir(root: Path) -> str | None:
    """``tokrate_baseline_dir`` from pytest's ini settings in ``root``, when set."""
    pytest_ini = root / "pytest.ini"
    if pytest_ini.is_file():
        parser = configparser.ConfigParser()
        try:
            parser.read_string(_text(pytest_ini) or "", str(pytest_ini))
        except configparser.Error:
            return None
        return parser.get("pytest", "tokrate_baseline_dir", fallback=None)
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and sys.version_info >= (3, 11):
        import tomllib

        try:
            data = tomllib.loads(_text(pyproject) or "")
        except ValueError:
            return None
        value = data.get("tool", {}).get("pytest", {}).get("ini_options", {})
        found = value.get("tokrate_baseline_dir")
        return None if found is None else str(found)
    return None


# -- obsolete baselines ----------------------------------------------------------------


def _defined_names(module: Path) -> set[tuple[str, ...]] | None:
    """``(name,)`` for module-level functions/assignments, ``(Class, method)`` for methods;
    ``None`` when the module cannot be parsed (then nothing in it is pruned)."""
    text = _text(module)
    if text is None:
        return None
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    names: set[tuple[str, ...]] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add((node.name,))
        elif isinstance(node, ast.ClassDef):
            names.add((node.name,))
            for child in node.body:
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add((node.name, child.name))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update((t.id,) for t in targets if isinstance(t, ast.Name))
    return names


def obsolete_reason(b: Baseline, root: Path) -> str | None:
    """Why the baseline's test no longer exists, or ``None`` when it may still exist."""
    module, _, rest = b.test_id.partition("::")
    path = root / module
    try:
        if not path.exists():
            return f"{module} no longer exists"
    except (OSError, ValueError):  # a name no file can have: judge nothing, prune nothing
        return None
    if path.suffix != ".py" or not rest:
        return None
    parts = tuple(p.split("[", 1)[0] for p in rest.split("::"))
    names = _defined_names(path)
    if names is None or parts in names:
        return None
    return f"{'.'.join(parts)} is no longer defined in {module}"


def prune_plan(
    found: Sequence[Baseline], root: Path, directory: Path
) -> tuple[list[tuple[Path, str]], int]:
    """The baselines of ``directory`` to remove, each with why, and how many were left
    alone as another project's: in a directory outside ``root`` (shared by several
    projects), a baseline whose test file is not in this project is not ours to judge."""
    shared = not directory.is_relative_to(root)
    doomed, foreign = [], 0
    for b in found:
        if shared and not (root / b.test_id.partition("::")[0]).is_file():
            foreign += 1
        elif reason := obsolete_reason(b, root):
            doomed.append((b.path, reason))
    return doomed, foreign


__all__ = ["configured_dir", "find_root", "obsolete_reason", "prune_plan"]
