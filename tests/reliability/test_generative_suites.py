"""Generative tests of a suite's resource bombs and special files (issue 15).

Each example writes a suite that would, unbounded, cost minutes, gigabytes or a hang:
YAML alias bombs of random fan-out and depth under random keys, nesting 10 to 20,000
levels deep in random places, ``file://`` variables pointing at a FIFO, ``/dev/zero``, a
directory, a symlink out of the tree or into a loop, a missing file or a sparse file over
the size limit. Each load runs in a time box and must end in seconds with the cases or a
:class:`SuiteError` naming the file, never another exception; bombs and deep files must
also stay within a small memory peak. A handful of pytester runs prove that collection
ends the same way end to end.

Counts are in ``EXAMPLES`` (derandomized, scaled by ``TOKRATE_FUZZ_SCALE`` as in
``test_loader_fuzzing``, whose settings and checks these reuse).
"""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st
from reliability_support import assert_clean, output
from test_loader_fuzzing import SCALE, check_suite_file, fuzz

from pytest_tokrate.core.limits import MAX_DEPTH, MAX_FILE_BYTES
from pytest_tokrate.quality.suite_yaml import MAX_VALUES

EXAMPLES = {"alias_bombs": 60, "deep_nesting": 60, "file_variables": 60}
#: The number of generative examples this module runs (for the closing note of the issue).
TOTAL_EXAMPLES = sum(EXAMPLES.values()) * SCALE
#: What one load may take: refused inputs end in milliseconds; the bound leaves room for
#: CI machines shared with other jobs.
SECONDS = 5.0
#: What one load may allocate at its peak (tracemalloc): an unbounded bomb needs gigabytes.
PEAK_BYTES = 64 * 1024 * 1024

T = TypeVar("T")


def within(seconds: float, func: Callable[[], T]) -> T:
    """``func()`` in a daemon thread: a read that blocks fails the test, not the run."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = func()
        except BaseException as exc:  # handed to the test's thread below
            box["error"] = exc

    start = time.monotonic()
    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"the load was still running after {seconds} s"
    assert time.monotonic() - start < seconds
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def load_measured(path: Path) -> str | None:
    """Load ``path`` in the time box with its allocation peak bounded."""
    tracemalloc.start()
    try:
        error = within(SECONDS, lambda: check_suite_file(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BYTES, f"the load allocated {peak:,} bytes at its peak"
    return error


# -- alias bombs -------------------------------------------------------------------------------

#: Where a case uses the bomb's last anchor ``{a}``.
PLACES = {
    "format": "format: {a}",
    "options": "options: {a}",
    "option value": "options: {{num_predict: 4, stop: {a}}}",
    "check value": "checks: [{{type: jsonschema, value: {a}}}]",
    "vars": "vars: {{x: {a}}}",
    "messages": "messages: [{{role: user, content: {a}}}]",
    "thresholds": "thresholds: {{ttft: {a}}}",
    "marks": "marks: [{a}]",
}


def bomb_suite(fan: int, levels: int, place: str, as_map: bool) -> str:
    """Anchors ``a0`` .. ``a{levels-1}``, each holding ``fan`` aliases of the one before,
    defined under a first case's ``format``, and the last one used under ``place``."""
    lines = ["cases:", "  - name: defs", "    prompt: hi", "    format:"]
    lines.append(f"      l0: &a0 [{', '.join(['x'] * fan)}]")
    for i in range(1, levels):
        if as_map:
            body = ", ".join(f"k{j}: *a{i - 1}" for j in range(fan))
            lines.append(f"      l{i}: &a{i} {{{body}}}")
        else:
            lines.append(f"      l{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fan)}]")
    use = PLACES[place].format(a=f"*a{levels - 1}")
    prompt = "" if place == "messages" else "    prompt: hi\n"
    return "\n".join(lines) + f"\n  - name: use\n{prompt}    {use}\n"


@fuzz("alias_bombs", EXAMPLES)
@given(
    fan=st.integers(2, 12),
    levels=st.integers(1, 10),
    place=st.sampled_from(sorted(PLACES)),
    as_map=st.booleans(),
)
def test_alias_bombs_are_refused_fast(
    tmp_path: Path, fan: int, levels: int, place: str, as_map: bool
) -> None:
    path = tmp_path / "tokrate_bomb.yaml"
    path.write_text(bomb_suite(fan, levels, place, as_map), encoding="utf-8")
    error = load_measured(path)
    if fan**levels > MAX_VALUES:
        assert error is not None and "expands to more than" in error, error
        assert "&a" in error  # the anchor that crossed the bound is named


# -- deep nesting ------------------------------------------------------------------------------


def nested(depth: int, style: str, indent: int) -> str:
    """A value ``depth`` levels deep, flow or block style (block at ``indent`` spaces)."""
    if style == "flow list":
        return "[" * depth + "1" + "]" * depth
    if style == "flow map":
        return "{k: " * depth + "1" + "}" * depth
    if style == "unclosed":
        return "[" * depth
    pad = " " * indent
    rows = [f"{pad}{'  ' * i}{'- ' if style == 'block list' else 'k:'}" for i in range(depth)]
    return "\n" + "\n".join(rows) + " 1"


DEEP_PLACES = ["format", "options", "check value", "vars", "messages", "thresholds", "top"]


def deep_suite(depth: int, style: str, place: str) -> str:
    if place == "top":
        return f"cases: [{{name: a, prompt: hi}}]\ndescription: {nested(depth, style, 2)}\n"
    head = "cases:\n  - name: a\n"
    value = nested(depth, style, 8)
    uses = {
        "format": f"    prompt: hi\n    format: {value}",
        "options": f"    prompt: hi\n    options:\n      stop: {value}",
        "check value": (
            f"    prompt: hi\n    checks:\n      - type: jsonschema\n        value: {value}"
        ),
        "vars": f"    prompt: hi\n    vars:\n      x: {value}",
        "messages": f"    messages:\n      - role: user\n        content: {value}",
        "thresholds": f"    prompt: hi\n    thresholds:\n      ttft: {value}",
    }
    return head + uses[place] + "\n"


@fuzz("deep_nesting", EXAMPLES)
@given(
    depth=st.integers(10, 20_000),
    style=st.sampled_from(["flow list", "flow map", "unclosed", "block list", "block map"]),
    place=st.sampled_from(DEEP_PLACES),
)
def test_deep_nesting_is_refused_without_recursion(
    tmp_path: Path, depth: int, style: str, place: str
) -> None:
    if style.startswith("block"):
        depth = min(depth, 1500)  # indentation grows the file as depth squared
    path = tmp_path / "tokrate_deep.yaml"
    path.write_text(deep_suite(depth, style, place), encoding="utf-8")
    error = load_measured(path)
    if depth > MAX_DEPTH:
        assert error is not None, "a suite nesting past the bound loaded"
        assert "nests more than" in error or "YAML syntax error" in error, error
        assert "RecursionError" not in error


# -- file:// variables -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A suite directory holding every kind of file a variable may point at."""
    root = tmp_path_factory.mktemp("files")
    (root / "outside.txt").write_text("outside\n", encoding="utf-8")
    home = root / "suite"
    (home / "sub").mkdir(parents=True)
    (home / "ok.txt").write_text("  inside  \n", encoding="utf-8")
    (home / "sub" / "ok2.txt").write_text("deeper", encoding="utf-8")
    (home / "latin1.txt").write_bytes(b"caf\xe9")
    os.mkfifo(home / "fifo")
    (home / "link_in").symlink_to(home / "ok.txt")
    (home / "link_out").symlink_to(root / "outside.txt")
    (home / "loop_a").symlink_to(home / "loop_b")
    (home / "loop_b").symlink_to(home / "loop_a")
    with open(home / "big.txt", "wb") as big:  # sparse: costs no disk
        big.truncate(MAX_FILE_BYTES + 1)
    return home


#: file:// target -> (outcome without the opt-in, outcome with it); None: it loads.
TARGETS: dict[str, tuple[str | None, str | None]] = {
    "ok.txt": (None, None),
    "sub/ok2.txt": (None, None),
    "sub/../ok.txt": (None, None),
    "link_in": (None, None),
    "fifo": ("named pipe", "named pipe"),
    "sub": ("a directory", "a directory"),
    "": ("a directory", "a directory"),
    "/dev/zero": ("outside the suite's directory", "character device"),
    "/dev/null": ("outside the suite's directory", "character device"),
    "link_out": ("outside the suite's directory", None),
    "../outside.txt": ("outside the suite's directory", None),
    "{root}/outside.txt": ("outside the suite's directory", None),
    "loop_a": ("symbolic links", "symbolic links"),
    "missing.txt": ("does not exist", "does not exist"),
    "big.txt": (f"more than {MAX_FILE_BYTES:,} bytes", f"more than {MAX_FILE_BYTES:,} bytes"),
    "latin1.txt": ("not UTF-8", "not UTF-8"),
}


@fuzz("file_variables", EXAMPLES)
@given(
    target=st.sampled_from(sorted(TARGETS)),
    opt_in=st.booleans(),
    case_level=st.booleans(),
    uses=st.integers(1, 3),
)
def test_file_variables_read_only_regular_files_in_the_tree(
    tree: Path, target: str, opt_in: bool, case_level: bool, uses: int
) -> None:
    ref = target.replace("{root}", str(tree.parent))
    variables = f'vars: {{x: "file://{ref}"}}'
    prompt = "{{x}} " * uses
    text = ("allow_files_outside: true\n" if opt_in else "") + (
        f'cases:\n  - name: a\n    prompt: "{prompt}"\n    {variables}\n'
        if case_level
        else f'{variables}\ncases:\n  - name: a\n    prompt: "{prompt}"\n'
    )
    path = tree / "tokrate_files.yaml"
    path.write_text(text, encoding="utf-8")
    error = within(SECONDS, lambda: check_suite_file(path))
    expected = TARGETS[target][opt_in]
    if expected is None:
        assert error is None, error
    else:
        assert error is not None and expected in error, error
        assert "variable 'x'" in error and "unknown variable" not in error, error
        if "outside" in expected:
            assert "allow_files_outside: true" in error  # the opt-in is named


# -- end to end --------------------------------------------------------------------------------

MODEL = ("-p", "no:cacheprovider", "--tokrate-model=smollm2", "--collect-only")


def test_an_alias_bomb_is_a_fast_collection_error(pytester: pytest.Pytester) -> None:
    pytester.path.joinpath("tokrate_bomb.yaml").write_text(bomb_suite(9, 9, "format", False))
    start = time.monotonic()
    result = pytester.runpytest(*MODEL)
    assert time.monotonic() - start < 30
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert "expands to more than 100,000 values through YAML aliases" in output(result)
    assert_clean(result)


def test_a_fifo_variable_is_a_collection_error_not_a_hang(pytester: pytest.Pytester) -> None:
    os.mkfifo(pytester.path / "fifo.txt")
    pytester.path.joinpath("tokrate_fifo.yaml").write_text(
        'vars: {x: "file://fifo.txt"}\ncases: [{name: a, prompt: "{{x}}"}]\n'
    )
    result = pytester.runpytest_subprocess(*MODEL, timeout=120)  # a hang fails, not stalls
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert "variable 'x': cannot read file://fifo.txt" in output(result)
    assert "is a named pipe (FIFO): only regular files are read" in output(result)
    assert_clean(result)


def test_a_file_outside_the_tree_needs_the_opt_in(pytester: pytest.Pytester) -> None:
    secret = pytester.path / "secret.txt"
    secret.write_text("s3cret")
    suites = pytester.mkdir("suites")
    suite = suites / "tokrate_outside.yaml"
    suite.write_text('vars: {x: "file://../secret.txt"}\ncases: [{name: a, prompt: "{{x}}"}]\n')
    refused = pytester.runpytest(*MODEL)
    assert refused.ret == pytest.ExitCode.INTERRUPTED
    text = output(refused)
    assert f"resolves to {str(secret)!r}, outside the suite's directory" in text
    assert "add `allow_files_outside: true` at the top of the suite" in text
    assert "s3cret" not in text
    assert_clean(refused)
    suite.write_text("allow_files_outside: true\n" + suite.read_text())
    allowed = pytester.runpytest(*MODEL)
    assert allowed.ret == pytest.ExitCode.OK
    assert "<SuiteItem a[smollm2]>" in output(allowed)
