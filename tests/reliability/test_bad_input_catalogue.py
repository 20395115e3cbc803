"""Keeps ``docs/bad-input.md`` true: one test per row of its table.

Rows read from the command line, ini, markers, ``tokrate.run()`` and YAML suites take
their input from the table itself (the "bad input" column is what the test runs);
baseline-file and server-response rows are described in words there and carried out by
the recipes below, keyed by the row id. Every row's outcome must be the one listed, its
excerpt must be in what the user sees, and no traceback may appear.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from reliability_support import assert_clean, output
from standin import OllamaStandin, OpenAIStandin

from pytest_tokrate.backends.base import Request
from pytest_tokrate.backends.ollama import OllamaBackend
from pytest_tokrate.backends.openai import OpenAIBackend
from pytest_tokrate.core.runner import Runner
from pytest_tokrate.errors import InfrastructureError

DOC = Path(__file__).resolve().parents[2] / "docs" / "bad-input.md"
MODEL = ("--tokrate-model=smollm2", "--tokrate-option=num_thread=1")
FAST = ("--tokrate-rounds=1", "--tokrate-warmup=0", "--tokrate-num-predict=8")
USES = "def test_uses(tokrate):\n    tokrate.run('Say hi.')\n"
STORY = "Write a long story about a dragon who lives in a castle."


@dataclass(frozen=True)
class Row:
    id: str
    where: str
    input: str  # the code span of the input column ("" when it has none)
    outcome: str
    excerpt: str


def _code(cell: str) -> str:
    start, end = cell.find("`"), cell.rfind("`")
    return cell[start + 1 : end] if 0 <= start < end else ""


def rows() -> list[Row]:
    out = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) != 5 or cells[0] in ("id", "---") or set(cells[0]) <= {"-"}:
            continue
        ident, where, given, outcome, seen = cells
        out.append(Row(ident, where, _code(given), outcome, _code(seen)))
    return out


ROWS = rows()


def test_the_table_is_complete_and_well_formed() -> None:
    ids = [r.id for r in ROWS]
    assert len(ids) == len(set(ids)) and len(ids) >= 70, ids
    assert {r.outcome for r in ROWS} == {
        "usage error",
        "test fails",
        "test errors",
        "collection error",
    }
    assert all(r.excerpt for r in ROWS), [r.id for r in ROWS if not r.excerpt]
    assert {r.id for r in ROWS if r.where == "baseline file"} == set(BASELINE_RECIPES)
    assert {r.id for r in ROWS if r.where.startswith("server")} == set(SERVER_RECIPES)


def check_pytest_outcome(row: Row, result: pytest.RunResult) -> None:
    text = output(result)
    assert row.excerpt in text, f"{row.id}: {row.excerpt!r} not in:\n{text}"
    assert_clean(result)
    if row.outcome == "usage error":
        assert result.ret == pytest.ExitCode.USAGE_ERROR, text
    elif row.outcome == "collection error":
        assert result.ret == pytest.ExitCode.INTERRUPTED, text
        assert "tokrate suite is invalid" in text
    elif row.outcome == "test fails":
        result.assert_outcomes(failed=1)
    else:
        result.assert_outcomes(errors=1)


# -- rows driven by their input column --------------------------------------------------------


def run_row(pytester: pytest.Pytester, row: Row, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKRATE_UNSET_KEY", raising=False)
    base = ("-p", "no:cacheprovider", "--tokrate-gate=off", *FAST)
    if row.where.startswith("command line"):
        if "CI=true" in row.where:
            monkeypatch.setenv("CI", "true")
        pytester.makepyfile(test_uses=USES)
        result = pytester.runpytest(*base, *shlex.split(row.input))
    elif row.where == "ini":
        pytester.makeini(f"[pytest]\n{row.input}\n")
        pytester.makepyfile(test_uses=USES)
        result = pytester.runpytest(*base, *MODEL)
    elif row.where == "marker":
        pytester.makepyfile(test_marker=f"import pytest\n\n{row.input}\n{USES}")
        result = pytester.runpytest(*base, *MODEL)
    elif row.where == "`tokrate.run()`":
        pytester.makepyfile(test_call=f"def test_call(tokrate):\n    {row.input}\n")
        result = pytester.runpytest(*base, *MODEL)
    elif row.where == "YAML suite":
        pytester.path.joinpath("tokrate_suite.yaml").write_text(row.input + "\n")
        result = pytester.runpytest(*base, *MODEL, "--collect-only")
        assert not list(pytester.path.glob("PWNED*"))
    else:  # pragma: no cover - a new kind of row needs a runner here
        raise AssertionError(f"no runner for rows from {row.where!r}")
    check_pytest_outcome(row, result)


DRIVEN = [r for r in ROWS if r.where != "baseline file" and not r.where.startswith("server")]


@pytest.mark.parametrize("row", DRIVEN, ids=[r.id for r in DRIVEN])
def test_row(pytester: pytest.Pytester, row: Row, monkeypatch: pytest.MonkeyPatch) -> None:
    run_row(pytester, row, monkeypatch)


# -- baseline files -------------------------------------------------------------------------

SPEED = "def test_speed(tokrate):\n    tokrate.run('Say hi.')\n"
RECORD_ARGS = (*MODEL, "--tokrate-rounds=2", "--tokrate-warmup=0", "--tokrate-num-predict=2")


def _edit(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        change(data)
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")

    return apply


def _set_run(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        target = data["runs"]["run 1"]
        *parents, last = key.split(".")
        for step in parents:
            target = target[step]
        target[last] = value

    return change


def _sample(metric: str, text: str) -> Callable[[Path], None]:
    """The first ``metric`` sample written as the JSON text ``text`` (``NaN``, ``1e400``:
    literals ``json.dumps`` would not write)."""

    def apply(path: Path) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["runs"]["run 1"]["samples"][metric][0] = "@SAMPLE@"
        path.write_text(json.dumps(data, indent=2).replace('"@SAMPLE@"', text), "utf-8")

    return apply


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


BASELINE_RECIPES: dict[str, Callable[[Path], None]] = {
    "baseline-not-json": lambda p: p.write_text("<<<<<<< HEAD\n", encoding="utf-8"),
    "baseline-not-object": lambda p: p.write_text("[]", encoding="utf-8"),
    "baseline-not-utf8": lambda p: p.write_bytes(b"\xff\xfe{}"),
    "baseline-future": _edit(lambda d: d.update(schema_version=99)),
    "baseline-missing-field": _edit(lambda d: d.pop("recorded_at")),
    "baseline-wrong-type": _edit(_set_run("rounds", "five")),
    "baseline-sample-count": _edit(_set_run("samples.ttft", [0.1])),
    "baseline-no-runs": _edit(lambda d: d.update(runs={})),
    "baseline-nan": _sample("decode_tps", "NaN"),
    "baseline-overflow": _sample("ttft", "1e400"),
    "baseline-zero-rate": _sample("decode_tps", "0"),
    "baseline-negative": _sample("ttft", "-1"),
    "baseline-other-test": _edit(lambda d: d.update(test_id="test_speed.py::test_other[smollm2]")),
    "baseline-deep": lambda p: p.write_text("[" * 20_000, encoding="utf-8"),
    "baseline-fifo": _fifo,
}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose one test has a baseline recorded on the real model."""
    project = tmp_path_factory.mktemp("recorded")
    (project / "test_speed.py").write_text(SPEED, encoding="utf-8")
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *RECORD_ARGS,
         "--tokrate-update-baselines"],
        cwd=project, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return project


BASELINE_ROWS = [r for r in ROWS if r.where == "baseline file"]


@pytest.mark.parametrize("row", BASELINE_ROWS, ids=[r.id for r in BASELINE_ROWS])
def test_baseline_row(pytester: pytest.Pytester, recorded: Path, row: Row) -> None:
    shutil.copytree(recorded, pytester.path, dirs_exist_ok=True)
    (path,) = (pytester.path / "baselines").rglob("*.json")
    BASELINE_RECIPES[row.id](path)
    special = not path.is_file()  # a FIFO: never opened for its bytes, never replaced
    before = None if special else path.read_bytes()
    result = pytester.runpytest("-p", "no:cacheprovider", *RECORD_ARGS)
    check_pytest_outcome(row, result)
    if special:
        assert stat.S_ISFIFO(path.lstat().st_mode)
    else:  # a broken baseline is never rewritten behind you
        assert path.read_bytes() == before


# -- server responses ---------------------------------------------------------------------

#: row id -> (protocol, fault, fault arguments, request timeout)
SERVER_RECIPES: dict[str, tuple[str, str, dict[str, Any], float]] = {
    "server-not-json": ("ollama", "malformed", {"after": 1}, 60),
    "server-cut-line": ("ollama", "cut_line", {"after": 2}, 60),
    "server-nested": ("ollama", "malformed", {"after": 1, "line": "[" * 100_000}, 60),
    "server-wrong-type": ("ollama", "wrong_type", {"field": "eval_count", "value": "many"}, 60),
    "server-negative": ("ollama", "final_fields", {"set": {"eval_duration": -5}}, 60),
    "server-zero-duration": ("ollama", "final_fields", {"drop": ["eval_duration"]}, 60),
    "server-zero-count": ("ollama", "final_fields", {"drop": ["eval_count"]}, 60),
    "server-huge-count": ("ollama", "final_fields", {"set": {"eval_count": 10**12}}, 60),
    "server-over-num-predict": ("ollama", "final_fields", {"set": {"eval_count": 500}}, 60),
    "server-huge-duration": ("ollama", "final_fields", {"set": {"eval_duration": 10**18}}, 60),
    "server-infinite": ("openai", "final_fields", {"set": {"timings.predicted_ms": 1e400}}, 60),
    "server-no-end": ("ollama", "truncate", {"after": 2}, 60),
    "server-error-line": ("ollama", "error_midstream", {"after": 2, "message": "runner died"}, 60),
    "server-busy": ("ollama", "busy", {}, 60),
    "server-silent": ("ollama", "idle_chunks", {"after": 1, "duration_s": 4.0}, 1),
}
SERVER_ROWS = [r for r in ROWS if r.where.startswith("server")]


@pytest.mark.parametrize("row", SERVER_ROWS, ids=[r.id for r in SERVER_ROWS])
def test_server_row(row: Row, ollama_standin: OllamaStandin, openai_standin: OpenAIStandin) -> None:
    protocol, fault, kwargs, timeout = SERVER_RECIPES[row.id]
    server: OllamaStandin | OpenAIStandin = (
        ollama_standin if protocol == "ollama" else openai_standin
    )
    server.faults.arm(fault, **kwargs)
    backend: OllamaBackend | OpenAIBackend
    if protocol == "ollama":
        backend = OllamaBackend("smollm2:135m", host=server.url, busy_retries=1, backoff_s=0.01)
    else:
        backend = OpenAIBackend("smollm2:135m", host=server.url, busy_retries=1, backoff_s=0.01)
    options = {"num_predict": 8, "num_thread": 1, "temperature": 0.0, "seed": 42}
    try:
        with pytest.raises(InfrastructureError) as caught:  # the test errors
            Runner(backend).one_round(Request(prompt=STORY, options=options, timeout_s=timeout))
    finally:
        backend.close()
    message = str(caught.value)
    assert row.excerpt in message, f"{row.id}: {row.excerpt!r} not in {message!r}"
