"""Every item reaches every report, serial and under ``-n 2``: a two-model run of a Python
test and a YAML suite, beside plain tests of every outcome, on the real embedded model.

- JUnit: key figures as ``<property>`` elements on every tokrate item, YAML cases too;
- JSON: every test of the run in ``tests`` (``tokrate`` says which used it), pytest's own
  counts in ``summary.outcomes``, the model trade-off in ``tradeoff``;
- Markdown: the counts worded as pytest's summary line words them, the trade-off table;
- terminal: the speed table, the token yardstick and the trade-off, once each, under
  xdist as in a serial run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from pytest_tokrate.reports.document import validate_report

with contextlib.suppress(ImportError):  # loaded once: pytester cannot import them twice
    from pytest_tokrate.core.tokens import encoding

    encoding()

pytestmark = pytest.mark.e2e

PYTHON_TESTS = """
import pytest

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown breaks")

def test_answer(tokrate):
    tokrate.run("Say hello.", checks=[{"type": "icontains", "value": "hello"}])

def test_plain_fails():
    assert 1 == 2

def test_plain_teardown_error(broken_teardown):
    pass

@pytest.mark.skip(reason="not today")
def test_skipped():
    pass

@pytest.mark.xfail(reason="known")
def test_xfail():
    assert False
"""

SUITE = """
cases:
  - name: greet
    prompt: Say hi.
    checks:
      - type: contains
        value: zzz-never-said
"""

ARGS = (
    "-p", "no:cacheprovider", "--tokrate-model=smollm2,smollm2-q2_k",
    "--tokrate-option=num_thread=1", "--tokrate-rounds=2", "--tokrate-warmup=0",
    "--tokrate-num-predict=4", "--tokrate-gate=off", "--junitxml=junit.xml",
    "--tokrate-report-json=report.json", "--tokrate-report-md=summary.md",
)  # fmt: skip
TOKRATE_ITEMS = {
    "test_mix.py::test_answer[smollm2]",
    "test_mix.py::test_answer[smollm2-q2_k]",
    "tokrate_cases.yaml::greet[smollm2]",
    "tokrate_cases.yaml::greet[smollm2-q2_k]",
}
PLAIN_ITEMS = {
    "test_mix.py::test_plain_fails",
    "test_mix.py::test_plain_teardown_error",
    "test_mix.py::test_skipped",
    "test_mix.py::test_xfail",
}
HEADINGS = (
    "tokrate: speed per test and model",
    "token yardstick (medians)",
    "tokrate: trade-off between models",
)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def pytest_summary_words(lines: list[str]) -> str:
    """pytest's final line without its warnings and time: '2 failed, 3 passed, 1 error'."""
    last = next(line for line in reversed(lines) if re.match(r"^=+ .* in [\d.]+s", line))
    words = re.sub(r"^=+ (.*) in [\d.]+s.*$", r"\1", last)
    return ", ".join(w for w in words.split(", ") if not re.fullmatch(r"\d+ warnings?", w))


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_every_item_reaches_every_report(
    pytester: pytest.Pytester, umask_022: None, workers: tuple[str, ...]
) -> None:
    pytester.makepyfile(test_mix=PYTHON_TESTS)
    pytester.path.joinpath("tokrate_cases.yaml").write_text(SUITE, encoding="utf-8")
    result = pytester.runpytest(*ARGS, *workers)
    out = pytester.path

    # -- pytest's own counts, and the same counts in the JSON and Markdown reports ------
    counts = {("error" if k == "errors" else k): n for k, n in result.parseoutcomes().items()}
    counts.pop("warnings", None)
    assert counts["failed"] >= 3 and counts["error"] == 1  # the YAML case, plain failures
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    validate_report(report)
    assert report["summary"]["outcomes"] == counts
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert f"**8 test(s)**: {pytest_summary_words(result.outlines)} (as pytest counts them)" in md
    assert "**4 used tokrate**" in md

    # -- JSON: every item, the tokrate ones with their measurement ---------------------------
    tests = {t["test_id"]: t for t in report["tests"]}
    assert set(tests) == TOKRATE_ITEMS | PLAIN_ITEMS
    assert {t for t, e in tests.items() if e["tokrate"]} == TOKRATE_ITEMS
    assert all(tests[t]["measurements"] == 1 for t in TOKRATE_ITEMS)
    assert tests["tokrate_cases.yaml::greet[smollm2]"]["outcome"] == "failed"
    assert tests["test_mix.py::test_plain_teardown_error"]["outcome"] == "error"
    assert report["summary"]["tokrate_tests"] == 4
    assert {m["test_id"] for m in report["measurements"]} == TOKRATE_ITEMS

    # -- JUnit: key figures on every tokrate item, YAML cases included ----------------------
    props = {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in ET.parse(out / "junit.xml").getroot().iter("testcase")
    }
    assert len(props) == 8
    for item in TOKRATE_ITEMS:
        model = item.split("[")[1].rstrip("]")
        found = props[item.split("::")[1]]
        assert len(found) >= 11, (item, found)
        assert float(found[f"tokrate.{model}.decode_tps.median"]) > 0
        assert found[f"tokrate.{model}.rounds"] == "2"

    # -- the trade-off: JSON (schema-checked above) and Markdown -----------------------------
    rows = {(r["test"], r["model"]) for r in report["tradeoff"]}
    assert rows == {
        ("test_mix.py::test_answer", "smollm2-q2_k"),
        ("tokrate_cases.yaml::greet", "smollm2-q2_k"),
    }
    (summary,) = report["tradeoff_models"]
    assert summary["reference"] == "smollm2" and summary["ratio_tests"] == 2
    assert "### Trade-off between models" in md
    assert "| tokrate\\_cases.yaml::greet | smollm2-q2\\_k |" in md
    assert "- smollm2-q2\\_k vs smollm2: decode speed " in md

    # -- terminal: the tables once each, xdist as serial -------------------------------------
    text = result.stdout.str()
    for heading in HEADINGS:
        assert text.count(heading) == 1, heading
    speed = text.split(HEADINGS[0])[1].split(HEADINGS[1])[0]
    assert all(item in speed for item in TOKRATE_ITEMS)

    # -- files get the umask's mode, as baselines do ----------------------------------------
    for name in ("report.json", "summary.md"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644
