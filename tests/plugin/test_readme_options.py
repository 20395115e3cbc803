"""The options table in docs/options.md says what ``pytest --help`` says.

When this fails, regenerate the table with ``python scripts/options_table.py --write``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

OPTIONS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "options.md"
FIX = "docs/options.md options table is stale: run `python scripts/options_table.py --write`"


def squash(text: str) -> str:
    # argparse re-wraps help text (and may break after hyphens): compare without spaces.
    return re.sub(r"\s+", "", text)


def table_rows() -> dict[str, tuple[str | None, str]]:
    rows: dict[str, tuple[str | None, str]] = {}
    for line in OPTIONS_PAGE.read_text().splitlines():
        m = re.match(r"^\| `(--tokrate-[a-z0-9-]+)[^`]*` \| (`(\w+)`|-) \| (.*) \|$", line)
        if m:
            rows[m.group(1)] = (m.group(3), m.group(4).replace("\\|", "|"))
    return rows


def help_sections(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """(--tokrate-* flag -> help, tokrate_* ini name -> help) from ``pytest --help``."""
    flags: dict[str, str] = {}
    inis: dict[str, str] = {}
    current: dict[str, str] | None = None
    key = ""
    for line in text.splitlines():
        flag = re.match(r"^  (--tokrate-[a-z0-9-]+)\S*(?:\s{2,}(.*))?$", line)
        ini = re.match(r"^  (tokrate_\w+) \([^)]*\):(?:\s+(.*))?$", line)
        if flag or ini:
            m = flag or ini
            assert m is not None
            current = flags if flag else inis
            key = m.group(1)
            current[key] = m.group(2) or ""
        elif current is not None and line.startswith(" " * 20) and line.strip():
            current[key] += " " + line.strip()
        else:
            current = None
    return flags, inis


@pytest.fixture(scope="module")
def pytest_help(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], dict[str, str]]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"],
        cwd=tmp_path_factory.mktemp("help"),
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return help_sections(out.stdout)


def test_every_option_is_in_the_table_and_no_other(
    pytest_help: tuple[dict[str, str], dict[str, str]],
) -> None:
    flags, _ = pytest_help
    assert flags, "no --tokrate-* option found in pytest --help"
    rows = table_rows()
    assert sorted(rows) == sorted(flags), FIX


def test_help_texts_match(pytest_help: tuple[dict[str, str], dict[str, str]]) -> None:
    flags, _ = pytest_help
    rows = table_rows()
    stale = [
        flag for flag in flags if flag in rows and squash(rows[flag][1]) != squash(flags[flag])
    ]
    assert not stale, f"{FIX} (help differs for {', '.join(stale)})"


def test_ini_names_match(pytest_help: tuple[dict[str, str], dict[str, str]]) -> None:
    _, inis = pytest_help
    rows = table_rows()
    listed = {ini for ini, _ in rows.values() if ini}
    unknown = listed - set(inis)
    assert not unknown, f"{FIX} (ini names not in pytest --help: {sorted(unknown)})"
    missing = set(inis) - listed
    assert not missing, f"{FIX} (ini names missing from the table: {sorted(missing)})"
