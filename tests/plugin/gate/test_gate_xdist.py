"""Under pytest-xdist the workers measure and judge; only the controller writes baselines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TESTS = """
import pytest

@pytest.mark.tokrate(rounds=5, warmup=0, num_predict=2, num_thread=1, min_decode_tokens=1)
def test_a(tokrate):
    tokrate.run("A")

@pytest.mark.tokrate(rounds=5, warmup=0, num_predict=2, num_thread=1, min_decode_tokens=1)
def test_b(tokrate):
    tokrate.run("B")
"""

# Each worker notes, as its session ends (after the gate's own hook there), which baseline
# files exist: none may, since the controller writes only after every worker is done.
CONFTEST = """
import json, os
from pathlib import Path
import pytest

@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        found = sorted(str(p) for p in Path("baselines").rglob("*.json"))
        Path(f"seen-{worker}.json").write_text(json.dumps(found))
"""


def test_only_the_controller_writes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_pair=TESTS)
    pytester.makeconftest(CONFTEST)
    result = pytester.runpytest_subprocess(
        "-n", "2", "--tokrate-model=smollm2", "--tokrate-update-baselines", "-p", "xdist"
    )
    out = result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=2)
    seen = sorted(pytester.path.glob("seen-gw*.json"))
    assert [p.name for p in seen] == ["seen-gw0.json", "seen-gw1.json"], out
    assert all(json.loads(p.read_text()) == [] for p in seen)
    written = sorted(p.name for p in Path(pytester.path, "baselines").rglob("*.json"))
    assert written == ["test_a[smollm2]@embedded.json", "test_b[smollm2]@embedded.json"], out
    assert "wrote 2 baseline file(s)" in out

    # the gate itself also runs on the workers: a regression fails its test there
    path = pytester.path / "baselines/test_pair/test_b[smollm2]@embedded.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    samples = data["runs"]["run 1"]["samples"]
    assert len(samples["decode_tps"]) == 20  # baselines get 4x the test's rounds
    samples["decode_tps"] = [v * 1000 for v in samples["decode_tps"]]
    path.write_text(json.dumps(data), encoding="utf-8")
    gated = pytester.runpytest_subprocess(
        "-n", "2", "--tokrate-model=smollm2", "--tokrate-other-load=off", "-p", "xdist"
    )
    gated.assert_outcomes(passed=1, failed=1)
    assert gated.ret == pytest.ExitCode.TESTS_FAILED
    assert "regression of decode tok/s in test_pair.py::test_b[smollm2]" in gated.stdout.str()
