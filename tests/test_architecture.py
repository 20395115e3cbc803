"""The package's architecture, enforced: the dependency rules of ARCHITECTURE.md.

Read from the source with :mod:`ast` (every ``import``, at module level or inside a
function; ``if TYPE_CHECKING:`` blocks excepted, they never run), so a new module is
covered without editing a list here.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pytest_tokrate"
ROOT = "pytest_tokrate"
#: Which subpackages each may import (besides itself and the top-level modules
#: ``errors`` and ``_version``). The layers of ARCHITECTURE.md, as data.
ALLOWED: dict[str, frozenset[str]] = {
    "machine": frozenset({"backends.models"}),
    "core": frozenset({"machine", "backends.base"}),
    "backends": frozenset({"core", "machine"}),
    "quality": frozenset({"core", "backends.base"}),
    "gate": frozenset({"core", "machine", "quality"}),
    "reports": frozenset({"core", "machine", "quality", "gate"}),
    "cli": frozenset({"core", "machine", "gate"}),
    "plugin": frozenset({"core", "machine", "backends", "quality", "gate", "reports"}),
}
#: Deprecated aliases of moved modules: each may import only its new home.
ALIASES = {"config": "core.settings", "compare": "gate.rule", "calibration": "machine.calibration"}


@cache
def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:``."""
    out: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


@cache
def imports(module: str) -> frozenset[str]:
    """Absolute names of what ``module`` imports at run time (third-party included)."""
    path = modules()[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                names.add(full if full in modules() else base)
    return frozenset(names)


def internal(module: str) -> set[str]:
    return {name for name in imports(module) if name in modules() and name != ROOT}


def area(module: str) -> str:
    """``core``, ``plugin``, ... or a top-level module's own name (``errors``, ``cli``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def test_every_module_is_seen() -> None:
    assert len(modules()) > 40
    assert {"pytest_tokrate.gate.rule", "pytest_tokrate.plugin"} <= set(modules())


def test_nothing_imports_the_plugin() -> None:
    offenders = {
        module: sorted(n for n in internal(module) if area(n) == "plugin")
        for module in modules()
        if area(module) != "plugin"
    }
    assert not {m: n for m, n in offenders.items() if n}


def test_only_the_plugin_imports_pytest() -> None:
    offenders = {
        module
        for module in modules()
        if area(module) != "plugin"
        and any(n.split(".")[0] in {"pytest", "_pytest", "pluggy"} for n in imports(module))
    }
    assert not offenders


def test_subpackages_depend_only_on_their_layers() -> None:
    bad = []
    for module in modules():
        own = area(module)
        if own in ALIASES:
            allowed_names = {f"{ROOT}.{ALIASES[own]}", f"{ROOT}._moved"}
            bad += [(module, n) for n in internal(module) if n not in allowed_names]
            continue
        allowed = ALLOWED.get(own)
        if allowed is None:  # the package root, errors, _version: no internal imports
            bad += [(module, n) for n in internal(module) if area(n) not in {"errors", "_version"}]
            continue
        for name in internal(module):
            target = area(name)
            if target in {own, "errors", "_version"}:
                continue
            dotted = name.removeprefix(f"{ROOT}.")
            if target in allowed or any(dotted.startswith(a) for a in allowed if "." in a):
                continue
            bad.append((module, name))
    assert not bad, "imports against the layers of ARCHITECTURE.md:\n" + "\n".join(
        f"{a} -> {b}" for a, b in sorted(bad)
    )


def test_no_import_cycles() -> None:
    graph = {m: internal(m) for m in modules()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph[node]:
                cycles.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


def test_every_module_outside_the_plugin_imports_without_pytest() -> None:
    pure = sorted(m for m in modules() if area(m) != "plugin")
    code = (
        "import importlib, json, sys, warnings\n"
        "warnings.simplefilter('ignore', DeprecationWarning)\n"
        "for name in ('pytest', '_pytest', 'pluggy'):\n"
        "    sys.modules[name] = None  # any import of pytest now fails\n"
        f"failed = {{}}\nfor m in {pure!r}:\n"
        "    try:\n        importlib.import_module(m)\n"
        "    except Exception as e:\n        failed[m] = repr(e)\n"
        "print(json.dumps(failed))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout) == {}


@pytest.mark.parametrize("module", sorted(modules()))
def test_no_module_is_over_400_lines(module: str) -> None:
    lines = len(modules()[module].read_text(encoding="utf-8").splitlines())
    assert lines <= 400, f"{module}: {lines} lines"


@pytest.mark.parametrize(("old", "new"), sorted(ALIASES.items()))
def test_deprecated_alias_warns_and_reexports(old: str, new: str) -> None:
    code = (
        "import importlib, json, warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    old = importlib.import_module('{ROOT}.{old}')\n"
        f"new = importlib.import_module('{ROOT}.{new}')\n"
        "public = [n for n in dir(new) if not n.startswith('_')]\n"
        "print(json.dumps({'same': all(getattr(old, n) is getattr(new, n) for n in public),\n"
        "    'count': len(public),\n"
        "    'warned': [str(w.message) for w in caught if w.category is DeprecationWarning]}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout)
    assert result["same"] and result["count"] > 3
    assert result["warned"] == [
        f"{ROOT}.{old} moved to {ROOT}.{new}; the old path goes in the next release"
    ]


@pytest.mark.parametrize("module", sorted(modules()))
def test_no_function_is_over_60_lines(module: str) -> None:
    tree = ast.parse(modules()[module].read_text(encoding="utf-8"))
    long = [
        f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > 60
    ]
    assert not long, f"{module}: {long}"
