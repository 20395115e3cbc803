"""Two measurements must never share one record: baseline environments that would name
the same file are refused, and so is a ``tokrate.run()`` label already used in the test."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from reliability_support import output

from pytest_tokrate.core.numbers import shown
from pytest_tokrate.errors import UsageError
from pytest_tokrate.gate.files import baseline_path
from pytest_tokrate.gate.settings import parse_env_name

MODEL = ("-p", "no:cacheprovider", "--tokrate-model=smollm2", "--tokrate-option=num_thread=1")
TEST_ID = "tests/test_speed.py::test_decode[smollm2]"
ENV_MESSAGE = (
    "expected a short name of letters, digits, '.', '_' and '-' (at most 64) that starts "
    "with a letter or digit and does not end with '.', e.g. ci-2cpu."
)


# -- baseline environments ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["..", ".", "_", "-x", ".ci", "_ci", "ci.", "ci..", "a" * 65])
def test_env_names_that_would_share_a_file_are_refused(name: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_env_name(name)
    assert str(info.value) == f"--tokrate-baseline-env: invalid value {shown(name)}: {ENV_MESSAGE}"


def test_env_name_message_names_its_source() -> None:
    with pytest.raises(UsageError, match=r"^ini tokrate_baseline_env: invalid value '\.\.': "):
        parse_env_name("..", "ini tokrate_baseline_env")


@pytest.mark.parametrize("name", ["ci-2cpu", "a.b", "a", "7", "ci_", "ci-", "a..b", "a" * 64])
def test_env_names_are_accepted(name: str) -> None:
    assert parse_env_name(name) == name
    assert parse_env_name(f"  {name} ") == name


def test_every_accepted_env_name_has_a_file_of_its_own(tmp_path: Path) -> None:
    """Every name of up to 3 characters over letters, digits and '._-': the accepted ones
    map one-to-one onto file names, each ending in exactly ``@NAME.json``."""
    files: dict[Path, str] = {}
    for n in range(1, 4):
        for chars in itertools.product("aZ1._-", repeat=n):
            name = "".join(chars)
            try:
                parse_env_name(name)
            except UsageError:
                continue
            path = baseline_path(tmp_path, TEST_ID, name)
            assert path.name == f"test_decode[smollm2]@{name}.json"
            assert path not in files, f"{name!r} and {files[path]!r} share {path.name}"
            files[path] = name
    assert len(files) > 100  # the loop did accept names


# -- labels of tokrate.run() ---------------------------------------------------------------

RUN = "tokrate.run('Hi', rounds=1, warmup=0, num_predict=2{})"
LABEL_CLASHES = f"""
def test_same_label(tokrate):
    {RUN.format(", label='x'")}
    {RUN.format(", label='x'")}
    raise AssertionError("the body must not go on")

def test_label_of_an_unlabeled_run(tokrate):
    {RUN.format("")}
    {RUN.format(", label='run 1'")}

def test_automatic_label_already_given(tokrate):
    {RUN.format(", label='run 2'")}
    {RUN.format("")}
"""


def test_a_label_used_twice_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_labels=LABEL_CLASHES)
    report = pytester.path / "report.json"
    result = pytester.runpytest(*MODEL, f"--tokrate-report-json={report}")
    result.assert_outcomes(failed=3)
    text = output(result)
    assert (
        "tokrate.run: label 'x' is already used by an earlier run in this test: "
        "give each run its own label." in text
    )
    assert "tokrate.run: label 'run 1' is already used by an earlier run in this test" in text
    assert (
        "tokrate.run: this run's automatic label 'run 2' is already used by an earlier "
        "run's label='run 2' in this test: give this run its own label=, or rename the "
        "earlier one." in text
    )
    assert "the body must not go on" not in text
    assert "(at test_labels.py:3)" in text  # the second run(), in the user's code
    assert "Traceback" not in text
    assert "pytest_tokrate" not in text
    # Refused before measuring: each test kept only its first run.
    measured = json.loads(report.read_text(encoding="utf-8"))["measurements"]
    assert sorted((m["test_id"].split("::")[1], m["label"]) for m in measured) == [
        ("test_automatic_label_already_given[smollm2]", "run 2"),
        ("test_label_of_an_unlabeled_run[smollm2]", None),
        ("test_same_label[smollm2]", "x"),
    ]


def test_distinct_labels_both_reach_the_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_labels=f"""
def test_two(tokrate):
    {RUN.format(", label='short'")}
    {RUN.format(", label='long'")}
    {RUN.format("")}
"""
    )
    report = pytester.path / "report.json"
    pytester.runpytest(*MODEL, f"--tokrate-report-json={report}").assert_outcomes(passed=1)
    measured = json.loads(report.read_text(encoding="utf-8"))["measurements"]
    assert [m["label"] for m in measured if m["test_id"].endswith("::test_two[smollm2]")] == [
        "short",
        "long",
        "run 3",
    ]


SHARED_TEST = """
def test_x(tokrate):
    tokrate.run('Hi', rounds=1, warmup=0, num_predict=2)
"""


def test_updating_one_project_keeps_another_projects_baselines_in_a_shared_dir(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    common = pytester.path / "common"
    results = {}
    for name in ("a", "b"):
        project = pytester.path / name
        project.mkdir()
        (project / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        (project / f"test_{name}.py").write_text(SHARED_TEST, encoding="utf-8")
        monkeypatch.chdir(project)
        results[name] = pytester.runpytest(
            *MODEL,
            "--tokrate-update-baselines",
            "--tokrate-baseline-rounds=1x",
            f"--tokrate-baseline-dir={common}",
        )
        results[name].assert_outcomes(passed=1)
    files = sorted(p.relative_to(common).as_posix() for p in common.rglob("*.json"))
    assert files == [
        "test_a/test_x[smollm2]@embedded.json",
        "test_b/test_x[smollm2]@embedded.json",
    ]
    out = output(results["b"])
    assert "1 baseline(s) of test files not in this project, kept" in out
    assert "test_a.py::test_x[smollm2]" in out and "baseline(s) no test uses" not in out


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("tests/test_a.py::test_x[a::b]", "tests/test_a.py::test_x[a.b]"),
        ("suite.yaml::a::b[smollm2]", "suite.yaml::a.b[smollm2]"),
        ("tests/test_a.py::TestK::test_x[p]", "tests/test_a.py::TestK.test_x[p]"),
    ],
)
def test_node_ids_that_differ_only_in_separators_get_files_of_their_own(
    tmp_path: Path, one: str, other: str
) -> None:
    assert baseline_path(tmp_path, one, "ci") != baseline_path(tmp_path, other, "ci")


def test_ordinary_node_ids_keep_their_readable_file_names(tmp_path: Path) -> None:
    names = {
        "tests/test_a.py::TestK::test_x[smollm2]": "tests/test_a/TestK.test_x[smollm2]@ci.json",
        "examples/tokrate_article.yaml::team_country[smollm2]": (
            "examples/tokrate_article.yaml/team_country[smollm2]@ci.json"
        ),
        "tests/test_a.py::test_x[0.5-smollm2]": "tests/test_a/test_x[0.5-smollm2]@ci.json",
    }
    for test_id, expected in names.items():
        assert baseline_path(tmp_path, test_id, "ci") == tmp_path / expected
