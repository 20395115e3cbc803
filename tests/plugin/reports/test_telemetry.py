"""GPU telemetry. This machine has no NVIDIA GPU: the "absent" path runs for real (pynvml
installed, no driver). The GPU path FAKES NVML, the one boundary we cannot run here: a
small module with pynvml's function names returns a fixed device (250 W, 80 %, 4 GiB)
and an energy counter that follows the wall clock. The measured rounds are real."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_tokrate.backends.base import Request
from pytest_tokrate.backends.llamacpp import LlamaCppBackend
from pytest_tokrate.backends.models import resolve_model
from pytest_tokrate.core.levels import Levels
from pytest_tokrate.core.runner import Runner
from pytest_tokrate.core.settings import Layer, resolve
from pytest_tokrate.core.sweep import run_sweep
from pytest_tokrate.machine.telemetry import GpuMonitor, default_monitor

FAKE_NVML = '''
"""A FAKE pynvml (no NVIDIA GPU on the test machine): one 250 W device."""
import time

POWER_MW = 250_000
_t0 = time.perf_counter()


class NVMLError(Exception):
    pass


def nvmlInit():
    pass


def nvmlDeviceGetCount():
    return 1


def nvmlSystemGetDriverVersion():
    return "550.54.15"


def nvmlDeviceGetHandleByIndex(index):
    return ("gpu", index)


def nvmlDeviceGetName(handle):
    return "NVIDIA FakeGPU 80GB"


class _Mem:
    total = 80 * 2**30
    used = 4 * 2**30


class _Util:
    gpu = 80
    memory = 30


def nvmlDeviceGetMemoryInfo(handle):
    return _Mem()


def nvmlDeviceGetUtilizationRates(handle):
    return _Util()


def nvmlDeviceGetPowerUsage(handle):
    return POWER_MW


def nvmlDeviceGetTotalEnergyConsumption(handle):
    # millijoules since the "driver" loaded, at a constant 250 W
    return int((time.perf_counter() - _t0) * POWER_MW)
'''


def fake_nvml(energy_counter: bool = True) -> Any:
    namespace: dict[str, Any] = {}
    exec(FAKE_NVML, namespace)
    module = SimpleNamespace(**{k: v for k, v in namespace.items() if not k.startswith("__")})
    if not energy_counter:

        def unsupported(handle: Any) -> int:
            raise module.NVMLError("Not Supported")

        module.nvmlDeviceGetTotalEnergyConsumption = unsupported
    return module


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaCppBackend]:
    backend = LlamaCppBackend(resolve_model("smollm2"))
    yield backend
    backend.close()


SETTINGS = resolve([Layer("t", rounds=2, warmup=0, options={"num_predict": 8, "num_thread": 1})])


def test_absent_without_an_nvidia_driver() -> None:
    status = GpuMonitor().status()  # the real pynvml, on a machine without NVIDIA
    assert status.available is False
    assert "NVML" in (status.reason or "")
    assert status.line().startswith("GPU telemetry: absent (")
    with GpuMonitor().watch() as watch:
        assert watch is None
    assert default_monitor() is default_monitor()


def test_absent_without_pynvml_says_how_to_install() -> None:
    def missing() -> Any:
        raise ImportError("No module named 'pynvml'")

    status = GpuMonitor(nvml=missing).status()
    assert not status.available
    assert 'pip install "pytest-tokrate[gpu]"' in (status.reason or "")


def test_runner_without_gpu_records_nothing(engine: LlamaCppBackend) -> None:
    m = Runner(engine).run(Request(prompt="Hi"), SETTINGS)
    assert "gpu" not in m.extra


@pytest.mark.e2e
def test_fake_gpu_energy_counter_gives_joules_per_token(engine: LlamaCppBackend) -> None:
    monitor = GpuMonitor(nvml=lambda: fake_nvml(), interval_s=0.02)
    status = monitor.status()
    assert status.available and status.driver == "550.54.15"
    assert status.devices == [
        {"index": 0, "name": "NVIDIA FakeGPU 80GB", "memory_total_bytes": 80 * 2**30}
    ]
    t = time.perf_counter()
    m = Runner(engine, monitor=monitor).run(Request(prompt="Hi"), SETTINGS)
    elapsed = time.perf_counter() - t
    gpu = m.extra["gpu"]
    assert gpu["energy_source"] == "counter"
    assert gpu["readings"] >= 2
    assert gpu["utilization_pct_mean"] == 80 and gpu["memory_used_bytes_max"] == 4 * 2**30
    assert gpu["power_w_mean"] == 250
    assert 0 < gpu["duration_s"] <= elapsed
    assert gpu["energy_j"] == pytest.approx(250 * gpu["duration_s"], rel=0.05)
    tokens = sum(s.output_tokens or 0 for s in m.samples)
    assert gpu["output_tokens"] == tokens
    assert gpu["j_per_token"] == pytest.approx(gpu["energy_j"] / tokens)


@pytest.mark.e2e
def test_fake_gpu_without_energy_counter_integrates_power(engine: LlamaCppBackend) -> None:
    monitor = GpuMonitor(nvml=lambda: fake_nvml(energy_counter=False), interval_s=0.02)
    result = run_sweep(Runner(engine, monitor=monitor), Request(prompt="Hi"), SETTINGS, Levels())
    (level,) = result.levels
    assert level.gpu is not None
    assert level.gpu["energy_source"] == "power-integral"
    assert level.gpu["energy_j"] == pytest.approx(250 * level.gpu["duration_s"], rel=0.05)
    assert level.gpu["j_per_token"] == pytest.approx(
        level.gpu["energy_j"] / level.output_tokens_total
    )
    assert len(level.gpu["series"]) == level.gpu["readings"]


@pytest.mark.e2e
def test_reports_with_a_fake_gpu(pytester: pytest.Pytester, base_args: tuple[str, ...]) -> None:
    """The whole path, with the FAKE pynvml installed in a fresh interpreter."""
    pytester.makepyfile(fake_pynvml=FAKE_NVML)
    pytester.makeconftest("import sys, fake_pynvml\nsys.modules['pynvml'] = fake_pynvml\n")
    pytester.makepyfile(
        textwrap.dedent(
            """
            def test_one(tokrate):
                m = tokrate.run("Hi", rounds=2, warmup=0, num_predict=6)
                assert m.extra["gpu"]["j_per_token"] > 0
            """
        )
    )
    result = pytester.runpytest_subprocess(
        *base_args, "--tokrate-report-json=r.json", "--tokrate-report-md=s.md", "--junitxml=j.xml"
    )
    result.assert_outcomes(passed=1)
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["gpu"]["available"] is True
    assert report["gpu"]["devices"][0]["name"] == "NVIDIA FakeGPU 80GB"
    assert report["hardware"]["gpus"][0]["name"] == "NVIDIA FakeGPU 80GB"
    (m,) = report["measurements"]
    assert m["gpu"]["energy_source"] == "counter" and m["gpu"]["j_per_token"] > 0
    assert "GPU: NVIDIA FakeGPU 80GB, driver 550.54.15." in (pytester.path / "s.md").read_text()
    assert 'name="tokrate.smollm2.j_per_token"' in (pytester.path / "j.xml").read_text()
