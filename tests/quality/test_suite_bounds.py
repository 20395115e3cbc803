"""The bounds of suite loading: aliases, nesting, the suite file and ``file://`` variables.

The generative side is ``tests/reliability/test_generative_suites.py``; these pin the
messages and the cases that must keep working (aliases used normally, files in the tree).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_tokrate.quality.suite import SuiteError, load_suite
from pytest_tokrate.quality.suite_vars import MAX_SUITE_TEXT


def write(directory: Path, text: str, name: str = "tokrate_s.yaml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_aliases_used_normally_keep_working(tmp_path: Path) -> None:
    """A shared options mapping and a schema reused as a check value load as before."""
    path = write(
        tmp_path,
        "cases:\n"
        "  - name: a\n    prompt: hi\n    options: &opts {num_predict: 4, temperature: 0}\n"
        "    format: &schema {type: object, properties: {n: {type: integer}}}\n"
        "    checks: [{type: jsonschema, value: *schema}]\n"
        "  - name: b\n    prompt: hi\n    options: *opts\n"
        "  - name: c\n    prompt: hi\n    options: {<<: *opts, num_predict: 8}\n",
    )
    a, b, c = load_suite(path)
    assert a.options == b.options == {"num_predict": 4, "temperature": 0}
    assert c.options == {"num_predict": 8, "temperature": 0}
    assert a.format == {"type": "object", "properties": {"n": {"type": "integer"}}}


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "cases:\n  - name: a\n    prompt: hi\n    options: &o {k: [*o]}\n")
    with pytest.raises(SuiteError, match=r"tokrate_s\.yaml:4: the anchor &o contains an alias"):
        load_suite(path)


def test_a_chain_of_aliases_nesting_too_deep_is_refused(tmp_path: Path) -> None:
    chain = "".join(f"      k{i}: &a{i} [{f'*a{i - 1}' if i else 1}]\n" for i in range(100))
    path = write(tmp_path, f"cases:\n  - name: a\n    prompt: hi\n    format:\n{chain}")
    with pytest.raises(SuiteError, match=r"nests more than 64 levels deep through YAML aliases"):
        load_suite(path)


def test_an_integer_with_thousands_of_digits_is_a_suite_error(tmp_path: Path) -> None:
    path = write(tmp_path, f"cases: [{{name: a, prompt: hi, rounds: {'9' * 5000}}}]\n")
    with pytest.raises(SuiteError, match=r":1: the integer 9{20}\.\.\. has 5,000 digits"):
        load_suite(path)


def test_a_suite_that_is_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "tokrate_pipe.yaml")
    with pytest.raises(SuiteError, match=r"tokrate_pipe\.yaml: cannot read .* named pipe"):
        load_suite(tmp_path / "tokrate_pipe.yaml")


def test_relative_file_variables_resolve_against_the_suite_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suites = tmp_path / "suites"
    (suites / "data").mkdir(parents=True)
    (suites / "data" / "a.txt").write_text(" article \n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    path = write(suites, 'vars: {x: "file://data/a.txt"}\ncases: [{name: a, prompt: "<{{x}}>"}]\n')
    assert load_suite(path)[0].prompt == "<article>"


def test_a_file_outside_the_tree_loads_with_the_opt_in(tmp_path: Path) -> None:
    (tmp_path / "shared.txt").write_text("shared", encoding="utf-8")
    suites = tmp_path / "suites"
    suites.mkdir()
    text = 'vars: {x: "file://../shared.txt"}\ncases: [{name: a, prompt: "{{x}}"}]\n'
    with pytest.raises(SuiteError, match=r"variable 'x': file://\.\./shared\.txt resolves to"):
        load_suite(write(suites, text))
    assert load_suite(write(suites, "allow_files_outside: true\n" + text))[0].prompt == "shared"


def test_a_python_check_file_outside_the_tree_is_not_imported_without_the_opt_in(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "imported.txt"
    (tmp_path / "checks.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef ok(output):\n    return True\n",
        encoding="utf-8",
    )
    suites = tmp_path / "suites"
    suites.mkdir()
    text = "cases: [{name: a, prompt: hi, checks: [{type: python, value: 'file://../checks.py:ok'}]}]\n"
    with pytest.raises(
        SuiteError, match=r"cases\[0\] \(a\)\.checks\[0\]: file://\.\./checks\.py:ok resolves to"
    ):
        load_suite(write(suites, text))
    assert not marker.exists()  # refused before the module ran
    (case,) = load_suite(write(suites, "allow_files_outside: true\n" + text))
    assert marker.exists() and case.checks[0].kind == "python"


def test_the_opt_in_must_be_a_boolean(tmp_path: Path) -> None:
    path = write(tmp_path, "allow_files_outside: yes please\ncases: [{name: a, prompt: hi}]\n")
    with pytest.raises(SuiteError, match=r"allow_files_outside: 'yes please' is not of type"):
        load_suite(path)


def test_filled_text_is_bounded_before_it_is_built(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("y" * 1_000_000, encoding="utf-8")
    uses = MAX_SUITE_TEXT // 1_000_000 + 1
    path = write(
        tmp_path,
        'vars: {x: "file://a.txt"}\ncases: [{name: a, prompt: "' + "{{x}}" * uses + '"}]\n',
    )
    with pytest.raises(SuiteError, match=r"cases\[0\] \(a\)\.prompt: with it, the suite's texts"):
        load_suite(path)


def test_an_unreadable_variable_is_reported_once(tmp_path: Path) -> None:
    path = write(tmp_path, 'vars: {x: "file://nope.txt"}\ncases: [{name: a, prompt: "{{x}}"}]\n')
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert "nope.txt' does not exist" in str(info.value)
    assert "unknown variable" not in str(info.value)
