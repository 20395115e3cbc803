"""Reports end to end through pytest (pytester), on the real embedded SmolLM2 model:
JSON validated against the shipped schema, Markdown (file and GitHub job summary),
JUnit properties, plots, parametrized sweep levels, and the bad-input errors."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from pytest_tokrate.core.tokens import count_tokens

pytestmark = pytest.mark.e2e

SUITE = """
import pytest

@pytest.mark.tokrate(concurrency=[1, 2], requests=2, num_predict=6)
def test_sweep(tokrate):
    s = tokrate.sweep("Name a colour.", warmup=1)
    assert [lv.concurrency for lv in s.levels] == [1, 2]

@pytest.mark.parametrize("tag", ["<b>|x*"])
def test_answer(tokrate, tag):
    r = tokrate.run("Say hi.", rounds=2, num_predict=6)
    assert r.samples[0].normalized_tokens is not None

def test_quality_bar(tokrate):
    tokrate.run(
        "Say hi.", rounds=2, num_predict=6,
        checks=[{"type": "icontains", "value": "xylophone-zebra"}],
    )
"""


def png_is_drawn(path: Path) -> None:
    """A real, non-blank PNG: the signature, a plausible size, and varied pixels."""
    from matplotlib.image import imread

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000
    pixels = imread(str(path))
    assert pixels.std() > 0.01


def test_json_markdown_junit_plots_and_job_summary(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, base_args: tuple[str, ...]
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    step = pytester.path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    result = pytester.runpytest(
        *base_args,
        "--tokrate-report-json=out/report.json",
        "--tokrate-report-md=out/summary.md",
        "--tokrate-plots=out/plots",
        "--junitxml=out/junit.xml",
    )
    result.assert_outcomes(passed=2, failed=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "*tokrate: sweeps*",
            "*c=1 n=6*",
            "*c=2 n=6*",
            "*serves one request at a time*",
            "*tokrate: reports*",
            "*JSON report: *report.json",
        ]
    )
    out = pytester.path / "out"

    # -- JSON: valid against the shipped schema, and consistent with the samples --------
    report = json.loads((out / "report.json").read_text())
    schema_text = resources.files("pytest_tokrate").joinpath("schemas/report.schema.json")
    jsonschema.validate(report, json.loads(schema_text.read_text()))
    outcomes = {t["test_id"].split("::")[-1]: t["outcome"] for t in report["tests"]}
    assert outcomes == {
        "test_sweep[smollm2]": "passed",
        "test_answer[smollm2-<b>|x*]": "passed",
        "test_quality_bar[smollm2]": "failed",
    }
    assert report["summary"]["verdicts"]["fail"] == 1
    assert report["gpu"]["available"] is False and report["gpu"]["reason"]
    assert report["tokenizer"] == {"encoding": "cl100k_base", "available": True, "reason": None}
    by_test = {m["test_id"].split("::")[-1]: m for m in report["measurements"]}
    answer = by_test["test_answer[smollm2-<b>|x*]"]
    assert answer["model"]["name"] == "smollm2" and len(answer["samples"]) == 2
    for sample in answer["samples"]:
        assert sample["normalized_tokens"] == count_tokens(sample["text"])
        assert sample["words"] == len(sample["text"].split())
    assert answer["fingerprint"]["environment"]["model"]["name"] == "smollm2"
    quality = by_test["test_quality_bar[smollm2]"]
    assert quality["pass_rate"] == 0.0
    assert [f["severity"] for f in quality["findings"]] == ["fail"]
    (sweep,) = report["sweeps"]
    assert sweep["serialised"] is True and sweep["varied"] == ["concurrency"]
    assert [lv["completed"] for lv in sweep["levels"]] == [2, 2]
    for lv in sweep["levels"]:
        total = sum(s["output_tokens"] for s in lv["samples"])
        assert lv["output_tokens_total"] == total
        assert lv["throughput_tps"] == pytest.approx(total / lv["wall_s"])
    assert sorted(Path(p).name for p in report["plots"]) == [
        "latency_vs_concurrency.png",
        "speed_vs_quality.png",
        "throughput_vs_concurrency.png",
    ]

    # -- Markdown: tables, escaped ids, the failing verdict fenced, images linked -------
    md = (out / "summary.md").read_text()
    assert "| test | model | decode tok/s | e2e tok/s | e2e tok/s (cl100k) | words/s" in md
    assert "test\\_answer\\[smollm2-&lt;b&gt;\\|x\\*\\]" in md
    assert "<b>" not in md
    assert "### Sweep: test\\_suite.py::test\\_sweep\\[smollm2\\] on smollm2" in md
    assert "**fail** · test\\_suite.py::test\\_quality\\_bar\\[smollm2\\]" in md
    assert "\n```text\n" in md and "xylophone-zebra" in md
    assert "![Latency vs concurrency](<plots/latency_vs_concurrency.png>)" in md
    assert "GPU telemetry: absent" in md

    # -- the job summary: the same tables, plots listed as artifact paths ----------------
    summary = step.read_text()
    assert summary.startswith("## pytest-tokrate")
    assert "- Latency vs concurrency: `out/plots/latency_vs_concurrency.png`" in summary
    assert "![" not in summary

    # -- JUnit: key figures as properties of each test case ------------------------------
    cases = {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in ET.parse(out / "junit.xml").getroot().iter("testcase")
    }
    answer_props = cases["test_answer[smollm2-<b>|x*]"]
    assert float(answer_props["tokrate.smollm2.decode_tps.median"]) > 0
    assert float(answer_props["tokrate.smollm2.ttft_s.p90"]) > 0
    assert answer_props["tokrate.smollm2.rounds"] == "2"
    assert answer_props["tokrate.smollm2.verdict"] == "ok"
    assert cases["test_quality_bar[smollm2]"]["tokrate.smollm2.verdict"] == "fail"
    assert cases["test_quality_bar[smollm2]"]["tokrate.smollm2.pass_rate"] == "0"
    sweep_props = cases["test_sweep[smollm2]"]
    assert float(sweep_props["tokrate.smollm2.sweep[c=2 n=6].throughput_tps"]) > 0
    assert sweep_props["tokrate.smollm2.sweep[c=2 n=6].failed"] == "0"

    # -- plots: drawn, not blank ------------------------------------------------------
    for name in report["plots"]:
        png_is_drawn(Path(name))


def test_levels_as_separate_items_join_one_curve(
    pytester: pytest.Pytester, base_args: tuple[str, ...]
) -> None:
    pytester.makepyfile(
        """
        def test_level(tokrate, tokrate_concurrency):
            s = tokrate.sweep("Hi", num_predict=4, warmup=0)
            (level,) = s.levels
            assert level.concurrency == tokrate_concurrency
            assert level.completed == 2 * tokrate_concurrency
        """
    )
    result = pytester.runpytest(
        *base_args,
        "-v",
        "--tokrate-rounds=2",
        "--tokrate-concurrency=1,2",
        "--tokrate-plots=plots",
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["*test_level[[]smollm2-c1[]] PASSED*", "*test_level[[]smollm2-c2[]] PASSED*"]
    )
    # the two items' levels form one line of the concurrency plots
    png_is_drawn(pytester.path / "plots" / "throughput_vs_concurrency.png")
    assert not (pytester.path / "plots" / "tps_vs_gen_length.png").exists()
    result.stdout.fnmatch_lines(["*no plot: tok/s vs generation length*"])


def test_generation_length_plot(pytester: pytest.Pytester, base_args: tuple[str, ...]) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.tokrate(gen_lengths=[4, 12], rounds=1, warmup=0)
        def test_lengths(tokrate):
            s = tokrate.sweep("Write a story about a lighthouse.")
            assert [lv.num_predict for lv in s.levels] == [4, 12]
        """
    )
    result = pytester.runpytest(*base_args, "--tokrate-plots=plots")
    result.assert_outcomes(passed=1)
    png_is_drawn(pytester.path / "plots" / "tps_vs_gen_length.png")


@pytest.mark.parametrize("value", ["0", "-8", "1,zero"])
def test_bad_concurrency_option_is_a_usage_error(
    pytester: pytest.Pytester, base_args: tuple[str, ...], value: str
) -> None:
    pytester.makepyfile("def test_x(tokrate): pass")
    result = pytester.runpytest(*base_args, f"--tokrate-concurrency={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--tokrate-concurrency*invalid level*"])
    assert value.split(",")[-1] in result.stderr.str()


def test_bad_ini_level_is_a_usage_error(
    pytester: pytest.Pytester, base_args: tuple[str, ...]
) -> None:
    pytester.makeini("[pytest]\ntokrate_gen_lengths = 16,0\n")
    pytester.makepyfile("def test_x(tokrate): pass")
    result = pytester.runpytest(*base_args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini gen_lengths: invalid level 0 in '16,0'*at least 1*"])


def test_bad_marker_level_fails_that_test_only(
    pytester: pytest.Pytester, base_args: tuple[str, ...]
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.tokrate(concurrency=[4, 0])
        def test_bad(tokrate):
            tokrate.sweep("Hi")

        def test_fine(tokrate):
            tokrate.sweep("Hi", num_predict=2, rounds=1, warmup=0)
        """
    )
    result = pytester.runpytest(*base_args)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*@pytest.mark.tokrate concurrency: invalid level 0 in [[]4, 0[]]*"]
    )
    assert "Traceback" not in result.stdout.str()


def test_unwritable_report_location_is_a_usage_error(
    pytester: pytest.Pytester, base_args: tuple[str, ...]
) -> None:
    pytester.makepyfile("def test_x(tokrate): pass")
    blocker = pytester.path / "a-file"
    blocker.write_text("not a directory")
    for option in ("--tokrate-report-json=a-file/r.json", "--tokrate-plots=a-file/plots"):
        result = pytester.runpytest(*base_args, option)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["*cannot write there, because *a-file is not a directory*"])
    result = pytester.runpytest(*base_args, f"--tokrate-report-md={pytester.path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--tokrate-report-md=*: the path exists and is not a file*"])


def test_plots_without_matplotlib_is_a_usage_error(
    pytester: pytest.Pytester, base_args: tuple[str, ...]
) -> None:
    # matplotlib is installed here; a conftest hides it, as on a machine without it
    pytester.makeconftest("import sys\nsys.modules['matplotlib'] = None\n")
    pytester.makepyfile("def test_x(tokrate): pass")
    result = pytester.runpytest_subprocess(*base_args, "--tokrate-plots=plots")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--tokrate-plots needs matplotlib*not installed*pytest-tokrate[[]plots[]]*"]
    )


def test_no_tokrate_tests_no_job_summary(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, base_args: tuple[str, ...]
) -> None:
    step = pytester.path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    pytester.makepyfile("def test_plain(): pass")
    result = pytester.runpytest(*base_args, "--tokrate-report-json=r.json")
    result.assert_outcomes(passed=1)
    assert not step.exists()
    report = json.loads((pytester.path / "r.json").read_text())
    assert [(t["test_id"].split("::")[-1], t["tokrate"]) for t in report["tests"]] == [
        ("test_plain", False)
    ] and report["measurements"] == []  # asked for: written


def test_xdist_workers_send_their_results_to_one_report(
    pytester: pytest.Pytester, base_args: tuple[str, ...]
) -> None:
    pytester.makepyfile(
        """
        def test_run(tokrate):
            tokrate.run("Hi", rounds=1, warmup=0, num_predict=2)

        def test_sweep(tokrate):
            tokrate.sweep("Hi", concurrency=[1, 2], requests=2, warmup=0, num_predict=2)
        """
    )
    result = pytester.runpytest(*base_args, "-n", "2", "--tokrate-report-json=r.json")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*tokrate: sweeps*", "*c=2 n=2*"])
    report = json.loads((pytester.path / "r.json").read_text())
    assert sorted(t["test_id"].split("::")[-1] for t in report["tests"]) == [
        "test_run[smollm2]",
        "test_sweep[smollm2]",
    ]
    assert len(report["measurements"]) == 1 and len(report["sweeps"]) == 1
